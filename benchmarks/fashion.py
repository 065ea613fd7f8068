"""The 28 px Fashion-MNIST model: its quality ("fashion-FD") and what a visitor of the free tier waits for.

fashion-FD is a Fréchet distance in the 64-d penultimate features of a small CNN trained on Fashion-MNIST's 60,000
training images (Debian's dataset-fashion-mnist), between generated images and the 10,000 test images. Its weights
ship beside this file (`fashion_classifier.safetensors`), as FID ships Inception's: the same training on another
device gives another network (on an H100: test accuracy 0.8891 against 0.8910 on these CPUs), and scores of
different networks do not compare; with one fixed network, runs on any machine do. The real-data floor scores as many
training images through the same path. Speed: the network's achieved GFLOP/s per
path (fp32, bf16) against this machine's measured matmul peak, the sampler's cost beyond the network, and the
Space's own generate() from click to the finished GIF.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks import quality as q
from benchmarks.failures import BLOWN_ABS, failure_masks, failures, rare_card_sentence, rare_report, space_samplers
from ddpm import space
from ddpm.data import load_arrays
from ddpm.hub import load_pipeline
from ddpm.likelihood import bits_per_dim
from ddpm.models import flops_per_image_step
from ddpm.sampling import sample
from ddpm.visualize import grid

CLASSIFIER = Path(__file__).with_name("fashion_classifier.safetensors")


class FashionNet(nn.Module):
    """A small CNN on 28x28 Fashion-MNIST; `features` is its 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def split_tensor(split: str) -> tuple[torch.Tensor, np.ndarray]:
    """A Fashion-MNIST split in [-1, 1], [N, 1, 28, 28], as the model's training data (the same scaling)."""
    arrays = load_arrays("fashion_mnist", split)
    if arrays is None:
        raise SystemExit("Fashion-MNIST is not on this machine: apt-get install dataset-fashion-mnist")
    return torch.from_numpy(arrays.images).unsqueeze(1).float() / 127.5 - 1.0, arrays.labels


def classifier(path: Path = CLASSIFIER) -> tuple[FashionNet, float]:
    """fashion-FD's feature network and its test accuracy: the shipped weights (made by `train_classifier`, written by
    `python -m benchmarks.fashion --write-classifier`), or, where that file is missing, a network trained now."""
    if not path.is_file():
        print(f"  {path.name} is missing: training a classifier (its scores compare only within this run)", flush=True)
        return train_classifier()
    from safetensors.torch import load_file

    net = FashionNet()
    net.load_state_dict(load_file(path))
    return net.eval(), accuracy(net)


def accuracy(net: FashionNet) -> float:
    """The share of the 10,000 test images classified right."""
    xte, yte = split_tensor("test")
    with torch.no_grad():
        return float((torch.cat([net(xte[i : i + 1000]) for i in range(0, len(xte), 1000)]).argmax(1).numpy() == yte).mean())


def train_classifier(epochs: int = 3, seed: int = 0) -> tuple[FashionNet, float]:
    """Adam, batches of 128, light noise on the inputs: about a minute on 2 CPU cores, test accuracy about 0.89."""
    torch.manual_seed(seed)
    xtr, ytr = split_tensor("train")
    ytr_t = torch.from_numpy(ytr.astype(np.int64))
    net = FashionNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(net(xtr[idx] + 0.05 * torch.randn(xtr[idx].shape, generator=g)), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), accuracy(net)


def floor_order(n_train: int) -> torch.Tensor:
    """The order the real-data floor draws training images in: its first n are the floor of a score at n."""
    return torch.from_numpy(np.random.default_rng(0).permutation(n_train))


@torch.no_grad()
def features(net: FashionNet, x: torch.Tensor) -> np.ndarray:
    return torch.cat([net.features(x[i : i + 1000].clamp(-1, 1)) for i in range(0, len(x), 1000)]).double().numpy()


@torch.no_grad()
def class_histogram(net: FashionNet, x: torch.Tensor) -> list[int]:
    return np.bincount(net(x.clamp(-1, 1)).argmax(1).numpy(), minlength=10).tolist()


