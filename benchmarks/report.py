"""Results into prose: the one module that turns what the experiments measured (their JSON) into benchmarks/RESULTS.md,
its plots, and the Quality section of a model's card. It measures nothing and imports no experiment.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from benchmarks.harness import REAL_ROW, weights_digest
from benchmarks.metrics import BLOWN_ABS, class_distance, uniform_shrink

TARGETS = {"all": 1.25, "few": 1.5}  # served / network alone: all T steps, and 50 steps
OLD_NOTE = "one channel per GroupNorm group at the first level, 12,000 steps"  # results.json's before notes
RECIPE_SAMPLERS = ("ancestral", "ddim-50", "dpm2m-50", "respaced-50")  # a recipe row's "broken" counts over these
VARIANCE_NAMES = {None: "β̃ (the model's)", "fixed_small": "β̃ (the model's)", "fixed_large": "β"}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


# ---------------------------------------------------------------------- RESULTS.md
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


def served_target(row: dict, T: int) -> float:
    """The issue's bound on served / network alone for a row: all T steps, or few."""
    return TARGETS["all"] if row["calls"] >= T else TARGETS["few"]


def served_lines(served: dict) -> list[str]:
    """What a visitor waits for through the real server, beside the network alone (benchmarks/served.py)."""
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
        goal = served_target(row, served["T"])
        lines.append(
            f"| {names.get(row['sampler'], row['sampler'])}, {row['steps']} steps | {row['calls']} | "
            f"{statistics.median(row['first']):.2f} s | {statistics.median(row['served']):.2f} | "
            f"{statistics.median(row['network']):.2f} | **{row['ratio']:.2f}x** "
            f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | ≤ {goal}x: {_met(row['ratio'] <= goal)} |"
        )
    return [*lines, "", f"Server peak RSS {served['peak_rss_mb']:.0f} MiB.", ""]


def results_md(results: dict, made: list[str]) -> str:
    """benchmarks/RESULTS.md from results.json's sections and the plots made of them."""
    lines = ["# Benchmarks", "", f"Measured by `python -m benchmarks` on {results['machine']}, {results['date']}.", ""]
    if results.get("training") or results.get("sampling") or results.get("app"):
        lines += speed_lines(results)
    if results.get("quality"):
        lines += digits_lines(results["quality"])
    if results.get("fashion"):
        lines += fashion_lines(results["fashion"])
    if results.get("recipe_ablation"):
        lines += recipe_lines(results["recipe_ablation"])
    if results.get("gpu_training"):
        lines += gpu_lines(results["gpu_training"])
    lines += [f"![{m}]({m})" for m in made]
    return "\n".join(lines) + "\n"


