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

import numpy as np
import torch

from benchmarks import quality as q
from ddpm.hub import load_pipeline
from ddpm.sampling import sample_shape
from ddpm.scheduler import VARIANCE_TYPES, DDPMScheduler, randn

# A sample "blows up" when its values leave the data's range by far before the final clamp, or when it is a flat
# picture: nearly uniform (sd < 0.1 in [-1, 1]; the flattest of the 10,000 test images has 0.14), mostly white (mean
# > 0.6; the brightest test image has 0.42) or all black (no pixel above -0.5, i.e. 25% grey). No test image is
# flagged (`failures` on the test split is reported beside the rows).
BLOWN_ABS = 1.5


def failure_masks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: blown (pre-clamp max |x| > 1.5) and flat (uniform, white or black picture after the clamp)."""
    flat_x = x.clamp(-1, 1).flatten(1)
    blown = x.flatten(1).abs().amax(1) > BLOWN_ABS
    flat = (flat_x.std(1) < 0.1) | (flat_x.mean(1) > 0.6) | (flat_x.amax(1) < -0.5)
    return blown, flat


def failures(x: torch.Tensor) -> dict:
    """Per-set counts of blown-up samples: `blown`, `flat` and `any` (either); see `failure_masks`."""
    blown, flat = failure_masks(x)
    return {"blown": int(blown.sum()), "flat": int(flat.sum()), "any": int((blown | flat).sum())}


def tally(x: torch.Tensor) -> dict:
    """A many-noise row's columns: `failures`, the largest |value| before the clamp, and which images broke."""
    broken = torch.stack(failure_masks(x)).any(0).nonzero().flatten().tolist()
    return {**failures(x), "max_abs": float(x.abs().max()), "noises": broken}


def space_samplers(clip: bool, precision: str, ancestral: bool = True, steps: int = 50) -> list[tuple[str, dict]]:
    """What the Space offers, each at its default steps (ancestral all T, unless `ancestral` is False: the longest
    row; respaced, DDIM and DPM-Solver++ 2M 50, or `steps`)."""
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
        x = q.generate_many(m, n, batch, **kwargs)
        out[key] = {**tally(x), "seconds": time.perf_counter() - t0}
        if score:
            out[key]["fashion_fd"] = [score(x[i : i + fd_block]) for i in range(0, n, fd_block)]
        print(f"  {key}: {out[key]}", flush=True)
    return out


REAL = "training images (the floor)"


def real_rows(n: int, fd_block: int = 1000) -> dict:
    """The same counts and block-by-block fashion-FD for n Fashion-MNIST training images, in the order the real-data
    floor draws them (the first block is the main table's floor): how often the rule flags a real picture, and how far
    fashion-FD moves between blocks of real pictures alone."""
    from benchmarks import fashion

    t0 = time.perf_counter()
    x_train, _ = fashion.split_tensor("train")
    x = x_train[fashion.floor_order(len(x_train))[:n]]
    row = tally(x)
    if fd_block:
        row["fashion_fd"] = [_fashion_fd()(x[i : i + fd_block]) for i in range(0, len(x) - fd_block + 1, fd_block)]
    return {REAL: {**row, "seconds": time.perf_counter() - t0}}


@functools.lru_cache(maxsize=1)
def _fashion_fd():
    """images -> their fashion-FD against the 10,000 test images (benchmarks.fashion's classifier and features)."""
    from benchmarks import fashion

    net, _ = fashion.classifier()
    f_test = fashion.features(net, fashion.split_tensor("test")[0])
    return lambda x: q.frechet_distance(fashion.features(net, x), f_test)


VARIANCE_NAMES = {None: "β̃ (the model's)", "fixed_small": "β̃ (the model's)", "fixed_large": "β"}


def _rows(results: list[dict]):
    """(sampler, reverse variance, row, n) over every row of `benchmarks.failures --out` results, in order."""
    for res in results:
        for key, r in res["rows"].items():
            yield key, "-" if key == REAL else VARIANCE_NAMES[res.get("variance_type")], r, res["n"]


def _fd_cell(fds: list[float]) -> str:
    return f"{np.mean(fds):.2f} ± {np.std(fds, ddof=1):.2f}" if len(fds) > 1 else (f"{fds[0]:.2f}" if fds else "-")


def x_ancestral(results: list[dict], fds: list[float]) -> tuple[float, float, float, int] | None:
    """A row's fashion-FD over ancestral sampling's, block by block on the same noises (where `results` hold an
    ancestral row with β̃): the mean ratio, its smallest and largest, and how many blocks."""
    anc = next((r.get("fashion_fd") for k, v, r, _ in _rows(results) if k == "ancestral" and v.startswith("β̃")), None)
    k = min(len(anc or []), len(fds))
    if not k:
        return None
    ratios = [fds[i] / anc[i] for i in range(k)]
    return float(np.mean(ratios)), min(ratios), max(ratios), k


