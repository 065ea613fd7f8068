"""Small shared pieces for the tests."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

ROOT = Path(__file__).resolve().parents[1]


def python_path() -> str:
    """PYTHONPATH for a subprocess: the repository first, then the caller's own (packages installed with `--target`,
    as on a GPU machine that has no diffusers of its own)."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def tiny_unet(size: int = 8, channels: int = 1, seed: int = 0) -> UNet2DModel:
    """A small random UNet2DModel (fast on CPU), the same for the same seed."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    ).eval()


# Every device this machine has: the device tests run on the CPU everywhere, and on CUDA too where a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def hub_env(hub, tmp_path: Path) -> dict:
    """A subprocess's environment that talks to the Hub fixture (huggingface_hub reads these once, at import)."""
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": python_path()}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(folder: Path, timeout_s: float = 180, **env: str):
    """`python app.py` exactly as a user starts it (the bundled model), on a free port, with `env` on top of this
    process's environment; its log and its temporary files (run folders, Gradio's cache) under `folder`. Yields
    {"url", "proc", "log", "tmp"} once it accepts connections; stops it after."""
    port = free_port()
    logs, tmp = folder / "server.log", folder / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port),
           "TMPDIR": str(tmp), **env}  # fmt: skip
    env.pop("MODEL_ID", None)
    with open(logs, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited: {logs.read_text()[-2000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"app.py did not start in {timeout_s:.0f} s")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        yield {"url": f"http://127.0.0.1:{port}/", "proc": proc, "log": logs, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