def speed_lines(results: dict) -> list[str]:
    """Our training loop and sampler against diffusers' (`benchmarks.speed`), the Space's latency, peak memory."""
    tr, sp, app = results.get("training"), results.get("sampling"), results.get("app")
    lines = [
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
        lines += where_training(tr)
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
    return [*lines, ""]


def where_training(tr: dict) -> list[str]:
    """Where a training step goes: ours, the reference loop and the network alone, eager and compiled."""
    net = tr["network"]
    ours_ms, ref_ms = (1000 * tr["batch"] / statistics.median(tr[k]) for k in ("ours", "reference"))
    compile_gain = net["eager_ms"] / net["compiled_ms"]
    return [
        f"Where a training step goes (batch {tr['batch']}): ours takes {ours_ms:.0f} ms, the reference loop "
        f"{ref_ms:.0f} ms, and the UNet's forward + backward alone {net['eager_ms']:.0f} ms of either. A loop that "
        f"spent nothing beyond the network would reach at most **{ref_ms / net['eager_ms']:.2f}x** the reference "
        f"with this network (target 1.5x: {_met(tr['ratio'] >= 1.5)}). Under `torch.compile` the network takes "
        f"{net['compiled_ms']:.0f} ms ({compile_gain:.2f}x; the first compiled call took {net['compile_s']:.0f} s, "
        "less when inductor's on-disk cache already holds the graph), so compiling "
        + ("pays on long runs." if compile_gain >= 1.2 else "does not pay here either."),
        "",
    ]


def digits_lines(qual: dict) -> list[str]:
    """The digits model's quality (`benchmarks.digits`): digits-FD per sampler against its floor, and the bound."""
    res = qual["resolution"]
    raw = qual["raw_floor_8px"]
    path_text = (
        "8 px, the digits' own size: no resize enters the score"
        if res == 8
        else f"8 -> {res} -> 8 px; {raw:.2f} for the same digits at the raw 8 px"
    )
    lines = [
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
    return lines


# ---------------------------------------------------------------------- the 28 px Fashion-MNIST model
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


def fashion_lines(f: dict) -> list[str]:
    """The Fashion-MNIST section: speed, quality of every sampler, rare failures, DDIM's gap."""
    lines = ["## The 28 px Fashion-MNIST model (the Space's default)", ""]
    if f.get("speed"):
        lines += fashion_speed_lines(f["speed"])
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
        lines += ddim_gap_lines(f["ddim_gap"])
    return lines


def fashion_speed_lines(sp: dict) -> list[str]:
    """What a visitor of the free tier waits for (`benchmarks.fashion.bench_speed`), and the network against the peak."""
    lines = [
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
        lines.append(f"| {label} | {1000 * r['first_frame']:.0f} ms | **{r['finished']:.1f} s** | {goal:g} s: {_met(ok)} |")
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
    g = f.get("ddim_gap")
    if not g or model_dir is None or g.get("weights") != weights_digest(model_dir):
        return ""
    return card_sentence(g)


def card_quality(f: dict, model_dir: str | None = None) -> str:
    """The model card's Quality section from this section's results: blow-ups and fashion-FD per sampler, the bound,
    the Space's speed, and what remains to watch for, each with its number."""
    qual, sp = f["quality"], f.get("speed")
    n, floor = qual["n"], qual["floor"]
    rows = qual["rows"]
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
    lines += ["", card_limitations(f, model_dir)]
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


def card_limitations(f: dict, model_dir: str | None) -> str:
    """The card's paragraph on what the few-step samplers cost, which sampler to use, and the broken pictures."""
    qual = f["quality"]
    n, rows = qual["n"], qual["rows"]
    full = rows["ancestral"]["fd"]
    broken = [f"{k}: {r['failures']['any']} of {n}" for k, r in rows.items() if r["failures"]["any"]]
    return (
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
        + (rare_card_sentence(f["rare_failures"]) if f.get("rare_failures") else "")
    )


def write_card_quality(model_dir: str, f: dict) -> None:
    """Replace the Quality section of the model's card (its README.md, read and written by huggingface_hub's
    `ModelCard`) with `card_quality`."""
    from huggingface_hub import ModelCard

    path = Path(model_dir) / "README.md"
    card = ModelCard.load(path)
    head, rest = card.text.split("## Quality\n", 1)
    tail = rest[rest.index("\n## ") :]
    card.text = f"{head}## Quality\n\n{card_quality(f, model_dir)}\n{tail}"
    card.save(path)


# ---------------------------------------------------------------------- rare failures
def _rows(results: list[dict]):
    """(sampler, reverse variance, row, n) over every row of `benchmarks.failures --out` results, in order."""
    for res in results:
        for key, r in res["rows"].items():
            yield key, "-" if key == REAL_ROW else VARIANCE_NAMES[res.get("variance_type")], r, res["n"]


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
        x = x_ancestral(results, fds) if key not in ("ancestral", REAL_ROW) else None
        ratio = f"{x[0]:.2f} ({x[1]:.2f}-{x[2]:.2f}, {x[3]} block{'s' * (x[3] > 1)})" if x else "-"
        lines.append(f"| {key} | {variance} | **{r['any']}** of {n} | {noises} | {_fd_cell(fds)} | {first} | {ratio} |")
    return lines + [""] + floor_lines(results)


def floor_lines(results: list[dict]) -> list[str]:
    """What the training images' row says of every score above: how far fashion-FD moves between blocks of real
    pictures, and ancestral sampling's blocks over theirs."""
    rows = {key: r.get("fashion_fd", []) for key, v, r, _ in _rows(results) if key == REAL_ROW or v.startswith("β̃")}
    real, anc = rows.get(REAL_ROW), rows.get("ancestral")
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
        variance_note = "" if variance.startswith("β̃") or key == REAL_ROW else f" with σ_t² = {variance}"
        x = x_ancestral(results, fds) if key not in ("ancestral", REAL_ROW) else None
        fd = f" (fashion-FD {np.mean(fds):.1f}" + (f", {x[0]:.2f}x ancestral" if x else "") + ")" if fds else ""
        parts.append(f"{key}{variance_note} {r['any']} of {n}{fd}")
    head = " Broken pictures over more noises (`benchmarks.failures`; fashion-FD: the mean over blocks of 1000 noises): "
    return head + "; ".join(parts) + "." if parts else ""


def failures_table(result: dict, real: bool = False) -> list[str]:
    """`python -m benchmarks.failures`' table of one result: each row's broken pictures, which noises, max |x|,
    fashion-FD by blocks of 1000, seconds."""
    n, variance = result["n"], f", reverse variance {result['variance_type']}" if result.get("variance_type") else ""
    lines = [
        "",
        f"{result['model']}, {n} {'images' if real else 'noises'}{variance}",
        "",
        f"| sampler | blown up (of {n}) | past ±{BLOWN_ABS} | flat | which noises | max |x| | fashion-FD by 1000 | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in result["rows"].items():
        fds = " / ".join(f"{fd:.2f}" for fd in r.get("fashion_fd", []))
        noises = ", ".join(map(str, r["noises"][:10])) + (" ..." if len(r["noises"]) > 10 else "")
        lines.append(f"| {k} | **{r['any']}** | {r['blown']} | {r['flat']} | {noises} | {r['max_abs']:.3g} | {fds} | "
                     f"{r['seconds']:.0f} |")  # fmt: skip
    return lines


# ---------------------------------------------------------------------- DDIM's gap
def ddim_gap_lines(g: dict) -> list[str]:
    """RESULTS.md's lines for a `benchmarks.ddim_gap` result."""
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


# ---------------------------------------------------------------------- GPU training
def gpu_lines(res: dict) -> list[str]:
    """The GPU training section of RESULTS.md (a `benchmarks.gpu speed` result)."""
    flops, peaks = res["train_flops_per_image"], res["peaks"]
    lines = [
        f"## Training on {'a GPU' if res['device'] == 'cuda' else 'this CPU'}: {res['machine']}",
        "",
        f"Measured by `python -m benchmarks.gpu speed`: Fashion-MNIST at 28 px, the `{res['preset']}` UNet "
        f"({flops / 1e9:.2f} GFLOP forward + backward per image, counted by torch's FLOP counter), {res['steps']} steps "
        "a run, our loop and the re-implemented diffusers loop interleaved (ratio: median of the per-pair ratios, "
        "range in brackets). The network alone is forward, backward and a fused AdamW step on tensors already on the "
        f"device, no data and no noise drawn: what a loop costing nothing of its own would reach. Measured matmul "
        f"peak: fp32 {peaks['fp32'] / 1e12:.1f} TFLOP/s (TF32 off), bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s.",
        "",
        "| batch | precision | ours, images/s | diffusers loop, images/s | ratio | network alone, images/s | ours / network "
        "alone | ours, TFLOP/s | share of the matmul peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        mine, ref = statistics.median(r["ours"]), statistics.median(r["reference"])
        peak = peaks["bf16" if r["precision"] == "bf16" else "fp32"]
        lines.append(
            f"| {r['batch']} | {'bf16 autocast' if r['precision'] == 'bf16' else 'fp32'} | {mine:,.0f} | {ref:,.0f} | "
            f"**{r['ratio']:.2f}x** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {r['network_alone']:,.0f} | "
            f"{mine / r['network_alone']:.2f} | {mine * flops / 1e12:.2f} | {100 * mine * flops / peak:.1f}% |"
        )
    lines += step_growth(res)
    compiled = [r for r in res["rows"] if "network_compiled" in r]
    if not compiled:
        lines += ["", "`torch.compile` was not measured in this run."]
    for r in compiled:
        lines += [
            "",
            f"Under `torch.compile` (inductor) the network alone at batch {r['batch']} reaches "
            f"{r['network_compiled']:,.0f} images/s, {r['network_compiled'] / r['network_alone']:.2f}x eager; its first "
            f"step took {r['compile_s']:.0f} s.",
        ]
    loop = res.get("compiled_loop")
    if loop:
        lines += [
            "",
            f"Our whole training loop under `torch.compile` (`accelerate launch --dynamo_backend inductor --dynamo_mode "
            f"{loop['mode']}`: inductor's fused kernels, each step replayed as CUDA graphs), measured by "
            f"{loop.get('how', '`python -m benchmarks.gpu loop`')} at batch {loop['batch']}: "
            f"**{loop['compiled']:,.0f} images/s against "
            f"{loop['eager']:,.0f} eager** in the same run ({loop['compiled'] / loop['eager']:.2f}x); the compiled run "
            f"of {loop['compiled_steps']} steps took {loop['compiled_wall_s']:.0f} s from start to end, compilation "
            "included. The launches were the bottleneck, and CUDA graphs remove them.",
        ]
    return lines + [""]


def step_growth(res: dict) -> list[str]:
    """How a training step's time grows from the smallest fp32 batch to the largest: who sets the pace."""
    fp32 = sorted((r for r in res["rows"] if r["precision"] == "no"), key=lambda r: r["batch"])
    if len(fp32) < 2:
        return []
    lo, hi = fp32[0], fp32[-1]
    ms = [1000 * r["batch"] / v for r in (lo, hi) for v in (statistics.median(r["ours"]), r["network_alone"])]
    grows = ms[2] / ms[0]
    return [
        "",
        f"A training step takes {ms[0]:.1f} ms at batch {lo['batch']} and {ms[2]:.1f} ms at batch {hi['batch']} "
        f"(the network alone {ms[1]:.1f} and {ms[3]:.1f} ms): {hi['batch'] // lo['batch']}x the images for "
        f"{grows:.2f}x the time. "
        + (
            "The step's time hardly depends on the batch, so the device waits on the host (Python and the launches "
            "of the UNet's many small kernels), not on arithmetic: a larger batch is nearly free until it fills "
            "the device."
            if grows < 1.5
            else "The step's time grows with the batch: the device's arithmetic sets the pace."
        ),
    ]


# ---------------------------------------------------------------------- the training recipe
def _cell(rows: dict, key: str) -> str:
    r = rows.get(key)
    return f"{r['fd']:.2f} ± {r['fd_sd']:.2f}" if r else "-"


def recipe_lines(groups: list[dict]) -> list[str]:
    """The training recipe's ablations (`benchmarks.recipe.group` each)."""
    lines = [
        "### The training recipe, one change at a time",
        "",
        "fashion-FD (± bootstrap sd) of each model's samplers, x̂0 clipped, through the shipped classifier, on the same "
        "1000 noises within a group (they depend on the batch: the main table's batch of 250 draws the main table's "
        "noises); broken: pictures the blow-up check counts, over every sampler in the row.",
    ]
    for g in groups:
        lines += [
            "",
            g["note"],
            "",
            "| model | ancestral, 1000 steps | DDIM-50 | DDIM-50 x ancestral | DPM-Solver++ 2M-50 | respaced-50 | broken |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, rows in g["runs"].items():
            ratio = rows["ddim-50"]["fd"] / rows["ancestral"]["fd"] if "ancestral" in rows else None
            broken = sum(rows[k]["failures"]["any"] for k in RECIPE_SAMPLERS if k in rows)
            lines.append(
                f"| {label} | {_cell(rows, 'ancestral')} | {_cell(rows, 'ddim-50')} | "
                f"{f'{ratio:.2f}' if ratio else '-'} | {_cell(rows, 'dpm2m-50')} | {_cell(rows, 'respaced-50')} | {broken} |"
            )
    return lines + [""]
