"""Publish this repository as a Gradio Space, in one command:

    python -m ddpm.deploy USER/SPACE                          # the bundled models
    python -m ddpm.deploy USER/SPACE --model-id USER/MODEL    # ... opening on your model (Space variable MODEL_ID)

`create_repo(repo_type="space", space_sdk="gradio")`, then `upload_folder` over HTTP (binary files go to LFS/Xet by
themselves, no git needed), never the virtual environment, training outputs, checkpoints, logs or caches. The token
comes from --token, HF_TOKEN or `hf auth login`; HF_ENDPOINT is followed, as everywhere in huggingface_hub.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# fnmatch patterns on paths relative to the repository ('*' also crosses '/')
IGNORE = [
    ".git/*", ".venv/*", "venv/*", "*__pycache__/*", "*.pyc", ".pytest_cache/*", ".ruff_cache/*",
    "output*", "runs/*", "tmp/*", "checkpoints/*", "*/checkpoints/*", "logs/*", "*/logs/*",
    "benchmarks/quick/*", "app.pyi", ".whl/*", ".gl/*",
]  # fmt: skip


def space_url(space_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/spaces/{space_id}"


def deploy(space_id: str, folder: str | Path = ROOT, token: str | None = None, model_id: str | None = None,
           private: bool = False) -> str:  # fmt: skip
    """Create (or reuse) the Space, upload `folder` to it, set MODEL_ID if given; returns the Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=space_id,
        repo_type="space",
        folder_path=str(folder),
        ignore_patterns=IGNORE,
        commit_message="Deploy ddpm-space",
    )
    if model_id:
        api.add_space_variable(space_id, "MODEL_ID", model_id, description="the model the Space opens on")
    return space_url(space_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("space_id", help="USER/SPACE: the Space to create or update")
    parser.add_argument("--model-id", default=None, help="a Hub model (USER/MODEL) the Space opens on (Space variable MODEL_ID)")
    parser.add_argument("--token", default=None, help="a write token (default: HF_TOKEN or the one `hf auth login` saved)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    args = parser.parse_args(argv)
    try:
        url = deploy(args.space_id, token=args.token, model_id=args.model_id, private=args.private)
    except Exception as e:  # noqa: BLE001 - network, auth and server errors: one line, and how to retry
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        retry = " ".join(["python -m ddpm.deploy", args.space_id, *(["--model-id", args.model_id] if args.model_id else [])])
        print(f"error: deploying to {args.space_id} failed: {reason}. Nothing local changed; retry with: {retry}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"deployed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
