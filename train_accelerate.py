"""Train a DDPM: `accelerate launch train_accelerate.py [--flags]` (or plain `python train_accelerate.py`).

Every flag is a field of `ddpm.training.TrainConfig`; `--help` lists them with their defaults. Examples:

    python train_accelerate.py --output_dir ddpm-digits                    # digits, offline, CPU
    accelerate launch train_accelerate.py --train_data_dir ./my_images --resolution 32 --channels 3
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train_accelerate.py ...   # 2 CPU processes
"""

from __future__ import annotations

import argparse
import dataclasses
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
    "channels": "1 = grayscale, 3 = RGB",
    "center_crop": "crop the centre (else a random crop at every step)",
    "random_flip": "mirror images left-right at random",
    "model_preset": "nano | tiny | small | base (ddpm/models.py)",
    "model_config_name_or_path": "UNet config JSON or a saved model folder to fine-tune",
    "num_train_timesteps": "T, the number of diffusion steps (Ho et al. 1000; the article's example 200)",
    "beta_schedule": "linear | scaled_linear | cosine",
    "prediction_type": "epsilon | sample | v_prediction",
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
    "eval_sampler": "sampler of the progress grids: ddpm | respaced | ddim",
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
ALIASES = {"num_train_timesteps": ["--ddpm_num_steps"], "beta_schedule": ["--ddpm_beta_schedule"], "report_to": ["--logger"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ddpm.data import DataError
    from ddpm.training import train

    try:
        summary = train(TrainConfig(**vars(args)))
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if summary.get("push_failed") else 0  # the model is saved; the printed line says how to retry


if __name__ == "__main__":
    sys.exit(main())
