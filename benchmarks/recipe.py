"""The training recipe, one change at a time: models trained alike but for one flag, scored on the same noises.

Each group is the models of one ablation at equal budget (same steps, batch, seed, hardware) and a note saying how
they were trained; each model's rows are what `python -m benchmarks.gpu compare` wrote for it (the shipped
classifier, the benchmark's 1000 noises), or the Fashion-MNIST section of a `python -m benchmarks` results.json:

    python -m benchmarks --recipe-ablation "8,000 steps of 256 ..." control=c.json v-prediction=v.json \\
        --update --skip-speed --skip-digits --skip-fashion
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLERS = ("ancestral", "ddim-50", "dpm2m-50", "respaced-50")


def rows_of(path: str | Path) -> dict:
    """A model's sampler rows from a `benchmarks.gpu compare` result (one model) or a benchmarks results.json."""
    res = json.loads(Path(path).read_text())
    if "models" in res:
        if len(res["models"]) != 1:
            raise ValueError(f"{path} scores {len(res['models'])} models: give one model's result per label")
        return next(iter(res["models"].values()))
    return res["fashion"]["quality"]["rows"]


def group(note: str, runs: list[str]) -> dict:
    """One ablation from the command line: its note and LABEL=FILE for each model."""
    bad = [r for r in runs if "=" not in r]
    if bad:
        raise ValueError(f"give each model as LABEL=FILE, not {bad[0]!r}")
    return {"note": note, "runs": {label: rows_of(f) for label, f in (r.split("=", 1) for r in runs)}}


def _cell(rows: dict, key: str) -> str:
    r = rows.get(key)
    return f"{r['fd']:.2f} ± {r['fd_sd']:.2f}" if r else "-"


def report(groups: list[dict]) -> list[str]:
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
            broken = sum(rows[k]["failures"]["any"] for k in SAMPLERS if k in rows)
            lines.append(
                f"| {label} | {_cell(rows, 'ancestral')} | {_cell(rows, 'ddim-50')} | "
                f"{f'{ratio:.2f}' if ratio else '-'} | {_cell(rows, 'dpm2m-50')} | {_cell(rows, 'respaced-50')} | {broken} |"
            )
    return lines + [""]
