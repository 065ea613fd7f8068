"""Blown-up samples: how many of n starting noises each sampler the Space offers turns into a broken picture.

    python -m benchmarks.failures pretrained/ddpm-digits --n 1000

prints a markdown table: every sampler at the Space's default steps, with x̂0 clipped (the Space's default) and as
the article writes it (unclipped), the same n noises for each.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks import quality as q
from ddpm.hub import load_pipeline

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


def space_samplers(clip: bool, precision: str, ancestral: bool = True) -> list[tuple[str, dict]]:
    """What the Space offers, each at its default steps (ancestral all T, unless `ancestral` is False: the longest
    row; respaced, DDIM and DPM-Solver++ 2M 50)."""
    suffix = "" if clip else " unclipped"
    common = {"clip_sample": clip, "precision": precision}
    rows = [
        (f"ancestral{suffix}", {"sampler": "ddpm", **common}),
        (f"respaced-50{suffix}", {"sampler": "respaced", "num_inference_steps": 50, **common}),
        (f"ddim-50{suffix}", {"sampler": "ddim", "num_inference_steps": 50, "eta": 0.0, **common}),
        (f"ddim-50 eta 1{suffix}", {"sampler": "ddim", "num_inference_steps": 50, "eta": 1.0, **common}),
        (f"dpm2m-50{suffix}", {"sampler": "dpm2m", "num_inference_steps": 50, **common}),
    ]
    return rows if ancestral else rows[1:]


def count(model_dir: str, n: int, batch: int, precision: str = "fp32", unclipped_ancestral: bool = True) -> dict:
    m = load_pipeline(model_dir)
    out = {}
    for key, kwargs in space_samplers(True, precision) + space_samplers(False, precision, unclipped_ancestral):
        t0 = time.perf_counter()
        x = q.generate_many(m, n, batch, **kwargs)
        out[key] = {**failures(x), "seconds": time.perf_counter() - t0, "max_abs": float(x.abs().max())}
        print(f"  {key}: {out[key]}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--no-unclipped-ancestral", action="store_true", help="skip the longest row")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    rows = count(a.model, a.n, a.batch, a.precision, not a.no_unclipped_ancestral)
    print(f"\n| sampler | blown up (of {a.n}) | past ±{BLOWN_ABS} | flat | max |x| | seconds |\n|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | **{r['any']}** | {r['blown']} | {r['flat']} | {r['max_abs']:.3g} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
