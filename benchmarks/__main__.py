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
import time
from pathlib import Path

from benchmarks import report
from benchmarks.harness import HERE, machine
from ddpm import space


def parser() -> argparse.ArgumentParser:
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
    return p


def collect(a: argparse.Namespace, results: dict) -> None:
    """Results measured elsewhere (their own commands, another machine) into `results`, each in its section."""
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


def measure_digits(a: argparse.Namespace, results: dict, out_dir: Path) -> None:
    """The digits model: speed against diffusers' code, the Space's latency, and digits-FD."""
    q = a.quick
    if not a.skip_speed:
        from benchmarks import speed
        from ddpm.hub import load_pipeline

        print("training throughput ...", flush=True)
        resolution = load_pipeline(a.model).unet.config.sample_size  # the bundled model's own configuration
        results["training"] = speed.bench_training(steps=8 if q else 40, batch=16 if q else 128, repeats=1 if q else 3,
                                                   resolution=resolution)  # fmt: skip
        print("sampling ...", flush=True)
        results["sampling"] = speed.bench_sampling(a.model, batch=16, repeats=1 if q else 3)
        print("app latency ...", flush=True)
        results["app"] = speed.bench_app(repeats=1 if q else 3)
        results["training_rss_mb"] = speed.training_peak_rss(steps=5 if q else 20, batch=16 if q else 128)
    if not a.skip_quality:
        from benchmarks import digits

        print("quality ...", flush=True)
        results["quality"] = digits.bench_quality(
            a.model, a.model_t200, n=48 if q else None,  # None: as many as the train split has digits
            batch=120, steps_list=[10] if q else [10, 25, 50, 100], bpd_images=8 if q else 360, out_dir=out_dir,
        )  # fmt: skip


def measure_fashion(a: argparse.Namespace, results: dict, out_dir: Path) -> None:
    """The 28 px Fashion-MNIST model: what a visitor waits for, and fashion-FD with blow-ups of every sampler."""
    from benchmarks import fashion

    q = a.quick
    results["fashion"] = results.get("fashion") or {}
    if not a.skip_speed:
        print("fashion-mnist 28 px: speed ...", flush=True)
        results["fashion"]["speed"] = fashion.bench_speed(a.fashion_model, repeats=1 if q else 3)
    if not a.skip_quality:
        print("fashion-mnist 28 px: quality ...", flush=True)
        results["fashion"]["quality"] = fashion.bench_quality(
            a.fashion_model, n=32 if q else a.fashion_n, batch=250, bpd_images=8 if q else 100, out_dir=out_dir,
            precision=a.fashion_precision, compare=a.fashion_compare, unclipped=not a.fashion_no_unclipped_ancestral,
            more_ddim_steps=tuple(int(k) for k in a.fashion_ddim_steps.split(",") if k.strip()),
        )  # fmt: skip
    compared = results["fashion"].get("quality", {}).get("compared")
    if a.fashion_compare_note and compared:
        compared["note"] = a.fashion_compare_note


def main() -> None:
    a = parser().parse_args()
    out_dir = HERE / "quick" if a.quick else HERE  # a quick run never overwrites the committed results
    out_dir.mkdir(exist_ok=True)
    previous = out_dir / "results.json"
    results = json.loads(previous.read_text()) if a.update and previous.is_file() else {}
    measures_nothing = (a.skip_speed and a.skip_quality) or (a.skip_digits and a.skip_fashion)
    if not measures_nothing or "machine" not in results:  # a report rewritten from results.json keeps its header
        results.update(machine=machine(), date=time.strftime("%Y-%m-%d"))
    collect(a, results)
    if not a.skip_digits:
        measure_digits(a, results, out_dir)
    if not a.skip_fashion and not (a.skip_speed and a.skip_quality):
        measure_fashion(a, results, out_dir)
    # the measurements first: a report that fails is rewritten from them by --skip-speed --skip-digits
    # --skip-fashion --update, without measuring again
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    if a.fashion_card and results.get("fashion", {}).get("quality"):
        report.write_card_quality(a.fashion_model, results["fashion"])
    made = report.plots(results, out_dir)
    out = out_dir / "RESULTS.md"
    out.write_text(report.results_md(results, made))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
