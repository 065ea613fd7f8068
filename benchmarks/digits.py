"""The digits model's quality: digits-FD (`benchmarks.metrics`) of ancestral sampling and of respaced DDPM and DDIM at
several step counts, against the real-data floor and the noise ceiling, and the variational bound on the held-out
digits (with its terms at every t). Measures and returns results; `benchmarks.report` writes them up.

Every score pools as many generated images as the train split has digits, so the floor (the whole train split) and
each row share one n: digits-FD is biased upward at small n (about 19 at n = 360 for the floor, 10 at 1437), and at a
few hundred images it moves by several points with the seed alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import metrics
from benchmarks.harness import generate_many, timed
from ddpm.data import Preprocess, digits_arrays
from ddpm.hub import load_pipeline
from ddpm.likelihood import bits_per_dim
from ddpm.visualize import grid

BOOTSTRAP = 200


class Scorer:
    """digits-FD against the held-out digits with one classifier; keeps each row's bootstrap for the ratios."""

    def __init__(self, net: metrics.FeatureNet, resolution: int, batch: int):
        self.net, self.batch = net, batch
        self.f_test = metrics.features(net, metrics.through_model_path("test", resolution)[0])
        self.boots: dict[str, np.ndarray] = {}

    def score(self, key: str, x_metric: torch.Tensor) -> tuple[float, float]:
        f = metrics.features(self.net, x_metric)
        self.boots[key] = metrics.bootstrap_fd(f, self.f_test, BOOTSTRAP)
        return metrics.frechet_distance(f, self.f_test), float(self.boots[key].std())

    def row(self, key: str, m, n: int, **kwargs) -> tuple[dict, torch.Tensor]:
        """n images from `m` (`sample` keywords), scored: digits-FD ± bootstrap sd, their classes, seconds."""
        seconds, x = timed(lambda: generate_many(m, n, self.batch, **kwargs))
        xm = metrics.to_metric(x)
        fd, sd = self.score(key, xm)
        print(f"  {key}: FD {fd:.2f} ± {sd:.2f}", flush=True)
        return {"fd": fd, "fd_sd": sd, "seconds": seconds, "cls": metrics.classify(self.net, xm)}, x


def floors(scorer: Scorer, resolution: int, n: int) -> dict:
    """The real-data floor (n train digits through the model's path), the same at the raw 8 px, and pure noise."""
    x_train, _ = metrics.through_model_path("train", resolution)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(len(x_train))[:n])  # all of them in a full run
    floor, floor_sd = scorer.score("floor", x_train[idx])
    net = scorer.net
    x_train_8, f_test_8 = (metrics.through_model_path(s, 8)[0] for s in ("train", "test"))
    raw_floor = metrics.frechet_distance(metrics.features(net, x_train_8[idx]), metrics.features(net, f_test_8))
    noise = torch.randn(n, 1, resolution, resolution, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    ceiling = metrics.frechet_distance(metrics.features(net, metrics.to_metric(noise)), scorer.f_test)
    return {"floor": floor, "floor_sd": floor_sd, "raw_floor_8px": raw_floor, "ceiling": ceiling}


def bound(model, x0: torch.Tensor, batch: int) -> dict:
    """The variational bound on `x0` in bits/dim: its total, L_T, sum of L_(t-1), L_0, and each L_(t-1) (means)."""
    terms = [
        bits_per_dim(model.unet, model.scheduler, x0[i : i + batch], generator=torch.Generator().manual_seed(i))
        for i in range(0, len(x0), batch)
    ]
    total, prior, dec = (torch.cat([getattr(b, k) for b in terms]).mean().item() for k in ("total", "prior", "decoder"))
    per_t = torch.cat([b.terms for b in terms]).mean(0).numpy()
    return {"bits_per_dim": total, "L_T": prior, "L_0": dec, "sum_L_t-1": total - prior - dec, "per_t": per_t.tolist()}


def held_out(resolution: int) -> torch.Tensor:
    """The held-out digits as the model's training data (not through the metric's resize): what the bound scores."""
    from PIL import Image

    images, _ = digits_arrays("test")
    return torch.stack([Preprocess(resolution, 1)(Image.fromarray(a, mode="L")) for a in images])


def bench_quality(model_dir: str, model_t200: str | None, n: int | None, batch: int, steps_list: list[int],
                  bpd_images: int, out_dir: Path) -> dict:  # fmt: skip
    """Every row on the same noises (same seeds), the floor at the same n; with `model_t200`, a model trained with
    the article's T = 200 beside it."""
    t0 = time.perf_counter()
    net, acc = metrics.digits_classifier()
    m = load_pipeline(model_dir)
    res, T = m.unet.config.sample_size, m.scheduler.num_train_timesteps
    n_train = len(digits_arrays("train")[0])
    n = min(n or n_train, n_train)
    scorer = Scorer(net, res, batch)
    out = {"classifier_accuracy": acc, **floors(scorer, res, n), "bootstrap": BOOTSTRAP, "n": n, "resolution": res}
    print(f"  classifier accuracy {acc:.3f}; floor {out['floor']:.2f} ± {out['floor_sd']:.2f} at n = {n}; "
          f"noise {out['ceiling']:.1f}")  # fmt: skip
    rows = {}
    rows["ddpm-full"], x = scorer.row("ddpm-full", m, n)
    rows["ddpm-full"]["steps"] = T
    grid(x[:64], nrow=8, scale=4).save(out_dir / "samples_bundled.png")
    for sampler in ("respaced", "ddim"):
        for steps in sorted({min(s, T) for s in steps_list}):
            row, _ = scorer.row(f"{sampler}-{steps}", m, n, sampler=sampler, num_inference_steps=steps)
            rows[f"{sampler}-{steps}"] = {"steps": steps, **row}
    if model_t200:
        m200 = load_pipeline(model_t200)
        row, _ = scorer.row("t200-ddpm-full", m200, n)
        rows["t200-ddpm-full"] = {"steps": m200.scheduler.num_train_timesteps, **row}
    x0 = held_out(res)[:bpd_images]
    likelihood = {"bundled": bound(m, x0, batch)}
    if model_t200:
        likelihood["t200"] = bound(load_pipeline(model_t200), x0, batch)
    print(f"  bits/dim bound: {likelihood['bundled']['bits_per_dim']:.3f} ({time.perf_counter() - t0:.0f} s for quality)")
    return {**out, "targets": targets(rows, scorer.boots, out["floor"]), "rows": rows, "likelihood": likelihood}


def targets(rows: dict, boots: dict, floor: float) -> dict:
    """Full-T ancestral over the floor, and DDIM-50 over full-T, each with the 90% interval of its bootstrap ratio."""
    full = rows["ddpm-full"]["fd"]
    out = {"full_x_floor": [full / floor, *metrics.ratio_interval(boots["ddpm-full"], boots["floor"])]}
    if "ddim-50" in rows:
        out["ddim50_x_full"] = [rows["ddim-50"]["fd"] / full, *metrics.ratio_interval(boots["ddim-50"], boots["ddpm-full"])]
    return out
