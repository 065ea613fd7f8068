"""Checkpoints of a training run: `accelerator.save_state` written to a temporary folder and renamed, so a kill while
saving never leaves a broken latest checkpoint; the latest found again to resume from; a digest of the weights to
tell bit-identical runs apart."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"


def find_checkpoint(output_dir: str | Path, which: str) -> Path | None:
    """`which` = "latest" (highest complete checkpoint, or None) or a checkpoint folder path."""
    if which != "latest":
        path = Path(which)
        if not path.is_dir():
            path = Path(output_dir) / CHECKPOINTS / which
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {which} not found: pass 'latest' or a folder under {output_dir}/{CHECKPOINTS}")
        return path
    root = Path(output_dir) / CHECKPOINTS
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, total_limit: int | None) -> Path:
    """accelerator.save_state into a temporary folder, then an atomic rename to checkpoint-<step>."""
    root = Path(output_dir) / CHECKPOINTS
    final, tmp = root / f"checkpoint-{step}", root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:
            done = sorted(
                (p for p in root.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                key=lambda p: int(p.name.split("-")[-1]),
            )
            for old in done[: max(0, len(done) - total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def weights_digest(model) -> str:
    """sha256 of all parameters' bytes: equal digests mean bit-identical weights (across ranks or runs)."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