def score_rows(m, plan, net, f_test, n: int, batch: int, bootstrap: int, out_dir=None) -> tuple[dict, dict]:
    """Each sampler of `plan` on the same n starting noises: fashion-FD (± bootstrap sd), failures, time, classes."""
    rows, boots = {}, {}
    for key, kwargs in plan:
        t1 = time.perf_counter()
        x = q.generate_many(m, n, batch, **kwargs).cpu()  # drawn where the network is (a GPU too), scored here
        seconds = time.perf_counter() - t1
        f = features(net, x)
        boots[key] = q.bootstrap_fd(f, f_test, bootstrap)
        rows[key] = {
            "fd": q.frechet_distance(f, f_test),
            "fd_sd": float(boots[key].std()),
            "seconds": seconds,
            "steps": kwargs.get("num_inference_steps", m.scheduler.num_train_timesteps),
            "failures": failures(x),
            "classes": class_histogram(net, x),
        }
        fails = rows[key]["failures"]
        print(f"  {key}: fashion-FD {rows[key]['fd']:.2f} ± {rows[key]['fd_sd']:.2f}, blown up {fails['any']} of {n} "
              f"({seconds:.0f} s)", flush=True)  # fmt: skip
        if out_dir is not None and key == plan[0][0]:
            grid(x[:64], nrow=8, scale=3).save(out_dir / "samples_fashion.png")
        broken = torch.stack(failure_masks(x)).any(0)
        if out_dir is not None and broken.any():  # to look at: what the check counted
            grid(x[broken][:16].clamp(-1, 1), nrow=8, scale=3).save(out_dir / f"blown_{key.replace(' ', '_')}.png")
    return rows, boots


