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
    "dataset_name": "Hub dataset id, 'digits' (the offline default) or 'fashion_mnist' (offline from Debian's "
    "dataset-fashion-mnist or --data_dir, else the Hub's zalando-datasets/fashion_mnist)",
    "dataset_split": "split to train on (digits: train = 1437 images, test = 360 held out, all; fashion_mnist: "
    "train = 60000, test = 10000)",
    "data_dir": "folder holding Fashion-MNIST's four IDX files (train-images-idx3-ubyte.gz, ...)",
    "train_data_dir": "local folder of images (imagefolder layout)",
    "image_column": "column holding the images (found automatically if omitted)",
    "channels": "1 = grayscale, 3 = RGB",
    "model_preset": "nano | tiny | small | base",
    "model_config_name_or_path": "UNet config JSON or a saved model folder to fine-tune",
    "beta_schedule": "linear | scaled_linear | cosine",
    "prediction_type": "epsilon | sample | v_prediction",
    "loss_type": "l2 | l1 | huber",
    "timestep_weighting": "uniform (Ho et al.) | min_snr",
    "mixed_precision": "no | fp16 | bf16",
    "resume_from_checkpoint": "'latest' or a checkpoint folder",
    "report_to": "tensorboard | none",
    "eval_sampler": "sampler of the progress grids: ddpm | respaced | ddim",
    "hub_token": "defaults to the HF_TOKEN environment variable",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind = hints[field.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        help_text = HELP.get(field.name, " ")
        if base is bool:
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            parser.add_argument(f"--{field.name}", type=base, default=field.default, help=help_text)
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
