"""`python -m benchmarks.gpu`: training speed on the device present (a GPU where there is one), and the quick
quality comparison of trained models that chose the bundled one.

    python -m benchmarks.gpu speed --out gpu.json          # our loop against diffusers' train_unconditional.py loop
    python -m benchmarks.gpu loop --out loop.json           # our loop eager, then under torch.compile (CUDA graphs)
    python -m benchmarks.gpu compare MODEL ... --out q.json # fashion-FD and blow-ups of several 28 px models
    python -m benchmarks --gpu-results gpu.json --update --skip-speed --skip-digits --skip-fashion  # into RESULTS.md

speed: the 28 px Fashion-MNIST `nano` UNet at each batch size, in fp32 and bf16 autocast, our training loop
(`ddpm.training.train`, images kept on the device) interleaved with the re-implemented diffusers loop
(`benchmarks/reference_loop.py`: a `datasets` transform per item and a DataLoader, as the script does), each as
steady-state images/s; beside them the network alone (forward, backward and a fused AdamW step on tensors already on
the device: what a loop with no cost of its own would reach), eager and under `torch.compile`, and the achieved
FLOP/s against the device's measured matmul peak.

compare: every model draws the same starting noises; one classifier (trained once) scores them all, so the rows
compare with each other (the full, committed measurement is `python -m benchmarks`' Fashion-MNIST section).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import fashion, metrics
from benchmarks.harness import fresh_accelerate_state, machine, matmul_peak, paired, space_samplers, sync


def train_flops_per_image(preset: str, resolution: int) -> float:
    """Forward + backward FLOPs of one training image, counted by torch's FLOP counter on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from ddpm.models import make_unet

    unet = make_unet(preset, resolution, 1).train()
    x, t = torch.randn(2, 1, resolution, resolution), torch.randint(0, 1000, (2,))
    with FlopCounterMode(display=False) as counter:
        unet(x, t).sample.square().mean().backward()
    return counter.get_total_flops() / 2


def train_step_alone(device, preset: str, resolution: int, batch: int, precision: str, compiled: bool, steps: int) -> dict:
    """images/s of forward, backward and AdamW with everything already on the device (no data, no noise drawn)."""
    from ddpm.models import make_unet

    torch.manual_seed(0)
    unet = make_unet(preset, resolution, 1).to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    model = torch.compile(unet) if compiled else unet
    shape = (batch, 1, resolution, resolution)
    x, e = torch.randn(shape, device=device), torch.randn(shape, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with autocast:
            loss = torch.nn.functional.mse_loss(model(x, t).sample.float(), e)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return {"images_per_s": steps * batch / (time.perf_counter() - t0), "first_step_s": first}


def ours(data_dir, preset, batch, steps, precision, seed) -> float:
    from ddpm.training import TrainConfig, train

    fresh_accelerate_state()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            output_dir=tmp, dataset_name="fashion_mnist", data_dir=data_dir, resolution=28, channels=1,
            model_preset=preset, max_train_steps=steps, train_batch_size=batch, eval_batch_size=0,
            checkpointing_steps=0, save_images_steps=0, report_to="none", logging_steps=steps, seed=seed,
            mixed_precision=precision, learning_rate=1e-4,
        )  # fmt: skip
        return train(cfg)["images_per_s"]


def reference(dataset, preset, batch, steps, precision, seed) -> float:
    from benchmarks.reference_loop import train_reference
    from ddpm.models import make_unet

    fresh_accelerate_state()
    torch.manual_seed(seed)
    return train_reference(make_unet(preset, 28, 1), dataset, 28, batch, steps, seed, mixed_precision=precision)


def bench_speed(data_dir, preset: str, rows: list[tuple[int, str]], steps: int, repeats: int, compile_last: bool,
                out: Path) -> dict:  # fmt: skip
    """Each (batch, precision) row: our loop and the reference interleaved `repeats` times, the network alone beside
    them (and, with `compile_last`, the last row's network under torch.compile); `out` is rewritten after each row."""
    from ddpm.data import arrays_dataset, load_arrays

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arrays = load_arrays("fashion_mnist", "train", data_dir)
    dataset = arrays_dataset(arrays.images[:10_000], arrays.labels[:10_000])  # the loader's per-item work is the same
    n = 8192 if device.type == "cuda" else 1024
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {k: 1e9 * matmul_peak(dtype, n, 10, device) for k, dtype in dtypes.items()}  # FLOP/s
    print(f"  matmul peak: fp32 {peaks['fp32'] / 1e12:.1f}, bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s", flush=True)
    res = {"machine": machine(), "device": device.type, "preset": preset, "steps": steps, "peaks": peaks,
           "train_flops_per_image": train_flops_per_image(preset, 28), "rows": []}  # fmt: skip
    for i, (batch, precision) in enumerate(rows):
        runs = {"ours": [], "reference": []}
        for r in range(repeats):  # interleaved
            runs["ours"].append(ours(data_dir, preset, batch, steps, precision, r))
            runs["reference"].append(reference(dataset, preset, batch, steps, precision, r))
        net_precision = "bf16" if precision == "bf16" else "fp32"
        net = train_step_alone(device, preset, 28, batch, net_precision, False, steps)
        row = {"batch": batch, "precision": precision, **runs, **paired(runs["ours"], runs["reference"]),
               "network_alone": net["images_per_s"]}  # fmt: skip
        if compile_last and i == len(rows) - 1:
            comp = train_step_alone(device, preset, 28, batch, net_precision, True, steps)
            row.update(network_compiled=comp["images_per_s"], compile_s=comp["first_step_s"])
        res["rows"].append(row)
        out.write_text(json.dumps(res, indent=1, default=float))
        print(f"  batch {batch} {precision}: ours {statistics.median(runs['ours']):.0f} img/s, reference "
              f"{statistics.median(runs['reference']):.0f} ({row['ratio']:.2f}x), network alone {net['images_per_s']:.0f}"
              + (f", compiled {row['network_compiled']:.0f} (first step {row['compile_s']:.0f} s)" if "compile_s" in row else ""),
              flush=True)  # fmt: skip
    return res


