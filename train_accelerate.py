"""Train a DDPM: `accelerate launch train_accelerate.py [--flags]` (or plain `python train_accelerate.py`).

Every flag is a field of `ddpm.training.TrainConfig`; `--help` lists them with their defaults. Examples:

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

from ddpm.training import TrainConfig

HELP = {
    "output_dir": "folder of the trained model (a diffusers DDPMPipeline); checkpoints/ and logs/ go beside it",
    "dataset_name": "Hub dataset id, 'digits' (the offline default) or 'fashion_mnist' (offline from Debian's "
    "dataset-fashion-mnist or --data_dir, else the Hub's zalando-datasets/fashion_mnist)",
    "dataset_config_name": "the Hub dataset's configuration, if it has several",
    "dataset_split": "split to train on (digits: train = 1437 images, test = 360 held out, all; fashion_mnist: "
    "train = 60000, test = 10000)",
    "train_data_dir": "local folder of images (imagefolder layout)",
    "image_column": "column holding the images (found automatically if omitted)",
    "cache_dir": "where Hub datasets are cached",
    "data_dir": "folder holding Fashion-MNIST's four IDX files (train-images-idx3-ubyte.gz, ...)",
    "resolution": "image size in pixels (square); images are resized on their shorter side, then cropped",
    "channels": "1 = grayscale, 3 = RGB (default: from the data, 3 when its images have colour)",
    "center_crop": "crop the centre (else a random crop at every step)",
    "random_flip": "mirror images left-right at random",
    "model_preset": "nano | tiny | small | base (ddpm/models.py)",
    "model_config_name_or_path": "UNet config JSON or a saved model folder to fine-tune",
    "num_train_timesteps": "T, the number of diffusion steps (Ho et al. 1000; the article's example 200)",
    "beta_schedule": "linear | scaled_linear | cosine",
    "prediction_type": "epsilon (the article) | sample | v_prediction: each trains the article's L_gamma on eps, with "
    "w_t = 1, 1/SNR(t) or 1/abar_t (DDPMScheduler.eps_loss_weights)",
    "loss_type": "l2 | l1 | huber",
    "timestep_weighting": "uniform (Ho et al.) | min_snr",
    "snr_gamma": "gamma of min-SNR weighting",
    "clip_sample": "clip the predicted x_0 to [-1, 1] when sampling (saved in the scheduler's config; diffusers' "
    "default; --no-clip_sample samples as the article's Algorithm 2 is written)",
    "train_batch_size": "images per step on each process",
    "gradient_accumulation_steps": "micro-batches per optimizer step",
    "max_train_steps": "optimizer steps (overrides --num_epochs)",
    "num_epochs": "passes over the data when --max_train_steps is not given",
    "learning_rate": "AdamW learning rate after warm-up",
    "lr_scheduler": "constant | linear | cosine | cosine_with_restarts | polynomial | constant_with_warmup",
    "lr_warmup_steps": "steps of linear warm-up",
    "adam_beta1": "AdamW beta1",
    "adam_beta2": "AdamW beta2",
    "adam_weight_decay": "AdamW weight decay",
    "adam_epsilon": "AdamW epsilon",
    "max_grad_norm": "clip gradients to this norm (0 = off)",
    "use_ema": "keep an exponential moving average of the weights (the saved model uses it)",
    "ema_max_decay": "EMA decay ceiling",
    "ema_inv_gamma": "EMA warm-up: decay = 1 - (1 + step / inv_gamma)^-power",
    "ema_power": "EMA warm-up power",
    "mixed_precision": "no | fp16 | bf16",
    "seed": "seed of weights, data order, noise and timesteps (runs are reproducible bit for bit on CPU)",
    "checkpointing_steps": "save a resumable checkpoint every N steps (0 = never)",
    "checkpoints_total_limit": "keep at most this many checkpoints",
    "resume_from_checkpoint": "'latest' or a checkpoint folder",
    "save_images_steps": "sample a grid every N steps (logs/samples, and the trackers)",
    "save_images_epochs": "the same every N epochs (diffusers' flag; overrides --save_images_steps)",
    "save_model_epochs": "also write the model folder every N epochs (diffusers' flag)",
    "eval_batch_size": "images in the sample grids (0: no grids)",
    "eval_sampler": "sampler of the progress grids: ddpm | respaced | ddim | dpm2m",
    "eval_steps": "steps of the progress grids' sampler",
    "logging_steps": "log loss, learning rate and throughput every N steps",
    "report_to": "tensorboard | wandb | comet_ml | ... , several separated by commas, all, or none",
    "logging_dir": "where trackers write (default: <output_dir>/logs)",
    "dataloader_num_workers": "accepted for diffusers' commands; images are decoded in the training process "
    "(small data sets once, into memory)",
    "push_to_hub": "upload the model folder to the Hub at the end",
    "hub_model_id": "USER/NAME of the model repo",
    "hub_token": "defaults to the HF_TOKEN environment variable",
    "hub_private_repo": "create the repo private",
    "push_checkpoints": "also upload the model at every checkpoint",
}
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
        help_text = HELP[field.name]
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
    from ddpm.training import find_checkpoint

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
