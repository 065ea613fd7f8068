"""The 28 px Fashion-MNIST model (the Space's default): its quality ("fashion-FD", see `benchmarks.metrics`) for every
sampler the Space offers, and what a visitor of the free tier waits for: the network's achieved GFLOP/s per path
(fp32, bf16) against this machine's measured matmul peak, the sampler's cost beyond the network, and the Space's own
generate() from click to the finished GIF. Measures and returns results; `benchmarks.report` writes them up.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from benchmarks import metrics
from benchmarks.harness import generate_many, matmul_peak, space_samplers, timed_once
from ddpm import space
from ddpm.hub import load_pipeline
from ddpm.likelihood import bits_per_dim
from ddpm.models import flops_per_image_step
from ddpm.sampling import sample
from ddpm.visualize import grid


def score_rows(m, plan, net, f_test, n: int, batch: int, bootstrap: int, out_dir=None) -> tuple[dict, dict]:
    """Each sampler of `plan` on the same n starting noises: fashion-FD (± bootstrap sd), failures, time, classes."""
    rows, boots = {}, {}
    for key, kwargs in plan:
        t1 = time.perf_counter()
        x = generate_many(m, n, batch, **kwargs).cpu()  # drawn where the network is (a GPU too), scored here
        seconds = time.perf_counter() - t1
        f = metrics.features(net, x)
        boots[key] = metrics.bootstrap_fd(f, f_test, bootstrap)
        rows[key] = {
            "fd": metrics.frechet_distance(f, f_test),
            "fd_sd": float(boots[key].std()),
            "seconds": seconds,
            "steps": kwargs.get("num_inference_steps", m.scheduler.num_train_timesteps),
            "failures": metrics.failures(x),
            "classes": metrics.class_histogram(net, x),
        }
        fails = rows[key]["failures"]
        print(f"  {key}: fashion-FD {rows[key]['fd']:.2f} ± {rows[key]['fd_sd']:.2f}, blown up {fails['any']} of {n} "
              f"({seconds:.0f} s)", flush=True)  # fmt: skip
        if out_dir is not None and key == plan[0][0]:
            grid(x[:64], nrow=8, scale=3).save(out_dir / "samples_fashion.png")
        broken = torch.stack(metrics.failure_masks(x)).any(0)
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
    net, acc = metrics.fashion_classifier()
    print(f"  fashion classifier: test accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    m = load_pipeline(model_dir)
    x_test, _ = metrics.split_tensor("test")
    x_train, _ = metrics.split_tensor("train")
    f_test = metrics.features(net, x_test)
    idx = metrics.floor_order(len(x_train))[:n]
    f_floor = metrics.features(net, x_train[idx])
    floor, floor_boot = metrics.frechet_distance(f_floor, f_test), metrics.bootstrap_fd(f_floor, f_test, bootstrap)
    print(f"  floor {floor:.2f} ± {floor_boot.std():.2f} at n = {n}", flush=True)
    more = [
        (f"ddim-{k}", {"sampler": "ddim", "num_inference_steps": k, "clip_sample": True, "precision": precision})
        for k in more_ddim_steps
    ]
    plan = space_samplers(True, precision) + more + space_samplers(False, precision, unclipped)
    rows, boots = score_rows(m, plan, net, f_test, n, batch, bootstrap, out_dir)
    full = rows["ancestral"]["fd"]
    targets = {
        "full_x_floor": [full / floor, *metrics.ratio_interval(boots["ancestral"], floor_boot)],
        "ddim50_x_full": [rows["ddim-50"]["fd"] / full, *metrics.ratio_interval(boots["ddim-50"], boots["ancestral"])],
        "dpm2m50_x_full": [rows["dpm2m-50"]["fd"] / full, *metrics.ratio_interval(boots["dpm2m-50"], boots["ancestral"])],
    }
    compared = None
    if compare:
        few = [
            (f"{k} (replaced model)", kw)
            for k, kw in space_samplers(True, precision, False) + space_samplers(False, precision, False)
        ]
        compared = {"model": compare, "rows": score_rows(load_pipeline(compare), few, net, f_test, n, batch, bootstrap)[0]}
    likelihood = bound(m, x_test[:bpd_images], batch)
    print(f"  bits/dim {likelihood['bits_per_dim']:.3f} on {bpd_images} test images ({time.perf_counter() - t0:.0f} s "
          "for this section)", flush=True)  # fmt: skip
    return {
        "classifier_accuracy": acc,
        "precision": precision,
        "n": n,
        "test_images_flagged": metrics.failures(x_test),
        "compared": compared,
        "floor": floor,
        "floor_sd": float(floor_boot.std()),
        "bootstrap": bootstrap,
        "rows": rows,
        "targets": targets,
        "likelihood": likelihood,
    }


def bound(m, x0: torch.Tensor, batch: int) -> dict:
    """The variational bound on images `x0`, in bits/dim, and its terms L_T, sum of L_(t-1), L_0 (their means)."""
    terms = [
        bits_per_dim(m.unet, m.scheduler, x0[i : i + batch], generator=torch.Generator().manual_seed(i))
        for i in range(0, len(x0), batch)
    ]
    total, prior, dec = (torch.cat([getattr(b, k) for b in terms]).mean().item() for k in ("total", "prior", "decoder"))
    return {"images": len(x0), "bits_per_dim": total, "L_T": prior, "L_0": dec, "sum_L_t-1": total - prior - dec}


SPACE_RUNS = {  # label: (seed, images, sampler, steps, eta, show x̂0, precision), as a visitor sets them
    "full-fp32": (0, 16, "ddpm", 1000, 0.0, False, "fp32"),
    "full-bf16": (0, 16, "ddpm", 1000, 0.0, False, "bf16"),
    "ddim50-fp32": (0, 16, "ddim", 50, 0.0, False, "fp32"),
    "ddim50-bf16": (0, 16, "ddim", 50, 0.0, False, "bf16"),
    "dpm2m50-fp32": (0, 16, "dpm2m", 50, 0.0, False, "fp32"),
    "dpm2m50-bf16": (0, 16, "dpm2m", 50, 0.0, False, "bf16"),
}


@torch.inference_mode()
def bench_speed(model_dir: str, repeats: int = 3) -> dict:
    """The 28 px model at batch 16: the network per path, the whole sampler, and the Space's generate()."""
    m = load_pipeline(model_dir)
    flops = 16 * flops_per_image_step(dict(m.unet.config))
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    out = {"batch": 16, "gflop_per_step": flops / 1e9, "peaks": peaks, "network": {}, "sampler": {}}
    for precision in ("fp32", "bf16"):
        out["network"][precision], out["sampler"][precision] = network_and_sampler(m, precision, flops, repeats)
        ms, total = out["network"][precision]["ms"], out["sampler"][precision]["seconds"]
        print(f"  {precision}: network {ms:.1f} ms/step ({flops / 1e6 / ms:.0f} GFLOP/s, "
              f"{100 * flops / 1e6 / ms / peaks[precision]:.0f}% of {peaks[precision]:.0f}), sampler {total:.1f} s",
              flush=True)  # fmt: skip
        out["network"][precision]["share_of_peak"] = flops / 1e6 / ms / peaks[precision]
    out["space"] = {label: space_run(m, settings, 1 if label.startswith("full") else repeats)
                    for label, settings in SPACE_RUNS.items()}  # fmt: skip
    out["bf16_vs_fp32"] = bf16_difference(m)
    return out