COMPILED = {"ACCELERATE_DYNAMO_BACKEND": "inductor", "ACCELERATE_DYNAMO_MODE": "reduce-overhead"}


def compiled_loop(data_dir, preset: str, batch: int, steps: int) -> dict:
    """Our whole training loop in eager mode, then under torch.compile as `accelerate launch --dynamo_backend inductor
    --dynamo_mode reduce-overhead` runs it (inductor's fused kernels, replayed as CUDA graphs): steady-state images/s
    of each, and the compiled run's wall clock including its compilation."""
    import os

    eager = ours(data_dir, preset, batch, steps, "no", 0)
    saved = {k: os.environ.get(k) for k in COMPILED}
    os.environ.update(COMPILED)
    try:
        t0 = time.perf_counter()
        compiled = ours(data_dir, preset, batch, 2 * steps, "no", 0)
        wall = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    return {"batch": batch, "mode": COMPILED["ACCELERATE_DYNAMO_MODE"], "eager": eager, "compiled": compiled,
            "compiled_steps": 2 * steps, "compiled_wall_s": wall}  # fmt: skip


def compare(models: list[str], n: int, batch: int, device: str, save: Path | None = None, precision: str = "fp32",
            ancestral: bool = True) -> dict:  # fmt: skip
    """fashion-FD (± bootstrap sd) and blow-ups of each model's Space samplers (clipped), same noises for all;
    `save` is rewritten after each model."""
    from ddpm.hub import load_pipeline

    net, acc = metrics.fashion_classifier()
    x_test, _ = metrics.split_tensor("test")
    f_test = metrics.features(net, x_test)
    out = {"machine": machine(), "n": n, "classifier_accuracy": acc, "models": {}}
    for path in models:
        m = load_pipeline(path, device=device)
        print(f"{path}:", flush=True)
        rows, _ = fashion.score_rows(m, space_samplers(True, precision, ancestral), net, f_test, n, batch, 200)
        out["models"][path] = rows
        if save is not None:
            save.write_text(json.dumps(out, indent=1, default=float))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--data_dir", default=None, help="Fashion-MNIST's IDX files (default: Debian's)")
    s.add_argument("--preset", default="nano")
    s.add_argument("--rows", default="64:no,256:no,256:bf16", help="batch:precision pairs (precision no or bf16)")
    s.add_argument("--steps", type=int, default=200)
    s.add_argument("--repeats", type=int, default=2)
    s.add_argument("--compile", action="store_true", help="the network alone under torch.compile too (last row)")
    s.add_argument("--out", required=True)
    lp = sub.add_parser("loop")
    lp.add_argument("--data_dir", default=None, help="Fashion-MNIST's IDX files (default: Debian's)")
    lp.add_argument("--preset", default="nano")
    lp.add_argument("--batch", type=int, default=256)
    lp.add_argument("--steps", type=int, default=300, help="the eager run's steps (the compiled run takes twice as many)")
    lp.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("models", nargs="+")
    c.add_argument("--n", type=int, default=1000)
    c.add_argument("--batch", type=int, default=500)
    c.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    c.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    c.add_argument("--no-ancestral", action="store_true", help="the few-step samplers only")
    c.add_argument("--out", required=True)
    a = p.parse_args()
    if a.what == "speed":
        rows = [(int(b), prec) for b, prec in (r.split(":") for r in a.rows.split(","))]
        result = bench_speed(a.data_dir, a.preset, rows, a.steps, a.repeats, a.compile, Path(a.out))
    elif a.what == "loop":
        result = {"machine": machine(), **compiled_loop(a.data_dir, a.preset, a.batch, a.steps)}
    else:
        result = compare(a.models, a.n, a.batch, a.device, Path(a.out), a.precision, not a.no_ancestral)
    Path(a.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
