"""Deploying the Space: `python -m ddpm.deploy` against the Hub fixture on 127.0.0.1, and the Space card itself."""

import os
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
from helpers import python_path
from hub_server import FakeHub, Repo
from huggingface_hub import SpaceCard

ROOT = Path(__file__).resolve().parents[1]


def deploy(hub, tmp_path, *args, token=None):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "HF_TOKEN": token or hub.token, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": python_path()}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "ddpm.deploy", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_one_command_deploys_the_space_and_a_second_updates_it(tmp_path):
    with FakeHub() as hub:
        model = ROOT / "pretrained" / "ddpm-fashion"
        files = {
            str(p.relative_to(model)): p.read_bytes()
            for p in model.rglob("*")
            if p.is_file() and "checkpoints" not in p.parts and "logs" not in p.parts
        }
        hub.repos["alice/ddpm-fashion"] = Repo(files=files, commits=["1" * 40])
        r = deploy(hub, tmp_path, "alice/ddpm-space", "--model-id", "alice/ddpm-fashion")
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.strip() == f"deployed: {hub.url}/spaces/alice/ddpm-space"  # follows HF_ENDPOINT
        space = hub.spaces["alice/ddpm-space"]
        assert space.sdk == "gradio" and space.variables == {"MODEL_ID": "alice/ddpm-fashion"}
        files = set(space.files)
        for needed in ["app.py", "README.md", "LICENSE", "requirements.txt", "packages.txt", "ddpm/space/stream.py",
                       "docs/app.png",
                       "pretrained/ddpm-fashion/unet/diffusion_pytorch_model.safetensors", "pretrained/ddpm-fashion/held_out.npz",
                       "pretrained/ddpm-digits/scheduler/scheduler_config.json"]:  # fmt: skip
            assert needed in files, needed
        assert not [f for f in files if f.startswith((".venv/", ".git/")) or "/checkpoints/" in f or "/logs/" in f]
        assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
        assert not [f for f in files if f.startswith(("tests/", "benchmarks/", ".ci/"))]  # the Space never runs them
        card = SpaceCard(space.files["README.md"].decode())
        assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
        assert card.data.models == ["alice/ddpm-fashion"] and card.data.datasets == ["zalando-datasets/fashion_mnist"]
        assert space.files["requirements.txt"] == (ROOT / "requirements-space.txt").read_bytes()
        marker = ROOT / "docs" / "tmp-deploy-marker.png"
        marker.write_bytes(b"second deploy")
        try:
            again = deploy(hub, tmp_path, "alice/ddpm-space")  # the Space exists: create answers 409, upload goes on
        finally:
            marker.unlink()
        assert again.returncode == 0, again.stderr[-3000:]
        assert "docs/tmp-deploy-marker.png" in space.files and len(space.commits) == 2


def test_only_what_the_space_runs_goes_up_and_never_a_secret(tmp_path):
    """A user's project folder holds much besides the app: none of it goes to the public Space."""
    from ddpm.deploy import DeployError, check_secrets, files_to_upload

    for name, text in {
        "app.py": "print()", "README.md": "card", "LICENSE": "MIT", "ddpm/x.py": "", "ddpm/space/y.py": "",
        "pretrained/m/unet/config.json": "{}", "pretrained/m/unet/diffusion_pytorch_model.safetensors": "w",
        "pretrained/m/checkpoints/checkpoint-1/model.safetensors": "w", "docs/app.png": "png",
        ".env": "HF_TOKEN=hf_" + "a" * 34, "ddpm-model/unet/config.json": "{}", "wandb/run/log.txt": "",
        "my_images/cat.png": "", "notes.ipynb": "{}", ".gradio/flagged/x.png": "", ".DS_Store": "",
        "tests/test_x.py": "", "benchmarks/b.py": "", "secret_output/app.py": "", "ignored.py": "",
    }.items():  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".gitignore").write_text("/secret_output/\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert files_to_upload(tmp_path) == [
        "LICENSE", "README.md", "app.py", "ddpm/space/y.py", "ddpm/x.py", "docs/app.png", "pretrained/m/unet/config.json",
        "pretrained/m/unet/diffusion_pytorch_model.safetensors",
    ]  # fmt: skip
    check_secrets(tmp_path, files_to_upload(tmp_path))
    (tmp_path / "ddpm" / "x.py").write_text('TOKEN = "hf_' + "b" * 34 + '"')  # a token pasted into the code
    with pytest.raises(DeployError, match=r"ddpm/x.py looks like it holds a secret .* nothing was uploaded"):
        check_secrets(tmp_path, files_to_upload(tmp_path))


def test_bad_ids_are_refused_before_anything_is_uploaded(tmp_path):
    with FakeHub() as hub:
        bad = deploy(hub, tmp_path, "alice/ddpm-space", "--model-id", "not a repo id")
        missing = deploy(hub, tmp_path, "alice/ddpm-space", "--model-id", "alice/nothing-here")
        assert "alice/ddpm-space" not in hub.spaces
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --model-id 'not a repo id' is not a Hub repo id: use USER/MODEL"
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: --model-id alice/nothing-here: no such model")


def test_a_failed_deploy_is_one_line_with_the_retry_command(tmp_path):
    with FakeHub() as hub:
        r = deploy(hub, tmp_path, "alice/ddpm-space", token="hf_wrong")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: deploying to alice/ddpm-space failed: ")
    assert line.endswith("retry with: python -m ddpm.deploy alice/ddpm-space")
    assert "log in with `hf auth login` (a write token), or pass --token" in line


def test_the_space_card_is_valid_and_within_the_hubs_limits():
    text = (ROOT / "README.md").read_text()
    card = SpaceCard(text)
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == gradio.__version__ and (ROOT / data.app_file).is_file()
    assert len(data.short_description) <= 60  # the Hub refuses longer ones
    assert data.license == "mit" and "MIT License" in (ROOT / "LICENSE").read_text()
    assert data.title and data.emoji and data.colorFrom and data.colorTo
    assert "../" not in text  # nothing outside the repository: dead on GitHub, the Hub and the Space
    for link in __import__("re").findall(r"\]\((?!https?://|#)([^)]+)\)", text):
        assert (ROOT / link).exists(), f"README links to {link}, which is not in the repository"


def test_the_space_runs_on_its_own_requirements():
    """The Space installs requirements-space.txt: the training-only packages of requirements.txt (accelerate,
    datasets, tensorboard, imageio) are never imported by the app, and the pins agree."""

    def pins(name):
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith(("#", "-")))

    full, space = pins("requirements.txt"), pins("requirements-space.txt")
    assert all(full[name] == version for name, version in space.items())
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / "requirements-space.txt").read_text()
    training_only = sorted(set(full) - set(space) - {"tqdm"})  # tqdm comes with huggingface-hub
    assert training_only == ["accelerate", "datasets", "imageio", "tensorboard"]
    script = (
        "import sys\n"
        f"for name in {training_only!r}:\n    sys.modules[name] = None  # not installed\n"
        "import app\napp.build()\nprint('BUILT')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": python_path()}
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "BUILT" in r.stdout, r.stderr[-2000:]
