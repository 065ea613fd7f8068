"""Blown-up samples: how many of n starting noises each sampler the Space offers turns into a broken picture.

    python -m benchmarks.failures pretrained/ddpm-digits --n 1000
    python -m benchmarks.failures pretrained/ddpm-fashion --only respaced-50 dpm2m-50 --n 5000 --fashion-fd --out a.json
    python -m benchmarks.failures pretrained/ddpm-fashion --only respaced-50 --variance_type fixed_large ...
    python -m benchmarks.failures pretrained/ddpm-fashion --only respaced-100 --steps 100 ...
    python -m benchmarks.failures pretrained/ddpm-fashion --only "diffusers DDPMScheduler-50" --diffusers ...
    python -m benchmarks.failures --real --n 60000 --fashion-fd --out real.json   # the training images themselves
    python -m benchmarks --rare-failures a.json b.json c.json --update --skip-speed --skip-digits --skip-fashion

prints a markdown table: every sampler at the Space's default steps (or those --only names), with x̂0 clipped (the
Space's default) and as the article writes it (unclipped), the same n noises for each. A rare failure needs many
noises to count: with --fashion-fd each block of 1000 noises also gets its fashion-FD (the Fashion-MNIST model), so a
change that removes a broken picture is seen beside what it costs the rest. --variance_type swaps the reverse
process's sigma_t^2 (fixed_small: beta-tilde, what the models ship; fixed_large: beta). --diffusers adds a row drawn
by diffusers' own DDPMScheduler at --steps (what `DDPMPipeline(num_inference_steps=50)` gives a diffusers user).
--real counts and scores Fashion-MNIST training images the same way instead: the rule's count on real pictures, and how
far one block's fashion-FD moves with the real pictures alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

from benchmarks import metrics, report
from benchmarks.harness import REAL_ROW, generate_many, space_samplers
from ddpm.hub import load_pipeline
from ddpm.sampling import sample_shape
from ddpm.scheduler import VARIANCE_TYPES, DDPMScheduler, randn


@torch.inference_mode()
def diffusers_respaced(m, batch: int, generator: torch.Generator, steps: int = 50) -> torch.Tensor:
    """diffusers' own respaced DDPM on this model: its `DDPMScheduler` from the model's scheduler config (x̂0 clipped as
    that config says), `set_timesteps(steps)` ("leading": 980, 960, ..., 0 for 50), fp32; x_T and every step's noise
    drawn from `generator` as `DDPMPipeline` draws them, so x_T is the same as our samplers'."""
    from diffusers import DDPMScheduler as DiffusersDDPMScheduler

    s = DiffusersDDPMScheduler.from_config(dict(m.scheduler.config))
    s.set_timesteps(steps)
    x = randn(sample_shape(m.unet, batch), generator, torch.device("cpu"), torch.float32)
    for t in s.timesteps:
        x = s.step(m.unet(x, t).sample, t, x, generator=generator).prev_sample
    return x


def plan(precision: str, unclipped_ancestral: bool = True, only: list[str] | None = None, steps: int = 50,
         diffusers: bool = False) -> list:  # fmt: skip
    """The rows to count: every sampler clipped, then unclipped (the longest row last unless asked for), or `only`;
    `diffusers` adds diffusers' own respaced DDPM (`diffusers_respaced`)."""
    with_ancestral = unclipped_ancestral or bool(only)
    rows = space_samplers(True, precision, steps=steps) + space_samplers(False, precision, with_ancestral, steps)
    if diffusers:
        rows.append((f"diffusers DDPMScheduler-{steps}", {"diffusers": True}))
    unknown = sorted(set(only or []) - {key for key, _ in rows})
    if unknown:
        raise SystemExit(f"--only: no sampler {', '.join(unknown)}; use any of: {', '.join(key for key, _ in rows)}")
    return [(key, kwargs) for key, kwargs in rows if not only or key in only]


