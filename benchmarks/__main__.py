"""`python -m benchmarks`: speed against diffusers' own code and sample quality of the bundled model.

Writes benchmarks/RESULTS.md and its plots. Speed is reported as ratios of runs interleaved in this one process on
this one machine (the median of per-pair ratios, with their range); no number here is asserted by the test suite.

    python -m benchmarks                      # everything (about 2 hours on 2 CPU cores)
    python -m benchmarks --skip-speed         # quality only
    python -m benchmarks --model-t200 DIR     # also score a model trained with the article's T = 200
    python -m benchmarks --skip-digits --update --fashion-card  # the 28 px Fashion-MNIST section alone, its measured
                                                                # quality written into the model's card
    python -m benchmarks.failures MODEL       # blown-up samples of any model, every sampler the Space offers;
                                              # --out F, then --rare-failures F reports it (many noises, --only some)
    python -m benchmarks.ddim_gap --out F     # where DDIM-50's gap to ancestral comes from; --ddim-gap F reports it

--skip-speed skips the speed sections, --skip-quality the quality sections (digits and 28 px each); --skip-digits both
digits sections; --skip-fashion both 28 px sections. The 28 px quality at n = 1000 takes about 50 minutes on 2 cores
(two full-T rows of 1000 images; --fashion-no-unclipped-ancestral leaves one out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.served import network_alone
from ddpm import space
from ddpm.hub import load_pipeline
from ddpm.likelihood import bits_per_dim
from ddpm.sampling import sample
from ddpm.visualize import grid

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def fresh_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so the next `Accelerator` may use another mixed precision.

    `AcceleratorState` is a singleton that refuses a second precision in one process; the fp32 and bf16 runs of
    both loops are measured in this one process, so each starts from a clean state (as accelerate's own tests do).
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def paired(numerator: list[float], denominator: list[float]) -> dict:
    """Median and range of the per-run ratios numerator[i] / denominator[i] of interleaved runs.

    On a shared host the machine's speed drifts between runs by more than the loops differ; the ratio within each
    pair of neighbouring runs cancels that drift, where a ratio of two medians (taken from different runs) does not.
    """
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------------- speed
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
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        first, total = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            ancestral, fp32 = (
                "DDPM ancestral, all T steps (Algorithm 2)",
                "fp32: full precision (ancestral: diffusers' exact images)",
            )
            job = client.submit(r, 16, ancestral, 50, 0.0, False, fp32, api_name="/generate")
            t_first = None
            while not job.done():
                if t_first is None and job.outputs():
                    t_first = time.perf_counter() - t0
                time.sleep(0.005)
            job.result()
            total.append(time.perf_counter() - t0)
            first.append(t_first if t_first is not None else total[-1])
            print(f"  app run {r + 1}/{repeats}: first frame {first[-1]:.2f} s, GIF ready {total[-1]:.2f} s")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"first_frame": statistics.median(first), "finished": statistics.median(total), "peak_rss_mb": peak_kb / 1024}


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
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the repository, then the caller's
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-c", script, str(ROOT / "train_accelerate.py"), "--output_dir", tmp, *args],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}, cwd=ROOT,
        )  # fmt: skip
    peak = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    if r.returncode != 0 or not peak:
        raise RuntimeError(f"the training run failed: {r.stderr[-2000:]}")
    return int(peak[-1]) / 1024


# ---------------------------------------------------------------------- quality
# Every score pools as many generated images as the train split has digits, so the floor (the whole train split)
# and each row share one n: digits-FD is biased upward at small n (about 19 at n = 360 for the floor, 10 at 1437),
# and at a few hundred images it moves by several points with the seed alone.
BOOTSTRAP = 200


def bench_quality(
    model_dir: str, model_t200: str | None, n: int | None, batch: int, steps_list: list[int], bpd_images: int, out_dir: Path
) -> dict:
    from benchmarks import quality as q

    t0 = time.perf_counter()
    net, acc = q.train_classifier()
    m = load_pipeline(model_dir)
    res = m.unet.config.sample_size
    x_test, _ = q.through_model_path("test", res)
    x_train, _ = q.through_model_path("train", res)
    n = min(n or len(x_train), len(x_train))
    f_test = q.features(net, x_test)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(len(x_train))[:n])  # all of them in a full run
    f_floor = q.features(net, x_train[idx])
    floor, floor_boot = q.frechet_distance(f_floor, f_test), q.bootstrap_fd(f_floor, f_test, BOOTSTRAP)
    x_train_8, f_test_8 = q.through_model_path("train", 8)[0], q.features(net, q.through_model_path("test", 8)[0])
    raw_floor = q.frechet_distance(q.features(net, x_train_8[idx]), f_test_8)
    noise = torch.randn(n, 1, res, res, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    ceiling = q.frechet_distance(q.features(net, q.to_metric(noise)), f_test)
    print(f"  classifier accuracy {acc:.3f}; floor {floor:.2f} ± {floor_boot.std():.2f} at n = {n}; noise {ceiling:.1f}")
    boots = {}

    def evaluate(key: str, model, **kwargs) -> tuple[dict, torch.Tensor]:
        """digits-FD of n generated images with its bootstrap sd, their classes, and the seconds they took."""
        seconds, x = timed(lambda: q.generate_many(model, n, batch, **kwargs))
        xm = q.to_metric(x)
        f = q.features(net, xm)
        boots[key] = q.bootstrap_fd(f, f_test, BOOTSTRAP)
        cls = q.classify(net, xm)
        return {"fd": q.frechet_distance(f, f_test), "fd_sd": float(boots[key].std()), "seconds": seconds, "cls": cls}, x

    rows = {}
    T = m.scheduler.num_train_timesteps
    rows["ddpm-full"], x = evaluate("ddpm-full", m)
    rows["ddpm-full"]["steps"] = T
    print(f"  ancestral {T} steps: FD {rows['ddpm-full']['fd']:.2f} ± {rows['ddpm-full']['fd_sd']:.2f}")
    grid_path = out_dir / "samples_bundled.png"
    grid(x[:64], nrow=8, scale=4).save(grid_path)
    for sampler in ("respaced", "ddim"):
        for steps in sorted({min(s, T) for s in steps_list}):
            key = f"{sampler}-{steps}"
            row, _ = evaluate(key, m, sampler=sampler, num_inference_steps=steps)
            rows[key] = {"steps": steps, **row}
            print(f"  {sampler} {steps} steps: FD {row['fd']:.2f} ± {row['fd_sd']:.2f}")
    if model_t200:
        m200 = load_pipeline(model_t200)
        row, _ = evaluate("t200-ddpm-full", m200)
        rows["t200-ddpm-full"] = {"steps": m200.scheduler.num_train_timesteps, **row}
        print(f"  T=200 model, ancestral: FD {row['fd']:.2f} ± {row['fd_sd']:.2f}")
    full = rows["ddpm-full"]["fd"]
    targets = {"full_x_floor": [full / floor, *q.ratio_interval(boots["ddpm-full"], floor_boot)]}
    if "ddim-50" in rows:
        targets["ddim50_x_full"] = [rows["ddim-50"]["fd"] / full, *q.ratio_interval(boots["ddim-50"], boots["ddpm-full"])]

    def bpd(model):
        x0 = x_test_model[:bpd_images]
        terms = [
            bits_per_dim(model.unet, model.scheduler, x0[i : i + batch], generator=torch.Generator().manual_seed(i))
            for i in range(0, len(x0), batch)
        ]
        total = torch.cat([b.total for b in terms]).mean().item()
        prior = torch.cat([b.prior for b in terms]).mean().item()
        dec = torch.cat([b.decoder for b in terms]).mean().item()
        per_t = torch.cat([b.terms for b in terms]).mean(0).numpy()
        return {"bits_per_dim": total, "L_T": prior, "L_0": dec, "sum_L_t-1": total - prior - dec, "per_t": per_t.tolist()}

    from PIL import Image

    from ddpm.data import Preprocess, digits_arrays

    images, _ = digits_arrays("test")
    x_test_model = torch.stack([Preprocess(res, 1)(Image.fromarray(a, mode="L")) for a in images])
    likelihood = {"bundled": bpd(m)}
    if model_t200:
        likelihood["t200"] = bpd(load_pipeline(model_t200))
    print(f"  bits/dim bound: {likelihood['bundled']['bits_per_dim']:.3f} ({time.perf_counter() - t0:.0f} s for quality)")
    return {
        "classifier_accuracy": acc,
        "floor": floor,
        "floor_sd": float(floor_boot.std()),
        "bootstrap": BOOTSTRAP,
        "raw_floor_8px": raw_floor,
        "targets": targets,
        "ceiling": ceiling,
        "n": n,
        "resolution": res,
        "rows": rows,
        "likelihood": likelihood,
    }


# ---------------------------------------------------------------------- report
def plots(results: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    qual = results.get("quality")
    if qual:
        fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
        for sampler in ("respaced", "ddim"):
            pts = sorted((r["steps"], r["fd"], r["fd_sd"]) for k, r in qual["rows"].items() if k.startswith(sampler))
            steps, fd, sd = zip(*pts, strict=True)
            label = f"{sampler} DDPM" if sampler == "respaced" else "DDIM (eta 0)"
            ax.errorbar(steps, fd, yerr=sd, marker="o", capsize=3, label=label)
        full = qual["rows"]["ddpm-full"]
        ax.axhline(full["fd"], color="k", ls="--", label=f"ancestral, all {full['steps']} steps")
        ax.axhline(qual["floor"], color="g", ls=":", label="real-data floor")
        ylabel = f"digits-FD of {qual['n']} images (± bootstrap sd)"
        ax.set(xscale="log", xlabel="sampling steps", ylabel=ylabel, title="Quality vs steps (lower is better)")
        ax.legend(fontsize=8)
        fig.savefig(out_dir / "fd_vs_steps.png", dpi=110)
        made.append("fd_vs_steps.png")
        fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
        for name, lk in qual["likelihood"].items():
            per_t = np.array(lk["per_t"])
            ax.semilogy(np.arange(2, len(per_t) + 1), np.clip(per_t[1:], 1e-9, None), label=f"{name}: L_(t-1)")
        ax.set(xlabel="t", ylabel="bits/dim", title="Terms of the bound on held-out digits")
        ax.legend(fontsize=8)
        fig.savefig(out_dir / "bound_terms.png", dpi=110)
        made.append("bound_terms.png")
    return made


def served_lines(served: dict) -> list[str]:
    """What a visitor waits for through the real server, beside the network alone (benchmarks/served.py)."""
    from benchmarks.served import target

    lines = [
        f"What a visitor waits for (`python -m benchmarks.served`, {served.get('date', '')}: the real server, gradio_client, "
        f"{served['images']} images, "
        f"{served['precision']}, bundled Fashion-MNIST model; each run paired with the network's own calls for it, timed "
        "right after in the benchmark's process; medians, ratio range over the pairs):",
        "",
        "| run | network calls | first frame | served, s | network alone, s | served / network | target |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"ddpm": "ancestral, all T", "dpm2m": "DPM-Solver++ 2M", "ddim": "DDIM"}
    for row in served["rows"]:
        goal = target(row, served["T"])
        lines.append(
            f"| {names.get(row['sampler'], row['sampler'])}, {row['steps']} steps | {row['calls']} | "
            f"{statistics.median(row['first']):.2f} s | {statistics.median(row['served']):.2f} | "
            f"{statistics.median(row['network']):.2f} | **{row['ratio']:.2f}x** "
            f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | ≤ {goal}x: {_met(row['ratio'] <= goal)} |"
        )
    return [*lines, "", f"Server peak RSS {served['peak_rss_mb']:.0f} MiB.", ""]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def report(results: dict, made: list[str]) -> str:
    lines = ["# Benchmarks", "", f"Measured by `python -m benchmarks` on {results['machine']}, {results['date']}.", ""]
    tr, sp, app = results.get("training"), results.get("sampling"), results.get("app")
    if tr or sp or app:
        lines += [
            "## Speed (interleaved runs in one process: medians, and each ratio the median of per-pair ratios with their range)",
            "",
            "| what | ours | diffusers | ratio |",
            "|---|---|---|---|",
        ]
        if tr:
            lines.append(
                f"| training, images/s (batch {tr['batch']}, tiny UNet {tr['resolution']} px, {tr['steps']} steps) | "
                f"{statistics.median(tr['ours']):.0f} | {statistics.median(tr['reference']):.0f} (train_unconditional.py loop) | "
                f"**{tr['ratio']:.2f}x** ({tr['ratio_min']:.2f}-{tr['ratio_max']:.2f}) |"
            )
            lines.append(
                f"| training, images/s, both with `--mixed_precision bf16` (CPU autocast) | {tr['ours_bf16']:.0f} | "
                f"{tr['reference_bf16']:.0f} | {tr['ours_bf16'] / tr['reference_bf16']:.2f}x |"
            )
        if sp:
            lines.append(
                f"| sampling {sp['batch']} images, all T = {sp['T']} steps, seconds | {statistics.median(sp['ours']):.2f} | "
                f"{statistics.median(sp['pipeline']):.2f} (DDPMPipeline) | **{sp['ratio']:.2f}x** ({sp['ratio_min']:.2f}-"
                f"{sp['ratio_max']:.2f}) |"
            )
        lines.append("")
        if tr:
            net = tr["network"]
            ours_ms, ref_ms = (1000 * tr["batch"] / statistics.median(tr[k]) for k in ("ours", "reference"))
            compile_gain = net["eager_ms"] / net["compiled_ms"]
            lines += [
                f"Where a training step goes (batch {tr['batch']}): ours takes {ours_ms:.0f} ms, the reference loop "
                f"{ref_ms:.0f} ms, and the UNet's forward + backward alone {net['eager_ms']:.0f} ms of either. A loop that "
                f"spent nothing beyond the network would reach at most **{ref_ms / net['eager_ms']:.2f}x** the reference "
                f"with this network (target 1.5x: {_met(tr['ratio'] >= 1.5)}). Under `torch.compile` the network takes "
                f"{net['compiled_ms']:.0f} ms ({compile_gain:.2f}x; the first compiled call took {net['compile_s']:.0f} s, "
                "less when inductor's on-disk cache already holds the graph), so compiling "
                + ("pays on long runs." if compile_gain >= 1.2 else "does not pay here either."),
                "",
            ]
        if sp:
            lines += [
                f"Where sampling goes: the UNet alone is {100 * sp['network_share']:.0f}% of our sampler's time "
                f"(median of runs); a sampler with no cost beyond the network would reach at most "
                f"**{sp['ceiling']:.2f}x** DDPMPipeline (target 1.2x: {_met(sp['ratio'] >= 1.2)}).",
                f"Same seed, same images: max |ours - DDPMPipeline| = {sp['max_abs_diff']:.1e} on [0, 1] pixels.",
                "Fast samplers, 16 images: " + ", ".join(f"{k} {v:.2f} s" for k, v in sp["fast"].items()) + ".",
                "",
            ]
        if app:
            lines += [
                f"App (real Gradio server, 16 images, all T steps, GIF and gallery): first frame after "
                f"**{app['first_frame']:.2f} s**, finished after **{app['finished']:.1f} s**; server peak RSS "
                f"{app['peak_rss_mb']:.0f} MiB."
            ]
        if results.get("served"):
            lines += ["", *served_lines(results["served"])]
        if results.get("training_rss_mb"):
            lines.append(f"Training peak RSS (batch {tr['batch'] if tr else 128}): {results['training_rss_mb']:.0f} MiB.")
        lines.append("")
    qual = results.get("quality")
    if qual:
        res = qual["resolution"]
        raw = qual["raw_floor_8px"]
        path_text = (
            "8 px, the digits' own size: no resize enters the score"
            if res == 8
            else f"8 -> {res} -> 8 px; {raw:.2f} for the same digits at the raw 8 px"
        )
        lines += [
            "## Quality of the bundled model (digits-FD, lower is better)",
            "",
            f"Classifier test accuracy {qual['classifier_accuracy']:.3f}. Each score is the digits-FD of **{qual['n']}** "
            "generated images (as many as the train split has digits) against the 360 held-out digits; ± is the sd over "
            f"{qual['bootstrap']} bootstrap resamples of the generated images. Real-data floor (the train-split digits "
            f"through the same path as generated images, {path_text}): **{qual['floor']:.2f} ± {qual['floor_sd']:.2f}**. "
            f"Noise ceiling: {qual['ceiling']:.1f}. FD is biased upward at small n (the floor is about 19 at n = 360), so "
            "scores are comparable only at the same n. Every row starts from the same noise (same seeds); DDIM with "
            "eta = 0 is deterministic given it.",
            "",
            f"| sampler | steps | digits-FD | x floor | confident (p > 0.9) | seconds for {qual['n']} images | classes 0-9 |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, r in qual["rows"].items():
            lines.append(
                f"| {k} | {r['steps']} | {r['fd']:.2f} ± {r['fd_sd']:.2f} | {r['fd'] / qual['floor']:.2f} | "
                f"{r['cls']['confident']:.2f} | {r['seconds']:.0f} | {' '.join(map(str, r['cls']['histogram']))} |"
            )
        tg = qual["targets"]
        x_floor, lo, hi = tg["full_x_floor"]
        targets = (
            f"Targets (bootstrap 90% interval of each ratio in brackets): full-T ancestral at most 2x the floor: "
            f"{_met(x_floor <= 2)} ({x_floor:.2f}x, {lo:.2f}-{hi:.2f})"
        )
        if "ddim50_x_full" in tg:
            r50, lo, hi = tg["ddim50_x_full"]
            targets += f"; DDIM-50 at most 1.25x full-T: {_met(r50 <= 1.25)} ({r50:.2f}x, {lo:.2f}-{hi:.2f})"
        lines += ["", targets + "."]
        lines += ["", "| model | bits/dim bound | L_T | sum L_(t-1) | L_0 |", "|---|---|---|---|---|"]
        for name, lk in qual["likelihood"].items():
            lines.append(f"| {name} | {lk['bits_per_dim']:.3f} | {lk['L_T']:.2e} | {lk['sum_L_t-1']:.3f} | {lk['L_0']:.3f} |")
        lines.append("")
        lines += ["![samples](samples_bundled.png)", ""]
    if results.get("fashion"):
        from benchmarks import fashion

        lines += fashion.report(results["fashion"])
    if results.get("recipe_ablation"):
        from benchmarks import recipe

        lines += recipe.report(results["recipe_ablation"])
    if results.get("gpu_training"):
        from benchmarks import gpu

        lines += gpu.report(results["gpu_training"])
    lines += [f"![{m}]({m})" for m in made]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default=space.DIGITS_MODEL, help="the digits model of the speed-vs-diffusers and digits-FD sections"
    )
    p.add_argument("--fashion-model", default=space.BUNDLED_MODEL, help="the 28 px model of the Fashion-MNIST section")
    p.add_argument("--skip-fashion", action="store_true")
    p.add_argument("--fashion-n", type=int, default=1000, help="generated images per fashion-FD and blow-up row")
    p.add_argument("--fashion-precision", default="fp32", choices=["fp32", "bf16"], help="the network's precision there")
    p.add_argument("--fashion-ddim-steps", default="100,200", help="DDIM step counts measured beside DDIM-50 (e.g. 100,200,1000)")
    p.add_argument("--fashion-no-unclipped-ancestral", action="store_true", help="skip its longest row")
    p.add_argument("--fashion-card", action="store_true", help="write the measured quality into that model's card")
    p.add_argument("--fashion-compare", default=None, help="another 28 px model whose few-step samplers to count too")
    p.add_argument("--fashion-compare-note", default=None, help="what the compared model is, for the report")
    p.add_argument("--model-t200", default=None, help="a model trained with the article's T = 200, to compare")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-digits", action="store_true", help="the 28 px Fashion-MNIST section alone")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    p.add_argument("--update", action="store_true", help="keep the sections of results.json this run skips")
    p.add_argument("--gpu-results", default=None, help="a `python -m benchmarks.gpu speed` result to report too")
    p.add_argument("--gpu-loop", default=None, help="a `python -m benchmarks.gpu loop` result (same GPU) to report too")
    p.add_argument("--ddim-gap", default=None, help="a `python -m benchmarks.ddim_gap` result: the fashion section's DDIM gap")
    p.add_argument(
        "--recipe-ablation", nargs="+", action="append", metavar="NOTE LABEL=FILE",
        help="a training ablation: how its models were trained, then each model's compare result (benchmarks/recipe.py)",
    )  # fmt: skip
    p.add_argument("--served", default=None, help="a `python -m benchmarks.served` result: what a visitor waits for")
    p.add_argument(
        "--rare-failures", nargs="+", metavar="FILE", help="`python -m benchmarks.failures --out` results: broken "
        "pictures over many noises, into the fashion section and its card",
    )  # fmt: skip
    a = p.parse_args()
    q = a.quick
    out_dir = HERE / "quick" if q else HERE  # a quick run never overwrites the committed results
    out_dir.mkdir(exist_ok=True)
    previous = out_dir / "results.json"
    results = json.loads(previous.read_text()) if a.update and previous.is_file() else {}
    measures_nothing = (a.skip_speed and a.skip_quality) or (a.skip_digits and a.skip_fashion)
    if not measures_nothing or "machine" not in results:  # a report rewritten from results.json keeps its header
        results.update(machine=machine(), date=time.strftime("%Y-%m-%d"))
    if a.gpu_results:
        results["gpu_training"] = json.loads(Path(a.gpu_results).read_text())
    if a.gpu_loop:
        results["gpu_training"]["compiled_loop"] = json.loads(Path(a.gpu_loop).read_text())
    if a.recipe_ablation:
        from benchmarks import recipe

        results["recipe_ablation"] = [recipe.group(g[0], g[1:]) for g in a.recipe_ablation]
    if a.ddim_gap:
        results.setdefault("fashion", {})["ddim_gap"] = json.loads(Path(a.ddim_gap).read_text())
    if a.served:
        results["served"] = json.loads(Path(a.served).read_text())
    if a.rare_failures:
        results.setdefault("fashion", {})["rare_failures"] = [json.loads(Path(f).read_text()) for f in a.rare_failures]
    if not a.skip_speed and not a.skip_digits:
        print("training throughput ...", flush=True)
        resolution = load_pipeline(a.model).unet.config.sample_size  # the bundled model's own configuration
        results["training"] = bench_training(
            steps=8 if q else 40, batch=16 if q else 128, repeats=1 if q else 3, resolution=resolution
        )
        print("sampling ...", flush=True)
        results["sampling"] = bench_sampling(a.model, batch=16, repeats=1 if q else 3)
        print("app latency ...", flush=True)
        results["app"] = bench_app(repeats=1 if q else 3)
        results["training_rss_mb"] = training_peak_rss(steps=5 if q else 20, batch=16 if q else 128)
    if not a.skip_quality and not a.skip_digits:
        print("quality ...", flush=True)
        results["quality"] = bench_quality(
            a.model,
            a.model_t200,
            n=48 if q else None,  # None: as many as the train split has digits
            batch=120,
            steps_list=[10] if q else [10, 25, 50, 100],
            bpd_images=8 if q else 360,
            out_dir=out_dir,
        )
    if not a.skip_fashion:
        from benchmarks import fashion

        results["fashion"] = results.get("fashion") or {}
        if not a.skip_speed:
            print("fashion-mnist 28 px: speed ...", flush=True)
            results["fashion"]["speed"] = fashion.bench_speed(a.fashion_model, repeats=1 if q else 3)
    if not a.skip_fashion and not a.skip_quality:
        from benchmarks import fashion

        print("fashion-mnist 28 px: quality ...", flush=True)
        results["fashion"]["quality"] = fashion.bench_quality(
            a.fashion_model,
            n=32 if q else a.fashion_n,
            batch=250,
            bpd_images=8 if q else 100,
            out_dir=out_dir,
            precision=a.fashion_precision,
            compare=a.fashion_compare,
            unclipped=not a.fashion_no_unclipped_ancestral,
            more_ddim_steps=tuple(int(k) for k in a.fashion_ddim_steps.split(",") if k.strip()),
        )
    compared = results.get("fashion", {}).get("quality", {}).get("compared")
    if a.fashion_compare_note and compared:
        compared["note"] = a.fashion_compare_note
    # the measurements first: a report that fails is rewritten from them by --skip-speed --skip-digits
    # --skip-fashion --update, without measuring again
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    if a.fashion_card and results.get("fashion", {}).get("quality"):
        from benchmarks import fashion

        fashion.write_card_quality(a.fashion_model, results["fashion"])
    made = plots(results, out_dir)
    out = out_dir / "RESULTS.md"
    out.write_text(report(results, made))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
