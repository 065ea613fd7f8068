"""What every experiment shares: the machine's name, timing, pairing of interleaved runs, a fresh accelerate state,
the device's measured matmul peak, the bare network's time, and the real Space started as a visitor meets it.
No experiment and no prose here: experiments import this, nothing here imports them."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> str:
    """The CPU's model name, its cores, the GPU (if any), torch's version and threads: the header of each result."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def timed(fn):
    """(seconds, result) of `fn()`."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_once(fn) -> float:
    """The seconds `fn()` takes."""
    return timed(fn)[0]


def paired(numerator: list[float], denominator: list[float]) -> dict:
    """Median and range of the per-run ratios numerator[i] / denominator[i] of interleaved runs.

    On a shared host the machine's speed drifts between runs by more than the loops differ; the ratio within each
    pair of neighbouring runs cancels that drift, where a ratio of two medians (taken from different runs) does not.
    """
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios}


def fresh_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so the next `Accelerator` may use another mixed precision.

    `AcceleratorState` is a singleton that refuses a second precision in one process; the fp32 and bf16 runs of
    both loops are measured in this one process, so each starts from a clean state (as accelerate's own tests do).
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously), so a timer reads what it took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 20, device: str | torch.device = "cpu") -> float:
    """The device's measured matmul GFLOP/s in `dtype` (the best of `repeats`; fp32 with TF32 off on a GPU)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a @ b
        sync(device)
        best = min(timed_once(lambda: (a @ b, sync(device))) for _ in range(repeats))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / best / 1e9


@torch.inference_mode()
def network_alone(unet, batch: int, timesteps: list[int]) -> float:
    """Seconds for one bare forward pass of the UNet at each of `timesteps`: what any sampler walking them must spend."""
    cfg = unet.config
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    unet(x, torch.tensor(timesteps[0]))
    start = time.perf_counter()
    for t in timesteps:
        unet(x, torch.tensor(t))
    return time.perf_counter() - start


def weights_digest(model_dir: str) -> str:
    """sha256 of the model's UNet weights: which model a result measured, whatever its folder is called."""
    (weights,) = sorted(Path(model_dir, "unet").glob("diffusion_pytorch_model.*"))[:1]
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def start_server(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port of 127.0.0.1 (the bundled model, offline; `env` added to this process's
    environment); returns (the process, its URL) once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port),
           **(env or {})}  # fmt: skip
    env.pop("MODEL_ID", None)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, **quiet)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("app.py did not start in 120 s")


def generate_through(client, seed: int, images: int, sampler: str, steps: int | None, precision: str = "fp32"):
    """One Generate asked of a running Space through `client` (a gradio_client `Client`), as any API caller asks:
    (seconds to its first frame, seconds to its last message, its status line). Polls every 20 ms, a light client
    as a browser is."""
    from ddpm import space

    sampler_label = next(label for label, name in space.SAMPLER_LABELS.items() if name == sampler)
    precision_label = next(label for label, name in space.PRECISION_LABELS.items() if name == precision)
    start = time.perf_counter()
    job = client.submit(seed, images, sampler_label, steps or 1, 0.0, False, precision_label, api_name="/generate")
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter() - start
        time.sleep(0.02)
    status = job.result()[1]
    total = time.perf_counter() - start
    return first if first is not None else total, total, status


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


REAL_ROW = "training images (the floor)"  # a row of real pictures scored as the samplers' rows are


def space_samplers(clip: bool, precision: str, ancestral: bool = True, steps: int = 50) -> list[tuple[str, dict]]:
    """What the Space offers, each at its default steps (ancestral all T, unless `ancestral` is False: the longest
    row; respaced, DDIM and DPM-Solver++ 2M 50, or `steps`), as (row name, `sample` keywords)."""
    suffix = "" if clip else " unclipped"
    common = {"clip_sample": clip, "precision": precision}
    few = {"num_inference_steps": steps, **common}
    rows = [
        (f"ancestral{suffix}", {"sampler": "ddpm", **common}),
        (f"respaced-{steps}{suffix}", {"sampler": "respaced", **few}),
        (f"ddim-{steps}{suffix}", {"sampler": "ddim", "eta": 0.0, **few}),
        (f"ddim-{steps} eta 1{suffix}", {"sampler": "ddim", "eta": 1.0, **few}),
        (f"dpm2m-{steps}{suffix}", {"sampler": "dpm2m", **few}),
    ]
    return rows if ancestral else rows[1:]


def generate_many(m, n: int, batch: int, seed: int = 1000, draw=None, **kwargs) -> torch.Tensor:
    """n samples in batches, batch i seeded with seed + i: `sample(..., **kwargs)`, or `draw(batch_size, generator)`
    for a sampler written elsewhere that draws its x_T first from the generator (then on the same noises)."""
    from ddpm.sampling import sample

    draw = draw or (lambda b, g: sample(m.unet, m.scheduler, b, generator=g, **kwargs))
    return torch.cat([draw(min(batch, n - i), torch.Generator().manual_seed(seed + i)) for i in range(0, n, batch)])
