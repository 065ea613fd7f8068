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
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import fashion as fb
from benchmarks import quality as q
from benchmarks.failures import failures
from ddpm.hub import load_pipeline
from ddpm.sampling import network_precision, sample, sample_shape
from ddpm.scheduler import randn

FOREGROUND = -0.8  # a pixel brighter than 10% grey; Fashion-MNIST's background is exactly -1
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def weights_digest(model_dir: str) -> str:
    """sha256 of the model's UNet weights: which model a result measured, whatever its folder is called."""
    (weights,) = sorted(Path(model_dir, "unet").glob("diffusion_pytorch_model.*"))[:1]
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def picture_stats(x: torch.Tensor) -> dict:
    """Mean pixel, foreground share (pixels above 10% grey) and detail (mean |Laplacian|) of images in [-1, 1]."""
    x = x.clamp(-1, 1).float()
    return {
        "mean": float(x.mean()),
        "foreground": float((x > FOREGROUND).float().mean()),
        "detail": float(F.conv2d(x, LAPLACIAN).abs().mean()),
    }


def mean_term(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance's first term, |mu_a - mu_b|^2: how far apart the two feature averages lie."""
    return float(((a.mean(0) - b.mean(0)) ** 2).sum())


def spread(f: np.ndarray) -> float:
    """tr(S), the features' total variance: how varied a set of pictures is in the classifier's eyes."""
    return float(np.trace(np.cov(f, rowvar=False)))


def uniform_shrink(test_spread: float, spread: float) -> float:
    """FD's covariance term between a covariance S and c S, c = spread / test_spread: tr(S) (1 - sqrt(c))^2."""
    return test_spread * (1.0 - np.sqrt(spread / test_spread)) ** 2


def class_distance(hist: list[int], ref: list[int]) -> float:
    """Total variation distance between two class mixes: the share of images that would have to change class."""
    p, r = np.asarray(hist, float), np.asarray(ref, float)
    return float(0.5 * np.abs(p / p.sum() - r / r.sum()).sum())


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
    net, acc = fb.classifier()
    x_test, _ = fb.split_tensor("test")
    f_test = fb.features(net, x_test)
    m = load_pipeline(model_dir)
    rows, boots = {}, {}
    for name, fn in plan(m, precision):
        t0 = time.perf_counter()
        x = q.generate_many(m, n, batch, draw=fn)
        f = fb.features(net, x)
        boots[name] = q.bootstrap_fd(f, f_test, bootstrap)
        rows[name] = {
            "fd": q.frechet_distance(f, f_test),
            "fd_sd": float(boots[name].std()),
            "mean_term": mean_term(f, f_test),
            "spread": spread(f),
            "failures": failures(x),
            "classes": fb.class_histogram(net, x),
            "seconds": time.perf_counter() - t0,
            **picture_stats(x),
        }
        print(f"  {name}: fashion-FD {rows[name]['fd']:.2f} ({rows[name]['seconds']:.0f} s)", flush=True)
    for name, r in rows.items():
        r["x_ddim50"] = [r["fd"] / rows["ddim-50"]["fd"], *q.ratio_interval(boots[name], boots["ddim-50"])]
    test = {"classes": fb.class_histogram(net, x_test), "spread": spread(f_test), **picture_stats(x_test)}
    return {"model": model_dir, "weights": weights_digest(model_dir), "n": n, "precision": precision,
            "classifier_accuracy": acc, "test": test, "rows": rows}  # fmt: skip


def report(g: dict) -> list[str]:
    """RESULTS.md's lines for a `measure` result."""
    rows, test = g["rows"], g["test"]
    anc = rows["ancestral"]
    lines = [
        "### Where DDIM-50's gap comes from (`python -m benchmarks.ddim_gap`)",
        "",
        f"The same {g['n']} noises as above, network in {g['precision']}. Each DDIM variant changes one thing against "
        "the Space's DDIM-50; diffusers' `DDIMScheduler` as it ships (\"leading\" timesteps, clipped x̂0 but the "
        "network's own eps) is what a diffusers user gets. x DDIM-50: the ratio of fashion-FD, with its paired "
        "bootstrap 90% interval. Mean term: |mu - mu_test|^2 of the features, the part of FD that is where the "
        "pictures' average lies (the rest is the covariance term). Variety: the features' total variance tr(S), "
        "against the test images'. Foreground: pixels above 10% grey. Detail: mean |Laplacian|. Classes off: the "
        "share of images that would have to change class to match the test set's mix.",
        "",
        "| sampler | fashion-FD | x ancestral | x DDIM-50 | mean term | variety | foreground | detail | classes off | blown up |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| test images | | | | | 1.00 | {test['foreground']:.1%} | {test['detail']:.3f} | 0 | |",
    ]
    for name, r in rows.items():
        ratio, lo, hi = r["x_ddim50"]
        lines.append(
            f"| {name} | {r['fd']:.2f} ± {r['fd_sd']:.2f} | {r['fd'] / anc['fd']:.2f} | {ratio:.2f} ({lo:.2f}-{hi:.2f}) | "
            f"{r['mean_term']:.2f} | {r['spread'] / test['spread']:.2f} | {r['foreground']:.1%} | {r['detail']:.3f} | "
            f"{class_distance(r['classes'], test['classes']):.3f} | {r['failures']['any']} |"
        )
    if stale(g):
        lines[2:2] = [f"**Measured on earlier weights of `{g['model']}`**: rerun `python -m benchmarks.ddim_gap`.", ""]
    return [*lines, "", *diagnosis(g), ""]


def stale(g: dict) -> bool:
    """Whether the model folder a result names now holds other weights than the ones it measured."""
    return "weights" in g and Path(g["model"], "unet").is_dir() and weights_digest(g["model"]) != g["weights"]


def diagnosis(g: dict) -> list[str]:
    """What the table says, each claim with its numbers and only where the numbers make it."""
    rows, test = g["rows"], g["test"]
    anc, d50, d_all = rows["ancestral"], rows["ddim-50"], rows["ddim-1000"]
    variants = {k: r for k, r in rows.items() if k.startswith("ddim-50 ")}  # one change each against DDIM-50
    best = min(variants, key=lambda k: variants[k]["fd"])
    text = (
        f"The best single change to the sampler, {best}, scores {variants[best]['fd'] / anc['fd']:.2f}x ancestral "
        f"sampling; DDIM with every step taken scores {d_all['fd'] / anc['fd']:.2f}x."
    )
    if min(d_all["fd"], variants[best]["fd"]) > 1.2 * anc["fd"]:
        text += " No choice of steps, spacing or clipping reaches 1.2x: what remains is the network's deterministic path."
    gap = d_all["fd"] - anc["fd"]
    if gap > 0:
        in_mean = d_all["mean_term"] - anc["mean_term"]
        text += (
            f" Of DDIM-1000's excess over ancestral sampling ({gap:.2f}), {in_mean:.2f} is in the mean term and "
            f"{gap - in_mean:.2f} in the covariance term."
        )
        if d_all["spread"] < anc["spread"] and gap - in_mean > in_mean:
            shrink = uniform_shrink(test["spread"], d_all["spread"]) - uniform_shrink(test["spread"], anc["spread"])
            text += (
                f" Deterministic sampling gives a little less varied pictures: the features' total variance is "
                f"{d_all['spread'] / test['spread']:.2f} of the test images' with DDIM-1000 "
                f"({d50['spread'] / test['spread']:.2f} with DDIM-50), {anc['spread'] / test['spread']:.2f} with "
                f"ancestral sampling. Were that all (the test images' spread, shrunk evenly), it would cost "
                f"{shrink:.2f} of the {gap - in_mean:.2f}; the rest is in which ways the pictures vary."
            )
    off = {k: class_distance(r["classes"], test["classes"]) for k, r in rows.items()}
    drift = abs(d_all["foreground"] - test["foreground"]) - abs(anc["foreground"] - test["foreground"])
    if drift > 0.005 and off["ddim-1000"] > off["ancestral"]:
        size = "bigger" if d_all["foreground"] > test["foreground"] else "smaller"
        text += (
            f" Its pictures are also a little {size} (foreground {d50['foreground']:.1%} of the pixels at 50 steps, "
            f"{d_all['foreground']:.1%} at 1000, against {test['foreground']:.1%} in the test images and "
            f"{anc['foreground']:.1%} from ancestral sampling) and their class mix is further off "
            f"({off['ddim-50']:.3f} and {off['ddim-1000']:.3f} against ancestral's {off['ancestral']:.3f})."
        )
    if d_all["detail"] >= min(test["detail"], anc["detail"]):
        text += (
            f" Not a loss of detail: DDIM-1000's |Laplacian| is {d_all['detail']:.3f} against the test images' "
            f"{test['detail']:.3f} and ancestral's {anc['detail']:.3f}."
        )
    return [text]


def card_sentence(g: dict) -> str:
    """The model card's sentences on why DDIM-50 stays behind (empty when it does not)."""
    rows, test = g["rows"], g["test"]
    anc, d_all = rows["ancestral"], rows["ddim-1000"]
    variants = {k: r for k, r in rows.items() if k.startswith("ddim-50 ")}
    best = min(variants, key=lambda k: variants[k]["fd"])
    if min(d_all["fd"], variants[best]["fd"]) <= 1.2 * anc["fd"]:
        return ""
    text = (
        f" No change to the sampler closes the gap (benchmarks/ddim_gap.py, same noises: the best single change, "
        f"{best}, scores {variants[best]['fd'] / anc['fd']:.2f}x)."
    )
    shipped = rows.get("diffusers DDIMScheduler, 50 steps")
    rederived = rows.get("diffusers DDIMScheduler, 50 steps, use_clipped_model_output")
    if shipped and rederived:
        text += (
            f" diffusers' `DDIMScheduler` as it ships scores {shipped['fd'] / anc['fd']:.2f}x, "
            f"{rederived['fd'] / anc['fd']:.2f}x with `use_clipped_model_output=True` (the DDIM line under Use it)."
        )
    if d_all["spread"] < anc["spread"]:
        text += (
            f" Deterministic sampling from this network gives slightly less varied pictures (the classifier features' "
            f"total variance {d_all['spread'] / test['spread']:.2f} of the test images' with all 1000 DDIM steps, "
            f"{anc['spread'] / test['spread']:.2f} with ancestral sampling)."
        )
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="pretrained/ddpm-fashion")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--out", required=True, help="the JSON result, for `python -m benchmarks --ddim-gap`")
    a = p.parse_args()
    result = measure(a.model, a.n, precision=a.precision)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
