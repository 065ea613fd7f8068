"""Deploying the Space: `python -m ddpm.deploy` against the Hub fixture on 127.0.0.1, and the Space card itself."""

import os
import subprocess
import sys
from pathlib import Path

import gradio
from hub_server import FakeHub
from huggingface_hub import SpaceCard

ROOT = Path(__file__).resolve().parents[1]


def deploy(hub, tmp_path, *args, token=None):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "HF_TOKEN": token or hub.token, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "ddpm.deploy", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_one_command_deploys_the_space_and_a_second_updates_it(tmp_path):
    with FakeHub() as hub:
        r = deploy(hub, tmp_path, "alice/ddpm-space", "--model-id", "alice/ddpm-fashion")
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.strip() == f"deployed: {hub.url}/spaces/alice/ddpm-space"  # follows HF_ENDPOINT
        space = hub.spaces["alice/ddpm-space"]
        assert space.sdk == "gradio" and space.variables == {"MODEL_ID": "alice/ddpm-fashion"}
        files = set(space.files)
        for needed in ["app.py", "README.md", "LICENSE", "requirements.txt", "ddpm/space/stream.py", "docs/app.png",
                       "pretrained/ddpm-fashion/unet/diffusion_pytorch_model.safetensors", "pretrained/ddpm-fashion/held_out.npz",
                       "pretrained/ddpm-digits/scheduler/scheduler_config.json"]:  # fmt: skip
            assert needed in files, needed
        assert not [f for f in files if f.startswith((".venv/", ".git/")) or "/checkpoints/" in f or "/logs/" in f]
        assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
        card = SpaceCard(space.files["README.md"].decode())
        assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
        (ROOT / "tmp_deploy_marker.txt").write_text("second deploy")
        try:
            again = deploy(hub, tmp_path, "alice/ddpm-space")  # the Space exists: create answers 409, upload goes on
        finally:
            (ROOT / "tmp_deploy_marker.txt").unlink()
        assert again.returncode == 0, again.stderr[-3000:]
        assert "tmp_deploy_marker.txt" in space.files and len(space.commits) == 2


def test_a_failed_deploy_is_one_line_with_the_retry_command(tmp_path):
    with FakeHub() as hub:
        r = deploy(hub, tmp_path, "alice/ddpm-space", "--model-id", "alice/m", token="hf_wrong")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: deploying to alice/ddpm-space failed: ")
    assert line.endswith("retry with: python -m ddpm.deploy alice/ddpm-space --model-id alice/m")


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