def bench_quality(model_dir: str, n: int, batch: int, bpd_images: int, out_dir, bootstrap: int = 200,
                  precision: str = "fp32", unclipped: bool = True, compare: str | None = None,
                  more_ddim_steps: tuple[int, ...] = (100, 200)) -> dict:  # fmt: skip
    """fashion-FD and blow-ups of every sampler the Space offers, clipped (its default) and as the article writes it
    (the unclipped ancestral row, the longest, only with `unclipped`), and DDIM at `more_ddim_steps` (what it takes
    to come near ancestral sampling); with `compare`, the few-step samplers of another model (e.g. the one it
    replaces) too."""
    t0 = time.perf_counter()
    net, acc = classifier()
    print(f"  fashion classifier: test accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    m = load_pipeline(model_dir)
    x_test, _ = split_tensor("test")
    x_train, _ = split_tensor("train")
    f_test = features(net, x_test)
    idx = floor_order(len(x_train))[:n]
    f_floor = features(net, x_train[idx])
    floor, floor_boot = q.frechet_distance(f_floor, f_test), q.bootstrap_fd(f_floor, f_test, bootstrap)
    print(f"  floor {floor:.2f} ± {floor_boot.std():.2f} at n = {n}", flush=True)
    more = [
        (f"ddim-{k}", {"sampler": "ddim", "num_inference_steps": k, "clip_sample": True, "precision": precision})
        for k in more_ddim_steps
    ]
    plan = space_samplers(True, precision) + more + space_samplers(False, precision, unclipped)
    rows, boots = score_rows(m, plan, net, f_test, n, batch, bootstrap, out_dir)
    full = rows["ancestral"]["fd"]
    targets = {
        "full_x_floor": [full / floor, *q.ratio_interval(boots["ancestral"], floor_boot)],
        "ddim50_x_full": [rows["ddim-50"]["fd"] / full, *q.ratio_interval(boots["ddim-50"], boots["ancestral"])],
        "dpm2m50_x_full": [rows["dpm2m-50"]["fd"] / full, *q.ratio_interval(boots["dpm2m-50"], boots["ancestral"])],
    }
    compared = None
    if compare:
        few = [
            (f"{k} (replaced model)", kw)
            for k, kw in space_samplers(True, precision, False) + space_samplers(False, precision, False)
        ]
        compared = {"model": compare, "rows": score_rows(load_pipeline(compare), few, net, f_test, n, batch, bootstrap)[0]}
    x0 = x_test[:bpd_images]
    terms = [
        bits_per_dim(m.unet, m.scheduler, x0[i : i + batch], generator=torch.Generator().manual_seed(i))
        for i in range(0, len(x0), batch)
    ]
    total, prior, dec = (torch.cat([getattr(b, k) for b in terms]).mean().item() for k in ("total", "prior", "decoder"))
    likelihood = {"images": bpd_images, "bits_per_dim": total, "L_T": prior, "L_0": dec, "sum_L_t-1": total - prior - dec}
    print(f"  bits/dim {total:.3f} on {bpd_images} test images ({time.perf_counter() - t0:.0f} s for this section)", flush=True)
    return {
        "classifier_accuracy": acc,
        "precision": precision,
        "n": n,
        "test_images_flagged": failures(x_test),
        "compared": compared,
        "floor": floor,
        "floor_sd": float(floor_boot.std()),
        "bootstrap": bootstrap,
        "rows": rows,
        "targets": targets,
        "likelihood": likelihood,
    }


def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 20, device: str | torch.device = "cpu") -> float:
    """The device's measured matmul GFLOP/s in `dtype` (the best of `repeats`; fp32 with TF32 off on a GPU)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a @ b
        sync()
        best = min(timed_once(lambda: (a @ b, sync())) for _ in range(repeats))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / best / 1e9


def timed_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.inference_mode()
def bench_speed(model_dir: str, repeats: int = 3) -> dict:
    """The 28 px model at batch 16: the network per path, the whole sampler, and the Space's generate()."""
    m = load_pipeline(model_dir)
    cfg = m.unet.config
    flops = 16 * flops_per_image_step(dict(cfg))
    x, t = torch.randn(16, cfg.in_channels, cfg.sample_size, cfg.sample_size), torch.tensor(500)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    out = {"batch": 16, "gflop_per_step": flops / 1e9, "peaks": peaks, "network": {}, "sampler": {}, "space": {}}
    for precision in ("fp32", "bf16"):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
        with ctx:
            for _ in range(5):
                m.unet(x, t)
            ms = 1000 * statistics.median(timed_once(lambda: m.unet(x, t)) for _ in range(50))
        out["network"][precision] = {"ms": ms, "gflops": flops / 1e6 / ms, "share_of_peak": flops / 1e6 / ms / peaks[precision]}
        total = statistics.median(
            timed_once(
                lambda p=precision: sample(m.unet, m.scheduler, 16, generator=torch.Generator().manual_seed(0), precision=p)
            )
            for _ in range(repeats)
        )
        out["sampler"][precision] = {"seconds": total, "beyond_network": 1 - ms * m.scheduler.num_train_timesteps / 1000 / total}
        print(
            f"  {precision}: network {ms:.1f} ms/step ({flops / 1e6 / ms:.0f} GFLOP/s, "
            f"{100 * flops / 1e6 / ms / peaks[precision]:.0f}% of {peaks[precision]:.0f}), sampler {total:.1f} s",
            flush=True,
        )
    for label, settings in [
        ("full-fp32", (0, 16, "ddpm", 1000, 0.0, False, "fp32")),
        ("full-bf16", (0, 16, "ddpm", 1000, 0.0, False, "bf16")),
        ("ddim50-fp32", (0, 16, "ddim", 50, 0.0, False, "fp32")),
        ("ddim50-bf16", (0, 16, "ddim", 50, 0.0, False, "bf16")),
        ("dpm2m50-fp32", (0, 16, "dpm2m", 50, 0.0, False, "fp32")),
        ("dpm2m50-bf16", (0, 16, "dpm2m", 50, 0.0, False, "bf16")),
    ]:
        s = space.check_settings(m, *settings)
        runs = []
        for _ in range(1 if label.startswith("full") else repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                first = None
                for _update in space.generate(m, s, tmp):
                    first = first or time.perf_counter() - t0
                runs.append((first, time.perf_counter() - t0))
        out["space"][label] = {
            "first_frame": statistics.median(r[0] for r in runs),
            "finished": statistics.median(r[1] for r in runs),
        }
        print(f"  space {label}: first frame {runs[-1][0]:.3f} s, GIF ready {runs[-1][1]:.1f} s", flush=True)
    x32 = sample(m.unet, m.scheduler, 16, sampler="ddim", num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    x16 = sample(
        m.unet,
        m.scheduler,
        16,
        sampler="ddim",
        num_inference_steps=50,
        generator=torch.Generator().manual_seed(0),
        precision="bf16",
    )
    d = ((x16 - x32) / 2).abs()  # on [0, 1] pixels
    out["bf16_vs_fp32"] = {"max_abs": float(d.max()), "mean_abs": float(d.mean())}
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def row_lines(rows: dict, n: int, floor: float, full: float) -> list[str]:
    lines = [
        f"| sampler | steps | blown up (of {n}) | fashion-FD | x floor | x ancestral | seconds | classes (T-shirt ... boot) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        fails = r["failures"]
        lines.append(
            f"| {k} | {r['steps']} | **{fails['any']}** ({fails['blown']} past ±{BLOWN_ABS}, {fails['flat']} flat) | "
            f"{r['fd']:.2f} ± {r['fd_sd']:.2f} | {r['fd'] / floor:.2f} | {r['fd'] / full:.2f} | {r['seconds']:.0f} | "
            f"{' '.join(map(str, r['classes']))} |"
        )
    return lines


OLD_NOTE = "one channel per GroupNorm group at the first level, 12,000 steps"  # results.json's before notes


def quality_lines(qual: dict) -> list[str]:
    tg, n, floor = qual["targets"], qual["n"], qual["floor"]
    full = qual["rows"]["ancestral"]["fd"]
    flagged = qual["test_images_flagged"]["any"]
    lines = [
        f"Quality of every sampler the Space offers, each at its default steps, clipped (the Space's default) and as "
        f"the article writes it (unclipped), all from the same {n} starting noises, network in {qual['precision']}. "
        f"**Blown up**: pre-clamp max |x| > {BLOWN_ABS}, or a flat picture (sd < 0.1, mean > 0.6 or nothing above "
        f"25% grey); the same check flags {flagged} of the 10,000 test images. fashion-FD of the {n} images against "
        f"the 10,000 test images (classifier test accuracy {qual['classifier_accuracy']:.3f}); ± is the sd over "
        f"{qual['bootstrap']} bootstrap resamples. Real-data floor ({n} training images, same path): "
        f"**{floor:.2f} ± {qual['floor_sd']:.2f}**.",
        "",
        *row_lines(qual["rows"], n, floor, full),
    ]
    clipped = [r["failures"]["any"] for k, r in qual["rows"].items() if "unclipped" not in k]
    x, lo, hi = tg["full_x_floor"]
    r50, lo50, hi50 = tg["ddim50_x_full"]
    lines += [
        "",
        f"Targets (bootstrap 90% interval in brackets): no clipped sampler blows up: {_met(max(clipped) == 0)} "
        f"({sum(clipped)} of {len(clipped) * n}); ancestral at most 1.6x the floor: {_met(x <= 1.6)} ({x:.2f}x, "
        f"{lo:.2f}-{hi:.2f}); DDIM-50 at most 1.2x ancestral: {_met(r50 <= 1.2)} ({r50:.2f}x, {lo50:.2f}-{hi50:.2f})"
        + (
            ". The Space's default sampler, DPM-Solver++ 2M with the same 50 network calls: {:.2f}x ancestral "
            "({:.2f}-{:.2f}).".format(*tg["dpm2m50_x_full"])
            if "dpm2m50_x_full" in tg
            else "."
        ),
        "",
    ]
    if qual.get("compared"):
        c = qual["compared"]
        lines += [
            f"The model this one replaced (`{c['model']}`: {c.get('note', OLD_NOTE)}), the same samplers and noises, "
            "floor and ancestral column from the table above:",
            "",
            *row_lines(c["rows"], n, floor, full),
            "",
        ]
    return lines


def report(f: dict) -> list[str]:
    lines = ["## The 28 px Fashion-MNIST model (the Space's default)", ""]
    sp = f.get("speed")
    if sp:
        lines += [
            "What a visitor of the free tier (2 vCPU) waits for, measured through the Space's own `generate()` (16 "
            "images, GIF and gallery included); goals: all 1000 steps at most 30 s, 50 steps (DDIM, DPM-Solver++ 2M) at "
            "most 2 s, first frame under 0.5 s.",
            "",
            "| path | first frame | finished | goal |",
            "|---|---|---|---|",
        ]
        goals = {"full": 30.0, "ddim50": 2.0, "dpm2m50": 2.0}
        for label, r in sp["space"].items():
            goal = goals[label.split("-")[0]]
            ok = r["finished"] <= goal and r["first_frame"] < 0.5
            lines.append(
                f"| {label} | {1000 * r['first_frame']:.0f} ms | **{r['finished']:.1f} s** | "
                f"{goal:g} s: {'met' if ok else 'not met'} |"
            )
        lines += [
            "",
            f"The network (batch 16, {sp['gflop_per_step']:.2f} GFLOP a step, counted by torch's FLOP counter):",
            "",
            "| precision | ms / step | GFLOP/s | share of the matmul peak | whole sampler, 1000 steps | beyond the network |",
            "|---|---|---|---|---|---|",
        ]
        for p, r in sp["network"].items():
            s = sp["sampler"][p]
            lines.append(
                f"| {p} | {r['ms']:.1f} | {r['gflops']:.0f} | {100 * r['share_of_peak']:.0f}% of {sp['peaks'][p]:.0f} | "
                f"{s['seconds']:.1f} s | {100 * s['beyond_network']:.0f}% |"
            )
        lines += [
            "",
            "The network alone is timed as a median of 50 calls at t = 500, the sampler as whole runs: their difference, "
            "the cost beyond the network, is within a few percent of zero either way (a negative share is that noise).",
        ]
        d = sp["bf16_vs_fp32"]
        lines += [
            "",
            f"bf16 against fp32 (DDIM-50, same seed, [0, 1] pixels): max |diff| {d['max_abs']:.3f}, mean "
            f"{d['mean_abs']:.4f}. fp32 stays selectable as the mode whose images equal diffusers'.",
            "",
        ]
    qual = f.get("quality")
    if qual:
        lines += quality_lines(qual)
        lk = qual["likelihood"]
        lines += [
            f"Bound on {lk['images']} test images: **{lk['bits_per_dim']:.3f} bits/dim** (L_T {lk['L_T']:.2e}, "
            f"sum L_(t-1) {lk['sum_L_t-1']:.3f}, L_0 {lk['L_0']:.3f}).",
            "",
            "![samples](samples_fashion.png)",
            "",
        ]
    if f.get("rare_failures"):
        lines += rare_report(f["rare_failures"])
    if f.get("ddim_gap"):
        from benchmarks import ddim_gap

        lines += ddim_gap.report(f["ddim_gap"])
    return lines


def more_ddim(rows: dict) -> list[int]:
    """The DDIM step counts measured beside DDIM-50 (clipped), in order."""
    return sorted(int(k.split("-")[1]) for k in rows if k.startswith("ddim-") and k[5:].isdigit() and k != "ddim-50")


def best_samplers(rows: dict) -> str:
    """Which samplers the card recommends for the best images: DPM-Solver++ 2M beside all T ancestral steps only where
    its 50 steps score within 1.2x of them."""
    full, steps = rows["ancestral"]["fd"], rows["ancestral"]["steps"]
    if "dpm2m-50" in rows and rows["dpm2m-50"]["fd"] <= 1.2 * full:
        return f"DPM-Solver++ 2M or all {steps} ancestral steps give the best images"
    return f"use all {steps} ancestral steps for the best images"


def deterministic_gap(rows: dict) -> str:
    """What DDIM with all T steps says about DDIM-50's gap to ancestral sampling: the share of it that remains with
    as many steps as ancestral sampling takes is deterministic (ODE) sampling, not the step count."""
    steps = rows["ancestral"]["steps"]
    if f"ddim-{steps}" not in rows:
        return ""
    full, few, all_t = rows["ancestral"]["fd"], rows["ddim-50"]["fd"], rows[f"ddim-{steps}"]
    share = (all_t["fd"] - full) / (few - full) if few > full else 0.0
    return (
        f" DDIM with all {steps} steps scores {all_t['fd'] / full:.2f}x ({all_t['fd']:.2f} ± {all_t['fd_sd']:.2f}): "
        f"{100 * share:.0f}% of DDIM-50's gap remains with every step taken, so "
        + ("deterministic sampling, not the step count, holds most of it." if share > 0.5 else "the step count holds most of it.")
    )


def gap_sentence(f: dict, model_dir: str | None) -> str:
    """`benchmarks.ddim_gap`'s sentence for the card of `model_dir`, when `f` holds its result for these weights."""
    from benchmarks import ddim_gap

    g = f.get("ddim_gap")
    if not g or model_dir is None or g.get("weights") != ddim_gap.weights_digest(model_dir):
        return ""
    return ddim_gap.card_sentence(g)


def card_quality(f: dict, model_dir: str | None = None) -> str:
    """The model card's Quality section from this section's results: blow-ups and fashion-FD per sampler, the bound,
    the Space's speed, and what remains to watch for, each with its number."""
    qual, sp = f["quality"], f.get("speed")
    n, floor = qual["n"], qual["floor"]
    rows = qual["rows"]
    full = rows["ancestral"]["fd"]
    lines = [
        f"Measured by `python -m benchmarks` (benchmarks/RESULTS.md) on {n} starting noises per sampler, network in "
        f"{qual['precision']}. **Blown up**: pre-clamp max |x| > {BLOWN_ABS} or a flat (uniform, all-white or "
        f"all-black) picture, a check that flags {qual['test_images_flagged']['any']} of the 10,000 test images. "
        f"fashion-FD: a Fréchet distance in the 64-d features of a small CNN trained on the 60,000 training images "
        f"(test accuracy {qual['classifier_accuracy']:.3f}), {n} generated images against the 10,000 test images, ± a "
        f"bootstrap sd; real-data floor ({n} training images): {floor:.2f} ± {qual['floor_sd']:.2f}.",
        "",
        f"| sampler (the Space's defaults) | steps | blown up (of {n}) | fashion-FD | x floor |",
        "|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['steps']} | {r['failures']['any']} | {r['fd']:.2f} ± {r['fd_sd']:.2f} | {r['fd'] / floor:.2f} |"
        )
    lk = qual["likelihood"]
    lines += [
        "",
        f"Clipping x̂0 to [-1, 1] at each step is the default in this model's scheduler config (diffusers' default too); "
        f"`clip_sample: false` samples as the article's Algorithm 2 is written. The variational bound on "
        f"{lk['images']} test images: {lk['bits_per_dim']:.3f} bits/dim (L_T {lk['L_T']:.1e}, "
        f"sum of L_(t-1) {lk['sum_L_t-1']:.3f}, L_0 {lk['L_0']:.3f}).",
    ]
    broken = [f"{k}: {r['failures']['any']} of {n}" for k, r in rows.items() if r["failures"]["any"]]
    lines += [
        "",
        (
            f"The Space's default sampler, DPM-Solver++ 2M, scores {rows['dpm2m-50']['fd'] / full:.2f}x ancestral "
            "sampling's fashion-FD with the same 50 network calls as DDIM-50. "
            if "dpm2m-50" in rows
            else ""
        )
        + f"Limitations, measured: the first-order few-step samplers' images are clothes but farther from the data than "
        f"ancestral sampling's (DDIM-50 {rows['ddim-50']['fd'] / full:.2f}x its fashion-FD"
        + "".join(f", DDIM-{k} {rows[f'ddim-{k}']['fd'] / full:.2f}x" for k in more_ddim(rows) if k != rows["ancestral"]["steps"])
        + f"); {best_samplers(rows)}."
        + deterministic_gap(rows)
        + gap_sentence(f, model_dir)
        + " Broken pictures: "
        + ("; ".join(broken) if broken else "none")
        + "."
        + (rare_card_sentence(f["rare_failures"]) if f.get("rare_failures") else ""),
    ]
    if sp:
        space = sp["space"]
        lines += [
            "",
            f"Speed on 2 CPU cores, 16 images through the Space: all 1000 steps {space['full-fp32']['finished']:.1f} s in "
            f"fp32, {space['full-bf16']['finished']:.1f} s in bf16; DDIM-50 {space['ddim50-fp32']['finished']:.1f} s / "
            f"{space['ddim50-bf16']['finished']:.1f} s"
            + (
                f"; DPM-Solver++ 2M-50 {space['dpm2m50-fp32']['finished']:.1f} s / {space['dpm2m50-bf16']['finished']:.1f} s."
                if "dpm2m50-fp32" in space
                else "."
            ),
        ]
    return "\n".join(lines)


def write_card_quality(model_dir: str, f: dict) -> None:
    """Replace the Quality section of the model's README.md (its card) with `card_quality`."""
    from pathlib import Path

    card = Path(model_dir) / "README.md"
    text = card.read_text()
    head, rest = text.split("## Quality\n", 1)
    tail = rest[rest.index("\n## ") :]
    card.write_text(f"{head}## Quality\n\n{card_quality(f, model_dir)}\n{tail}")


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="fashion-FD's feature network")
    p.add_argument("--write-classifier", action="store_true", help=f"train it and write {CLASSIFIER.name}")
    a = p.parse_args()
    if a.write_classifier:
        from safetensors.torch import save_file

        net, acc = train_classifier()
        save_file(net.state_dict(), CLASSIFIER)
        print(f"wrote {CLASSIFIER} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
