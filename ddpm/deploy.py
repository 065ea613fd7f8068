"""Publish this repository as a Gradio Space, in one command:

    python -m ddpm.deploy USER/SPACE                          # the bundled models
    python -m ddpm.deploy USER/SPACE --model-id USER/MODEL    # ... opening on your model (Space variable MODEL_ID)

What goes up is an allow-list of what the Space runs (`ALLOW`: the app, the library, the bundled models, the card,
the licence, the pictures the card shows, and `packages.txt`: Debian's Fashion-MNIST, the training images the "Is it
copying?" view compares with) among the files git would commit (`.gitignore` is honoured), plus
`requirements-space.txt` as the Space's `requirements.txt` (only what the app imports, torch as the CPU wheel).
Nothing goes up if one of those files looks like it holds a secret. The Space card gets `models:` and `datasets:` so
the Hub links the Space to them. `create_repo(repo_type="space", space_sdk="gradio")`, then one commit over HTTP
(binary files go to LFS/Xet by themselves, no git needed). The token comes from --token, HF_TOKEN or
`hf auth login`; HF_ENDPOINT is followed, as everywhere in huggingface_hub.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# fnmatch patterns on paths relative to the repository ('*' also crosses '/')
ALLOW = [
    "app.py", "README.md", "LICENSE", "packages.txt", "ddpm/*.py", "docs/*.png",
    "pretrained/*/model_index.json", "pretrained/*/unet/config.json", "pretrained/*/unet/*.safetensors",
    "pretrained/*/scheduler/scheduler_config.json", "pretrained/*/README.md", "pretrained/*/samples.png",
    "pretrained/*/held_out.npz",
]  # fmt: skip
NEVER = ["*/checkpoints/*", "*/logs/*", "*__pycache__/*", "*.pyc"]
SPACE_REQUIREMENTS = "requirements-space.txt"  # uploaded as the Space's requirements.txt
BUNDLED_DATASETS = ["zalando-datasets/fashion_mnist"]  # what the bundled default model was trained on
SECRET_NAMES = [".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", ".netrc", "*.token", "token"]
SECRET_TEXT = re.compile(rb"hf_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


class DeployError(RuntimeError):
    """Deploying cannot go on; the message says what to change."""


def space_url(space_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/spaces/{space_id}"


def committable(folder: Path) -> list[str]:
    """The files git would commit here (tracked, or untracked and not ignored); every file if this is not a git
    work tree (then `.gitignore`'s simple patterns are applied by hand)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=folder, capture_output=True,
                             check=True, timeout=60)  # fmt: skip
        return [f for f in out.stdout.decode().split("\0") if f and (folder / f).is_file()]
    except (OSError, subprocess.SubprocessError):
        ignore = folder / ".gitignore"
        patterns = (
            [p.strip().strip("/") for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
            if ignore.is_file()
            else []
        )
        files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
        return [f for f in files if not any(fnmatch.fnmatch(f, p) or fnmatch.fnmatch(f, f"{p}/*") for p in patterns)]


def files_to_upload(folder: str | Path = ROOT) -> list[str]:
    """What the Space runs (`ALLOW`, less `NEVER`), among the files git would commit in `folder`."""
    folder = Path(folder)
    chosen = [
        f for f in committable(folder)
        if any(fnmatch.fnmatch(f, p) for p in ALLOW) and not any(fnmatch.fnmatch(f, p) for p in NEVER)
    ]  # fmt: skip
    return sorted(chosen)


def check_secrets(folder: str | Path, files: list[str]) -> None:
    """Refuse (DeployError) if a file about to go public is named like a secret or holds a token or a private key."""
    for name in files:
        path = Path(folder) / name
        if any(fnmatch.fnmatch(path.name, p) for p in SECRET_NAMES) or (
            path.stat().st_size <= 5 * 2**20 and SECRET_TEXT.search(path.read_bytes())
        ):
            raise DeployError(
                f"{name} looks like it holds a secret (an access token or a private key): remove it from that file "
                "(the Space is public); nothing was uploaded"
            )


def check_model_id(api, model_id: str) -> None:
    """--model-id must name a Hub model in the DDPMPipeline layout the Space loads."""
    from huggingface_hub.errors import RepositoryNotFoundError

    if not REPO_ID.fullmatch(model_id):
        raise DeployError(f"--model-id {model_id[:80]!r} is not a Hub repo id: use USER/MODEL")
    try:
        files = {s.rfilename for s in api.model_info(model_id).siblings or []}
    except RepositoryNotFoundError:
        raise DeployError(
            f"--model-id {model_id}: no such model on the Hub (or it is private: pass a token that reads it)"
        ) from None
    needed = {"unet/config.json", "scheduler/scheduler_config.json"}
    if not needed <= files:
        raise DeployError(
            f"--model-id {model_id} is not a DDPM in diffusers' layout: it has no {', '.join(sorted(needed - files))}"
        )


def space_card(folder: Path, model_id: str | None) -> bytes:
    """README.md with `models:` and `datasets:` filled in, so the Hub links the Space to what it shows."""
    from huggingface_hub import SpaceCard

    card = SpaceCard((folder / "README.md").read_text())
    card.data.models = [model_id] if model_id else []
    card.data.datasets = list(BUNDLED_DATASETS)
    return str(card).encode()


def deploy(space_id: str, folder: str | Path = ROOT, token: str | None = None, model_id: str | None = None,
           private: bool = False) -> str:  # fmt: skip
    """Create (or reuse) the Space, upload what it runs, set MODEL_ID if given; returns the Space's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    if not REPO_ID.fullmatch(space_id):
        raise DeployError(f"{space_id[:80]!r} is not a Space id: use USER/SPACE")
    files = files_to_upload(folder)
    check_secrets(folder, files)
    api = HfApi(token=token)
    if model_id:
        check_model_id(api, model_id)
    operations = [CommitOperationAdd(f, str(folder / f)) for f in files if f not in ("README.md",)]
    operations.append(CommitOperationAdd("README.md", space_card(folder, model_id)))
    operations.append(CommitOperationAdd("requirements.txt", str(folder / SPACE_REQUIREMENTS)))
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.create_commit(space_id, operations, commit_message="Deploy ddpm-space", repo_type="space")
    if model_id:
        api.add_space_variable(space_id, "MODEL_ID", model_id, description="the model the Space opens on")
    return space_url(space_id)


def _reason(e: Exception) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return "the Hub did not accept the token (401): log in with `hf auth login` (a write token), or pass --token"
    if status == 403:
        return "the token may not write there (403): use a write token of the Space's owner"
    from .hub import one_line

    return one_line(e, 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("space_id", help="USER/SPACE: the Space to create or update")
    parser.add_argument("--model-id", default=None, help="a Hub model (USER/MODEL) the Space opens on (Space variable MODEL_ID)")
    parser.add_argument("--token", default=None, help="a write token (default: HF_TOKEN or the one `hf auth login` saved)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    args = parser.parse_args(argv)
    try:
        url = deploy(args.space_id, token=args.token, model_id=args.model_id, private=args.private)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - network, auth and server errors: one line, and how to retry
        retry = " ".join(["python -m ddpm.deploy", args.space_id, *(["--model-id", args.model_id] if args.model_id else [])])
        print(f"error: deploying to {args.space_id} failed: {_reason(e)}. Nothing local changed; retry with: {retry}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"deployed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
