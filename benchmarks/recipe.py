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
