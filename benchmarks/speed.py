"""The digits model against diffusers' own code, on this machine: our training loop against the loop of diffusers'
train_unconditional.py (`benchmarks/reference_loop.py`), our sampler against `DDPMPipeline`, each beside the network
alone; the real Space's first frame and finished GIF through gradio_client; peak memory of a training run.
Measures and returns results; `benchmarks.report` writes them up.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

import torch

from benchmarks.harness import (
    ROOT,
    fresh_accelerate_state,
    generate_through,
    network_alone,
    paired,
    peak_rss_mb,
    start_server,
    timed,
)
from ddpm.hub import load_pipeline
from ddpm.sampling import sample


def bench_training(steps: int, batch: int, repeats: int, resolution: int) -> dict:
    from benchmarks.reference_loop import train_reference
    from ddpm.data import digits_dataset
    from ddpm.models import make_unet
    from ddpm.training import TrainConfig, train

    def ours(seed, precision="no"):
        fresh_accelerate_state()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(
                output_dir=tmp, resolution=resolution, max_train_steps=steps, train_batch_size=batch, eval_batch_size=0,
                checkpointing_steps=0, save_images_steps=0, report_to="none", logging_steps=steps, seed=seed,
                mixed_precision=precision,
            )  # fmt: skip
            return train(cfg)["images_per_s"]

    def reference(seed, precision="no"):
        fresh_accelerate_state()
        torch.manual_seed(seed)
        return train_reference(
            make_unet("tiny", resolution, 1), digits_dataset("train"), resolution, batch, steps, seed, mixed_precision=precision
        )

    res = {"ours": [], "reference": []}
    for r in range(repeats):  # interleaved: ours, reference, ours, reference, ...
        res["ours"].append(ours(r))
        res["reference"].append(reference(r))
        print(f"  training run {r + 1}/{repeats}: ours {res['ours'][-1]:.0f} img/s, reference {res['reference'][-1]:.0f} img/s")
    res["ours_bf16"], res["reference_bf16"] = ours(0, "bf16"), reference(0, "bf16")
    print(f"  bf16 autocast: ours {res['ours_bf16']:.0f} img/s, reference {res['reference_bf16']:.0f} img/s", flush=True)
    res.update(paired(res["ours"], res["reference"]), batch=batch, steps=steps)  # images/s: ours / reference
    res.update(resolution=resolution, network=network_profile(batch, resolution))
    return res


def network_profile(batch: int, resolution: int) -> dict:
    """Where a training step goes: the UNet's forward + backward, eager and under torch.compile (fp32)."""
    from ddpm.models import make_unet

    torch.manual_seed(0)
    unet = make_unet("tiny", resolution, 1).train()
    shape = (batch, 1, resolution, resolution)
    x, e, t = torch.randn(shape), torch.randn(shape), torch.randint(0, 1000, (batch,))

    def step(model):
        torch.nn.functional.mse_loss(model(x, t).sample, e).backward()
        unet.zero_grad(set_to_none=True)

    def median_ms(model, n=7):
        step(model)
        times = [timed(lambda: step(model))[0] for _ in range(n)]
        return 1000 * statistics.median(times)

    eager = median_ms(unet)
    compiled = torch.compile(unet)
    compile_s = timed(lambda: step(compiled))[0]
    out = {"eager_ms": eager, "compiled_ms": median_ms(compiled), "compile_s": compile_s}
    print(f"  network fwd+bwd: eager {out['eager_ms']:.0f} ms, compiled {out['compiled_ms']:.0f} ms (compile {compile_s:.0f} s)")
    return out


def bench_sampling(model_dir: str, batch: int, repeats: int) -> dict:
    from diffusers import DDPMPipeline
    from diffusers import DDPMScheduler as DiffusersDDPMScheduler

    m = load_pipeline(model_dir)
    T = m.scheduler.num_train_timesteps
    pipe = DDPMPipeline(unet=m.unet, scheduler=DiffusersDDPMScheduler.from_pretrained(model_dir, subfolder="scheduler"))
    pipe.set_progress_bar_config(disable=True)
    ours_t, theirs_t, network_t = [], [], []
    for r in range(repeats):  # interleaved: ours, DDPMPipeline, the network alone, ...
        t, ours = timed(lambda r=r: sample(m.unet, m.scheduler, batch, generator=torch.Generator().manual_seed(r)))
        ours_t.append(t)
        t, theirs = timed(
            lambda r=r: (
                pipe(batch_size=batch, generator=torch.Generator().manual_seed(r), num_inference_steps=T, output_type="pt").images
            )
        )
        theirs_t.append(t)
        network_t.append(network_alone(m.unet, batch, list(range(T - 1, -1, -1))))
        diff = float(((ours / 2 + 0.5).clamp(0, 1) - theirs).abs().max())
        print(
            f"  sampling run {r + 1}/{repeats}: ours {ours_t[-1]:.2f} s, DDPMPipeline {theirs_t[-1]:.2f} s, "
            f"the UNet alone {network_t[-1]:.2f} s, max |diff| {diff:.2e}"
        )
    fast = {}
    for sampler in ("respaced", "ddim"):
        for n in sorted({min(50, T), min(100, T)}):
            fast[f"{sampler}-{n}"] = timed(
                lambda sampler=sampler, n=n: sample(
                    m.unet, m.scheduler, batch, sampler=sampler, num_inference_steps=n, generator=torch.Generator().manual_seed(0)
                )
            )[0]
    return {
        "ours": ours_t,
        "pipeline": theirs_t,
        **paired(theirs_t, ours_t),  # seconds: DDPMPipeline / ours
        "network": network_t,
        "ceiling": paired(theirs_t, network_t)["ratio"],  # DDPMPipeline / the network alone: no sampler can beat it
        "network_share": paired(network_t, ours_t)["ratio"],  # the network alone / ours
        "max_abs_diff": diff,
        "T": T,
        "batch": batch,
        "fast": fast,
    }


def bench_app(repeats: int) -> dict:
    """The real Space (`python app.py`) asked through gradio_client for 16 images, all T ancestral steps, fp32: seconds
    to the first frame and to the finished GIF, and the server's peak memory."""
    from gradio_client import Client

    proc, url = start_server()
    try:
        client = Client(url, verbose=False)
        first, total = [], []
        for r in range(repeats):
            t_first, t_total, _ = generate_through(client, r, 16, "ddpm", None)
            first.append(t_first), total.append(t_total)
            print(f"  app run {r + 1}/{repeats}: first frame {first[-1]:.2f} s, GIF ready {total[-1]:.2f} s")
        peak = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"first_frame": statistics.median(first), "finished": statistics.median(total), "peak_rss_mb": peak}


def training_peak_rss(steps: int, batch: int) -> float:
    """Peak RSS (MiB) of `train_accelerate.py` as a user runs it, reported by the training process itself
    (the children's rusage would also count the app server measured before it)."""
    args = ["--max_train_steps", str(steps), "--train_batch_size", str(batch), "--eval_batch_size", "0",
            "--report_to", "none", "--checkpointing_steps", "0", "--save_images_steps", "0"]  # fmt: skip
    script = (
        "import resource, runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"  # the script and its flags, as `python train_accelerate.py ...` sees them
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-c", script, str(ROOT / "train_accelerate.py"), "--output_dir", tmp, *args],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT,
        )  # fmt: skip
    peak = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    if r.returncode != 0 or not peak:
        raise RuntimeError(f"the training run failed: {r.stderr[-2000:]}")
    return int(peak[-1]) / 1024