def network_and_sampler(m, precision: str, flops: float, repeats: int) -> tuple[dict, dict]:
    """The network at batch 16 (the median of 50 calls at t = 500) and the whole 1000-step sampler in `precision`."""
    cfg = m.unet.config
    x, t = torch.randn(16, cfg.in_channels, cfg.sample_size, cfg.sample_size), torch.tensor(500)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    with ctx:
        for _ in range(5):
            m.unet(x, t)
        ms = 1000 * statistics.median(timed_once(lambda: m.unet(x, t)) for _ in range(50))
    total = statistics.median(
        timed_once(lambda: sample(m.unet, m.scheduler, 16, generator=torch.Generator().manual_seed(0), precision=precision))
        for _ in range(repeats)
    )
    beyond = 1 - ms * m.scheduler.num_train_timesteps / 1000 / total
    return {"ms": ms, "gflops": flops / 1e6 / ms}, {"seconds": total, "beyond_network": beyond}


def space_run(m, settings: tuple, repeats: int) -> dict:
    """The Space's own generate() with a visitor's settings: seconds to its first frame and to the finished GIF."""
    s = space.check_settings(m, *settings)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            first = None
            for _update in space.generate(m, s, tmp):
                first = first or time.perf_counter() - t0
            runs.append((first, time.perf_counter() - t0))
    print(f"  space {s.sampler}-{s.num_steps} {s.precision}: first frame {runs[-1][0]:.3f} s, GIF ready "
          f"{runs[-1][1]:.1f} s", flush=True)  # fmt: skip
    return {"first_frame": statistics.median(r[0] for r in runs), "finished": statistics.median(r[1] for r in runs)}


def bf16_difference(m) -> dict:
    """DDIM-50 from the same seed in bf16 against fp32: max and mean |difference| on [0, 1] pixels."""
    kwargs = {"sampler": "ddim", "num_inference_steps": 50}
    x32 = sample(m.unet, m.scheduler, 16, generator=torch.Generator().manual_seed(0), **kwargs)
    x16 = sample(m.unet, m.scheduler, 16, generator=torch.Generator().manual_seed(0), precision="bf16", **kwargs)
    d = ((x16 - x32) / 2).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}
