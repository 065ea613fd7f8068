"""Every option of a training run, one field each with its help beside it (read by `train_accelerate.py`'s parser,
as transformers' HfArgumentParser reads `field(metadata={"help": ...})`), and the checks of their values."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
LR_SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup")


def option(default, help: str):  # noqa: A002 - the name argparse and HfArgumentParser give it
    """A field with its default and the help `--help` shows for its flag."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every option of `train_accelerate.py` (same names as its flags)."""

    output_dir: str = option(
        "ddpm-model",
        "folder of the trained model (a diffusers DDPMPipeline); checkpoints/ and logs/ go beside it",
    )
    # data
    dataset_name: str | None = option(
        None,
        "Hub dataset id, 'digits' (the offline default) or 'fashion_mnist' (offline from Debian's "
        "dataset-fashion-mnist or --data_dir, else the Hub's zalando-datasets/fashion_mnist)",
    )
    dataset_config_name: str | None = option(None, "the Hub dataset's configuration, if it has several")
    dataset_split: str = option(
        "train",
        "split to train on (digits: train = 1437 images, test = 360 held out, all; fashion_mnist: train = 60000, test = 10000)",
    )
    train_data_dir: str | None = option(None, "local folder of images (imagefolder layout)")
    image_column: str | None = option(None, "column holding the images (found automatically if omitted)")
    cache_dir: str | None = option(None, "where Hub datasets are cached")
    data_dir: str | None = option(None, "folder holding Fashion-MNIST's four IDX files (train-images-idx3-ubyte.gz, ...)")
    resolution: int = option(16, "image size in pixels (square); images are resized on their shorter side, then cropped")
    channels: int | None = option(None, "1 = grayscale, 3 = RGB (default: from the data, 3 when its images have colour)")
    center_crop: bool = option(True, "crop the centre (else a random crop at every step)")
    random_flip: bool = option(False, "mirror images left-right at random")
    # model and diffusion
    model_preset: str = option("tiny", "nano | tiny | small | base (ddpm/models.py)")
    model_config_name_or_path: str | None = option(None, "UNet config JSON or a saved model folder to fine-tune")
    num_train_timesteps: int = option(
        1000,
        "T, the number of diffusion steps (Ho et al. 1000; the article's example 200)",
    )
    beta_schedule: str = option("linear", "linear | scaled_linear | cosine")
    prediction_type: str = option(
        "epsilon",
        "epsilon (the article) | sample | v_prediction: each trains the article's L_gamma on eps, with w_t = 1, "
        "1/SNR(t) or 1/abar_t (DDPMScheduler.eps_loss_weights)",
    )
    loss_type: str = option("l2", "l2 | l1 | huber")
    timestep_weighting: str = option("uniform", "uniform (Ho et al.) | min_snr")
    snr_gamma: float = option(5.0, "gamma of min-SNR weighting")
    clip_sample: bool = option(
        True,
        "clip the predicted x_0 to [-1, 1] when sampling (saved in the scheduler's config; diffusers' default; "
        "--no-clip_sample samples as the article's Algorithm 2 is written)",
    )
    # optimisation
    train_batch_size: int = option(64, "images per step on each process")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    max_train_steps: int | None = option(None, "optimizer steps (overrides --num_epochs)")
    num_epochs: int = option(10, "passes over the data when --max_train_steps is not given")
    learning_rate: float = option(1e-4, "AdamW learning rate after warm-up")
    lr_scheduler: str = option(
        "cosine",
        "constant | linear | cosine | cosine_with_restarts | polynomial | constant_with_warmup",
    )
    lr_warmup_steps: int = option(500, "steps of linear warm-up")
    adam_beta1: float = option(0.95, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_weight_decay: float = option(1e-6, "AdamW weight decay")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "clip gradients to this norm (0 = off)")
    use_ema: bool = option(True, "keep an exponential moving average of the weights (the saved model uses it)")
    ema_max_decay: float = option(0.9999, "EMA decay ceiling")
    ema_inv_gamma: float = option(1.0, "EMA warm-up: decay = 1 - (1 + step / inv_gamma)^-power")
    ema_power: float = option(0.75, "EMA warm-up power")
    mixed_precision: str = option("no", "no | fp16 | bf16")
    seed: int = option(0, "seed of weights, data order, noise and timesteps (runs are reproducible bit for bit on CPU)")
    # bookkeeping
    checkpointing_steps: int = option(500, "save a resumable checkpoint every N steps (0 = never)")
    checkpoints_total_limit: int | None = option(3, "keep at most this many checkpoints")
    resume_from_checkpoint: str | None = option(None, "'latest' or a checkpoint folder")
    save_images_steps: int = option(1000, "sample a grid every N steps (logs/samples, and the trackers)")
    save_images_epochs: int | None = option(
        None,
        "the same every N epochs (diffusers' flag; overrides --save_images_steps)",
    )
    save_model_epochs: int | None = option(None, "also write the model folder every N epochs (diffusers' flag)")
    eval_batch_size: int = option(16, "images in the sample grids (0: no grids)")
    eval_sampler: str = option("ddim", "sampler of the progress grids: ddpm | respaced | ddim | dpm2m")
    eval_steps: int = option(50, "steps of the progress grids' sampler")
    logging_steps: int = option(10, "log loss, learning rate and throughput every N steps")
    report_to: str = option(
        "tensorboard",
        "tensorboard | wandb | comet_ml | ... , several separated by commas, all, or none",
    )
    logging_dir: str | None = option(None, "where trackers write (default: <output_dir>/logs)")
    dataloader_num_workers: int = option(
        0,
        "accepted for diffusers' commands; images are decoded in the training process (small data sets once, into memory)",
    )
    # hub
    push_to_hub: bool = option(False, "upload the model folder to the Hub at the end")
    hub_model_id: str | None = option(None, "USER/NAME of the model repo")
    hub_token: str | None = option(None, "defaults to the HF_TOKEN environment variable")
    hub_private_repo: bool = option(False, "create the repo private")
    push_checkpoints: bool = option(False, "also upload the model at every checkpoint")

    def check(self) -> None:
        """Every flag's value, before any data or model is loaded: one ValueError naming the flag and what to give."""
        from .models import PRESETS
        from .sampling import SAMPLERS
        from .scheduler import LOSS_TYPES
        from .schedules import ALIASES, SCHEDULES

        choices = {
            "eval_sampler": SAMPLERS, "loss_type": LOSS_TYPES, "timestep_weighting": ("uniform", "min_snr"),
            "prediction_type": ("epsilon", "sample", "v_prediction"), "beta_schedule": SCHEDULES + tuple(ALIASES),
            "mixed_precision": ("no", "fp16", "bf16"), "lr_scheduler": LR_SCHEDULERS,
            "model_preset": tuple(PRESETS) if not self.model_config_name_or_path else (self.model_preset,),
        }  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise ValueError(
                f"--max_train_steps {self.max_train_steps} would train nothing: give 1 or more, or leave it out to train "
                f"--num_epochs ({self.num_epochs})"
            )
        at_least_one = ["train_batch_size", "gradient_accumulation_steps", "resolution", "num_train_timesteps",
                        "num_epochs", "eval_steps", "logging_steps"]  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ["checkpointing_steps", "save_images_steps", "eval_batch_size", "lr_warmup_steps", "max_grad_norm"]:
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be 0 or more, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")

    def public_dict(self) -> dict:
        """The arguments without secrets (for logs and the model card)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hub_token"}
