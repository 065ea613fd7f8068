"""Where DDIM-50's gap to ancestral sampling comes from on the 28 px Fashion-MNIST model: the sampler or the network.

    python -m benchmarks.ddim_gap --out gap.json    # about 55 minutes on 2 cores at n = 1000 (25 with --precision bf16)
    python -m benchmarks --ddim-gap gap.json --update --skip-speed --skip-digits --skip-quality --fashion-card

Every row starts from the same n noises as the fashion rows of `python -m benchmarks` (`quality.generate_many`),
network in fp32 as there (bf16 with --precision bf16). Against the Space's DDIM-50 (50 evenly spaced timesteps from
T - 1, x̂0 clipped to [-1, 1] and eps re-derived from the clipped x̂0, as improved-diffusion's DDIM does), each variant
changes one thing: quadratic timesteps (the DDIM paper's CIFAR-10 choice, denser near t = 0), no clipping, eta 0.5, a
second-order step over the same timesteps (DPM-Solver++ 2M, the Space's default), or all 1000 steps (no step-count
error left). diffusers' own `DDIMScheduler` as it ships (its "leading" timesteps 980 ... 0, x̂0 clipped but the
network's own eps kept) is what a diffusers user gets from this model; with `use_clipped_model_output=True` it
re-derives eps as ours does. Beside fashion-FD, what the pictures are: FD's mean term (where the features' average
lies), their variety (the features' total variance), how much of each picture is foreground, its detail (mean
|Laplacian|) and how far the class mix is from the test set's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import metrics, report
from benchmarks.harness import generate_many, weights_digest
from ddpm.hub import load_pipeline
from ddpm.sampling import network_precision, sample, sample_shape
from ddpm.scheduler import randn


def quadratic_timesteps(T: int, n: int) -> list[int]:
    """n timesteps from T - 1 to 0 spaced as i^2 (the DDIM paper's choice for CIFAR-10), descending; where two would
    round to the same step (near t = 0) the later one moves up to keep all n distinct."""
    squares = np.linspace(0.0, 1.0, n) ** 2 * (T - 1)
    return [max(int(round(x)), i) for i, x in enumerate(squares)][::-1]


@torch.inference_mode()
def ddim_over(m, x: torch.Tensor, timesteps: list[int], precision: str) -> torch.Tensor:
    """Our DDIM (eta 0, the scheduler's clipping) along the given timesteps."""
    for i, t in enumerate(timesteps):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        with network_precision(precision, x.device):
            eps = m.unet(x, torch.tensor(t)).sample.to(x.dtype)
        x = m.scheduler.ddim_step(eps, t, x, prev).prev_sample
    return x


@torch.inference_mode()
def diffusers_ddim(m, x: torch.Tensor, steps: int, precision: str, use_clipped_model_output: bool = False) -> torch.Tensor:
    """diffusers' `DDIMScheduler` built from this model's scheduler config, its defaults otherwise, eta 0;
    `use_clipped_model_output=True` (a `DDIMPipeline` argument) re-derives eps from the clipped x̂0, as ours does."""
    from diffusers import DDIMScheduler

    s = DDIMScheduler.from_config(dict(m.scheduler.config))
    s.set_timesteps(steps)
    for t in s.timesteps:
        with network_precision(precision, x.device):
            eps = m.unet(x, t).sample.to(x.dtype)
        x = s.step(eps, t, x, eta=0.0, use_clipped_model_output=use_clipped_model_output).prev_sample
    return x


def plan(m, precision: str) -> list[tuple[str, object]]:
    """(row, function of (batch, generator) -> x_0); every row draws its x_T first from the same generator."""
    T = m.scheduler.num_train_timesteps

    def library(clip_sample=True, **kw):
        return lambda b, g: sample(m.unet, m.scheduler, b, generator=g, precision=precision, clip_sample=clip_sample, **kw)

    def from_noise(fn):
        return lambda b, g: fn(randn(sample_shape(m.unet, b), g, torch.device("cpu"), torch.float32))

    return [
        ("ancestral", library(sampler="ddpm")),
        ("ddim-50", library(sampler="ddim", num_inference_steps=50)),
        ("ddim-1000", library(sampler="ddim", num_inference_steps=T)),
        ("ddim-50 quadratic timesteps", from_noise(lambda x: ddim_over(m, x, quadratic_timesteps(T, 50), precision))),
        ("ddim-50 unclipped", library(sampler="ddim", num_inference_steps=50, clip_sample=False)),
        ("ddim-50 eta 0.5", library(sampler="ddim", num_inference_steps=50, eta=0.5)),
        ("ddim-50 second order (DPM-Solver++ 2M)", library(sampler="dpm2m", num_inference_steps=50)),
        ("diffusers DDIMScheduler, 50 steps", from_noise(lambda x: diffusers_ddim(m, x, 50, precision))),
        (
            "diffusers DDIMScheduler, 50 steps, use_clipped_model_output",
            from_noise(lambda x: diffusers_ddim(m, x, 50, precision, use_clipped_model_output=True)),
        ),
    ]


def measure(model_dir: str, n: int, batch: int = 250, bootstrap: int = 200, precision: str = "fp32") -> dict:
    net, acc = metrics.fashion_classifier()
    x_test, _ = metrics.split_tensor("test")
    f_test = metrics.features(net, x_test)
    m = load_pipeline(model_dir)
    rows, boots = {}, {}
    for name, fn in plan(m, precision):
        t0 = time.perf_counter()
        x = generate_many(m, n, batch, draw=fn)
        f = metrics.features(net, x)
        boots[name] = metrics.bootstrap_fd(f, f_test, bootstrap)
        rows[name] = {
            "fd": metrics.frechet_distance(f, f_test),
            "fd_sd": float(boots[name].std()),
            "mean_term": metrics.mean_term(f, f_test),
            "spread": metrics.spread(f),
            "failures": metrics.failures(x),
            "classes": metrics.class_histogram(net, x),
            "seconds": time.perf_counter() - t0,
            **metrics.picture_stats(x),
        }
        print(f"  {name}: fashion-FD {rows[name]['fd']:.2f} ({rows[name]['seconds']:.0f} s)", flush=True)
    for name, r in rows.items():
        r["x_ddim50"] = [r["fd"] / rows["ddim-50"]["fd"], *metrics.ratio_interval(boots[name], boots["ddim-50"])]
    test = {"classes": metrics.class_histogram(net, x_test), "spread": metrics.spread(f_test), **metrics.picture_stats(x_test)}
    return {"model": model_dir, "weights": weights_digest(model_dir), "n": n, "precision": precision,
            "classifier_accuracy": acc, "test": test, "rows": rows}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="pretrained/ddpm-fashion")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--out", required=True, help="the JSON result, for `python -m benchmarks --ddim-gap`")
    a = p.parse_args()
    result = measure(a.model, a.n, precision=a.precision)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print("\n".join(report.ddim_gap_lines(result)))


if __name__ == "__main__":
    main()
