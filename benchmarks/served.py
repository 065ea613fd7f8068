"""What a visitor waits for: sampling runs served by the real Space (`python app.py` on 127.0.0.1, asked through
gradio_client as any API caller asks), each paired with the network's own calls for the same run (same batch, same
number of calls) timed in this process right after it, the server idle. served / network alone is what the Space
adds to the network: the sampler's arithmetic, the frames it draws and writes (previews, GIF, gallery, zip,
scrubber) and Gradio's streaming.

    python -m benchmarks.served --out served.json        # then: python -m benchmarks --served served.json --update ...

Runs on the bundled Fashion-MNIST model (the Space's default), 16 images, fp32, with the request limit raised so
that no run is stopped. The first run of each sampler is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddpm import space
from ddpm.hub import load_pipeline
from ddpm.sampling import walk

ROOT = Path(__file__).resolve().parents[1]

FP32 = next(label for label, name in space.PRECISION_LABELS.items() if name == "fp32")
SAMPLER = {name: label for label, name in space.SAMPLER_LABELS.items()}
CASES = (("ddpm", None), ("dpm2m", 50), ("ddim", 50))  # (sampler, steps): all T ancestral steps, two 50-step ones


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


def start_server(tmp: str, limit_s: float = 3600.0) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port, its temporary files under `tmp`; returns once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port),
           "TMPDIR": tmp, "DDPM_MAX_REQUEST_S": str(limit_s)}  # fmt: skip
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


def served(client, sampler: str, steps: int | None, seed: int, images: int) -> tuple[float, float, str]:
    """(seconds to the first frame, seconds to the last message, its status line) of one Generate."""
    start = time.perf_counter()
    job = client.submit(seed, images, SAMPLER[sampler], steps or 1, 0.0, False, FP32, api_name="/generate")
    first = None
    while not job.done():  # polls every 20 ms: a light client, as a browser is
        if first is None and job.outputs():
            first = time.perf_counter() - start
        time.sleep(0.02)
    status = job.result()[1]
    total = time.perf_counter() - start
    return first if first is not None else total, total, status


def measure(repeats: int = 3, images: int = 16, cases=CASES) -> dict:
    from gradio_client import Client

    model = load_pipeline(space.BUNDLED_MODEL)
    T = model.scheduler.num_train_timesteps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(tmp)
        try:
            client = Client(url, verbose=False, download_files=False)  # a browser fetches pictures as it shows them
            for sampler, steps in cases:
                timesteps = walk(T, sampler, steps)
                row = {"sampler": sampler, "steps": steps or T, "calls": len(timesteps), "served": [], "network": [], "first": []}
                for r in range(repeats + 1):
                    first, total, status = served(client, sampler, steps, r, images)
                    alone = network_alone(model.unet, images, timesteps)
                    assert status.startswith("done:"), status
                    if r:  # the first is a warm-up
                        row["served"].append(total), row["network"].append(alone), row["first"].append(first)
                    print(f"  {sampler}-{row['steps']}: served {total:.2f} s (first frame {first:.2f} s), network alone "
                          f"{alone:.2f} s", flush=True)  # fmt: skip
                ratios = [s / n for s, n in zip(row["served"], row["network"], strict=True)]
                row.update(ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
                rows.append(row)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"images": images, "precision": "fp32", "T": T, "rows": rows, "peak_rss_mb": peak_kb / 1024,
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip


TARGETS = {"all": 1.25, "few": 1.5}  # served / network alone: all T steps, and 50 steps


def target(row: dict, T: int) -> float:
    return TARGETS["all"] if row["calls"] >= T else TARGETS["few"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    result = measure(a.repeats)
    Path(a.out).write_text(json.dumps(result, indent=1))
    for row in result["rows"]:
        print(f"{row['sampler']}-{row['steps']}: served / network {row['ratio']:.2f}x "
              f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}), target {target(row, result['T'])}x")  # fmt: skip


if __name__ == "__main__":
    main()