def rare_report(results: list[dict]) -> list[str]:
    """RESULTS.md's section for `benchmarks.failures --out` results: each row's broken pictures over many noises, which
    noises they were, and what the rest scores (fashion-FD of each block of 1000 noises)."""
    lines = [
        "### A rare broken picture, counted over many noises (`python -m benchmarks.failures --fashion-fd`)",
        "",
        "Each row draws its noises as the table above does (its first 1000 are that table's), x̂0 clipped, network in "
        "fp32; reverse variance: the σ_t² of each stochastic step, β̃ (the posterior's, what the model ships) or β. "
        "fashion-FD: each block of 1000 noises against the 10,000 test images, the blocks' mean ± sd, and the first "
        "block alone; x ancestral: the ratio to ancestral sampling's fashion-FD on the same block, the mean over the "
        "blocks both rows drew (their range in brackets).",
        "",
        "| sampler | reverse variance | broken | which noises | fashion-FD, blocks of 1000 | first block | x ancestral |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, variance, r, n in _rows(results):
        fds = r.get("fashion_fd", [])
        noises = ", ".join(map(str, r["noises"][:10])) + (" ..." if len(r["noises"]) > 10 else "") or "-"
        first = f"{fds[0]:.2f}" if fds else "-"
        x = x_ancestral(results, fds) if key not in ("ancestral", REAL) else None
        ratio = f"{x[0]:.2f} ({x[1]:.2f}-{x[2]:.2f}, {x[3]} block{'s' * (x[3] > 1)})" if x else "-"
        lines.append(f"| {key} | {variance} | **{r['any']}** of {n} | {noises} | {_fd_cell(fds)} | {first} | {ratio} |")
    return lines + [""] + floor_lines(results)


def floor_lines(results: list[dict]) -> list[str]:
    """What the training images' row says of every score above: how far fashion-FD moves between blocks of real
    pictures, and ancestral sampling's blocks over theirs."""
    rows = {key: r.get("fashion_fd", []) for key, v, r, _ in _rows(results) if key == REAL or v.startswith("β̃")}
    real, anc = rows.get(REAL), rows.get("ancestral")
    if not real:
        return []
    line = (
        f"Real pictures alone: {len(real)} blocks of 1000 training images score {np.mean(real):.2f} ± "
        f"{np.std(real, ddof=1):.2f} against the test images ({min(real):.2f} to {max(real):.2f}; the main table's "
        f"floor is the first, {real[0]:.2f}): one block's fashion-FD moves by about ±{np.std(real, ddof=1):.1f} with "
        "which pictures it holds alone, so samplers compare finely only on the same noises, as the ratios here do."
    )
    if anc:
        line += (
            f" Ancestral sampling's {len(anc)} blocks average {np.mean(anc):.2f}, **{np.mean(anc) / np.mean(real):.2f}x** "
            f"the real blocks' mean ({anc[0] / real[0]:.2f}x on the first block of each, the main table's ratio)."
        )
    return [line, ""]


def rare_card_sentence(results: list[dict]) -> str:
    """The model card's one sentence on the same rows."""
    parts = []
    for key, variance, r, n in _rows(results):
        fds = r.get("fashion_fd", [])
        variance_note = "" if variance.startswith("β̃") or key == REAL else f" with σ_t² = {variance}"
        x = x_ancestral(results, fds) if key not in ("ancestral", REAL) else None
        fd = f" (fashion-FD {np.mean(fds):.1f}" + (f", {x[0]:.2f}x ancestral" if x else "") + ")" if fds else ""
        parts.append(f"{key}{variance_note} {r['any']} of {n}{fd}")
    head = " Broken pictures over more noises (`benchmarks.failures`; fashion-FD: the mean over blocks of 1000 noises): "
    return head + "; ".join(parts) + "." if parts else ""


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
    if a.out:
        result = {"model": source, "n": a.n, "precision": a.precision, "variance_type": a.variance_type, "rows": rows}
        Path(a.out).write_text(json.dumps(result, indent=1))
    variance = f", reverse variance {a.variance_type}" if a.variance_type else ""
    print(f"\n{source}, {a.n} {'images' if a.real else 'noises'}{variance}\n")
    print(f"| sampler | blown up (of {a.n}) | past ±{BLOWN_ABS} | flat | which noises | max |x| | fashion-FD by 1000 | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        fds = " / ".join(f"{fd:.2f}" for fd in r.get("fashion_fd", []))
        noises = ", ".join(map(str, r["noises"][:10])) + (" ..." if len(r["noises"]) > 10 else "")
        print(f"| {k} | **{r['any']}** | {r['blown']} | {r['flat']} | {noises} | {r['max_abs']:.3g} | {fds} | "
              f"{r['seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
