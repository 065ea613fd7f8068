"""Train a DDPM: `accelerate launch train_accelerate.py [--flags]` (or plain `python train_accelerate.py`).

Every flag is a field of `ddpm.config.TrainConfig` (its help beside it); `--help` lists them with their defaults. Examples:

    python train_accelerate.py --output_dir ddpm-digits                    # digits, offline, CPU
    accelerate launch train_accelerate.py --train_data_dir ./my_images --resolution 32 --channels 3
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train_accelerate.py ...   # 2 CPU processes
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from ddpm.config import TrainConfig

# diffusers' train_unconditional.py spells some flags differently; the same meaning, accepted as aliases
ALIASES = {
    "num_train_timesteps": ["--ddpm_num_steps"],
    "beta_schedule": ["--ddpm_beta_schedule"],
    "report_to": ["--logger"],
    "eval_steps": ["--ddpm_num_inference_steps"],
}
# diffusers' flags that change nothing here, accepted so its command runs unchanged; each says why
ACCEPTED = {
    "--overwrite_output_dir": "accepted for diffusers' commands: the model folder is always rewritten; checkpoints are "
    "kept for --resume_from_checkpoint",
    "--enable_xformers_memory_efficient_attention": "accepted for diffusers' commands: attention already runs through "
    "torch's fused scaled_dot_product_attention",
}


class Parser(argparse.ArgumentParser):
    """A mistyped flag is one line with the nearest flag, not fifty lines of usage."""

    def error(self, message: str):
        import difflib

        flags = [o for a in self._actions for o in a.option_strings]
        unknown = [w for w in message.replace(",", " ").split() if w.startswith("--")]
        near = [difflib.get_close_matches(w.split("=")[0], flags, n=1) for w in unknown]
        hint = "; ".join(f"did you mean {m[0]}?" for m in near if m)
        self.exit(2, f"error: {message}{' (' + hint + ')' if hint else ''}; see --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind = hints[field.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        names = [f"--{field.name}", *ALIASES.get(field.name, [])]
        help_text = field.metadata["help"]
        if base is bool:
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            parser.add_argument(*names, dest=field.name, type=base, default=field.default, help=help_text)
    for flag, help_text in ACCEPTED.items():
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--local_rank", type=int, default=-1, help="accepted for diffusers' commands: accelerate sets the ranks")
    return parser


def interrupted(cfg: TrainConfig) -> str:
    """The one line a Ctrl-C leaves: where the last checkpoint is and how to go on from it."""
    from ddpm.checkpoints import find_checkpoint

    last = find_checkpoint(cfg.output_dir, "latest")
    if last is None:
        return "interrupted: no checkpoint was written yet (see --checkpointing_steps); nothing to resume"
    return f"interrupted: the last checkpoint is {last}; run the same command with --resume_from_checkpoint latest to go on"


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    for name in ("local_rank", *(f.lstrip("-") for f in ACCEPTED)):
        args.pop(name)
    from ddpm.data import DataError
    from ddpm.training import train

    cfg = TrainConfig(**args)
    try:
        cfg.check()  # every value, before any data or model is loaded
        if not (cfg.dataset_name or cfg.train_data_dir):
            print("note: no --dataset_name or --train_data_dir: training on scikit-learn's 8x8 digits (offline)")
        summary = train(cfg)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print("\n" + interrupted(cfg), file=sys.stderr)  # on a line of its own, below the progress bar
        return 130
    return 1 if summary.get("push_failed") else 0  # the model is saved; the printed line says how to retry


if __name__ == "__main__":
    sys.exit(main())