def count(model_dir: str, n: int, batch: int, precision: str = "fp32", unclipped_ancestral: bool = True,
          only: list[str] | None = None, variance_type: str | None = None, fd_block: int = 0,
          steps: int = 50, diffusers: bool = False) -> dict:  # fmt: skip
    """Each row's failure counts on the same n noises, which noises broke, and (fd_block > 0) the fashion-FD of each
    block of fd_block noises."""
    m = load_pipeline(model_dir)
    if variance_type:
        m.scheduler = DDPMScheduler.from_config(m.scheduler.config, variance_type=variance_type)
    score = _fashion_fd() if fd_block else None
    out = {}
    for key, kwargs in plan(precision, unclipped_ancestral, only, steps, diffusers):
        if kwargs.pop("diffusers", False):
            kwargs = {"draw": functools.partial(diffusers_respaced, m, steps=steps)}
        t0 = time.perf_counter()
        x = generate_many(m, n, batch, **kwargs)
        out[key] = {**metrics.tally(x), "seconds": time.perf_counter() - t0}
        if score:
            out[key]["fashion_fd"] = [score(x[i : i + fd_block]) for i in range(0, n, fd_block)]
        print(f"  {key}: {out[key]}", flush=True)
    return out


def real_rows(n: int, fd_block: int = 1000) -> dict:
    """The same counts and block-by-block fashion-FD for n Fashion-MNIST training images, in the order the real-data
    floor draws them (the first block is the main table's floor): how often the rule flags a real picture, and how far
    fashion-FD moves between blocks of real pictures alone."""
    t0 = time.perf_counter()
    x_train, _ = metrics.split_tensor("train")
    x = x_train[metrics.floor_order(len(x_train))[:n]]
    row = metrics.tally(x)
    if fd_block:
        row["fashion_fd"] = [_fashion_fd()(x[i : i + fd_block]) for i in range(0, len(x) - fd_block + 1, fd_block)]
    return {REAL_ROW: {**row, "seconds": time.perf_counter() - t0}}


@functools.lru_cache(maxsize=1)
def _fashion_fd():
    """images -> their fashion-FD against the 10,000 test images."""
    net, _ = metrics.fashion_classifier()
    f_test = metrics.features(net, metrics.split_tensor("test")[0])
    return lambda x: metrics.frechet_distance(metrics.features(net, x), f_test)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", help="a saved model's folder (not needed with --real)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--no-unclipped-ancestral", action="store_true", help="skip the longest row")
    p.add_argument("--only", nargs="+", metavar="SAMPLER", help='these rows alone, e.g. "respaced-50" "ddim-50 unclipped"')
    p.add_argument("--variance_type", choices=VARIANCE_TYPES, help="the reverse variance (default: the model's own)")
    p.add_argument("--fashion-fd", action="store_true", help="fashion-FD of each block of 1000 noises")
    p.add_argument("--steps", type=int, default=50, help="the few-step samplers' steps (the Space's default: 50)")
    p.add_argument("--diffusers", action="store_true", help="also diffusers' own respaced DDPM (its DDPMScheduler)")
    p.add_argument("--real", action="store_true", help="count and score n Fashion-MNIST training images instead")
    p.add_argument("--out", default=None, help="also write the result as JSON (python -m benchmarks --rare-failures)")
    a = p.parse_args()
    if not a.model and not a.real:
        p.error("name a model's folder, or --real for the training images")
    with torch.no_grad():
        fd_block = 1000 if a.fashion_fd else 0
        rows = real_rows(a.n, fd_block) if a.real else count(
            a.model, a.n, a.batch, a.precision, not a.no_unclipped_ancestral, a.only, a.variance_type, fd_block, a.steps,
            a.diffusers,
        )  # fmt: skip
    source = "Fashion-MNIST training images" if a.real else a.model
    result = {"model": source, "n": a.n, "precision": a.precision, "variance_type": a.variance_type, "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    print("\n".join(report.failures_table(result, a.real)))


if __name__ == "__main__":
    main()
