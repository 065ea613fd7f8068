"""What a training run leaves behind: the model folder (the EMA weights as a diffusers pipeline, held-out images,
samples.png and the model card from `ddpm/model_card.md`), and its push to the Hugging Face Hub. `run` is the
training loop's `Run`."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from . import data as data_lib
from .config import HUB_ID, TrainConfig
from .hub import one_line, push_to_hub, save_pipeline, write_model_card
from .models import count_parameters
from .sampling import trajectory, walk
from .scheduler import DDPMScheduler
from .visualize import auto_scale, grid


def ema_weights(accelerator, unet, ema):
    """A copy of the network holding the EMA weights (the training weights stay untouched)."""
    model = copy.deepcopy(accelerator.unwrap_model(unet))
    if ema is not None:
        ema.copy_to(model.parameters())
    return model.eval()


def sample_grid(model, scheduler: DDPMScheduler, cfg: TrainConfig, sampler: str, steps: int | None, progress=False):
    """`eval_batch_size` samples as one picture; `progress` shows a bar over the steps (the final samples.png)."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(cfg.seed)
    frames = trajectory(model, scheduler, cfg.eval_batch_size, sampler=sampler, num_inference_steps=steps, generator=g)
    total = len(walk(scheduler.num_train_timesteps, sampler, steps)) + 1
    for frame in tqdm(frames, total=total, desc="samples.png", disable=not progress, leave=False):
        x = frame.sample
    return grid(x, scale=auto_scale(cfg.resolution, 64))


def write_held_out(cfg: TrainConfig, out: Path) -> None:
    """The test split's first 10 images per class beside the model (digits, Fashion-MNIST), for the app's views."""
    if cfg.train_data_dir or cfg.dataset_split != "train":
        return
    test = data_lib.load_arrays(cfg.dataset_name, "test", cfg.data_dir)
    if test is not None:
        data_lib.save_held_out(out / data_lib.HELD_OUT, data_lib.held_out_examples(test))


def settle_push(run) -> None:
    """Wait for the checkpoint push in flight, if any; a failed one is one line (training goes on, the model is here)."""
    pending, run.pending_push = run.pending_push, None
    if pending is not None:
        try:
            pending.result()
        except Exception as e:  # noqa: BLE001 - network, auth, server: the next push sends the folder again
            run.accelerator.print(f"warning: a checkpoint push failed ({one_line(e, 200)}); the next push sends the model again")


def write_model(run, final_loss: float | None, *, final: bool, trained: str | None = None) -> None:
    """The model folder: the EMA weights as a diffusers pipeline, held-out images, samples.png and the card. A
    checkpoint push still uploading the folder is waited for first: rewritten under it, the upload could send the
    new files, and the next push would find nothing changed and make no commit."""
    cfg, out = run.cfg, run.out
    settle_push(run)
    model = ema_weights(run.accelerator, run.unet, run.ema)
    save_pipeline(out, model, run.scheduler)
    write_held_out(cfg, out)
    if cfg.eval_batch_size > 0:  # the progress grids' fast sampler (DDIM-50 by default: seconds, not all T steps)
        sample_grid(model, run.scheduler, cfg, cfg.eval_sampler, cfg.eval_steps, progress=final).save(out / "samples.png")
    if cfg.train_data_dir:
        described, hub_dataset = f"The images of a local folder ({Path(cfg.train_data_dir).name}): {len(run.data):,}.", None
    else:
        described, hub_dataset = data_lib.describe_dataset(cfg.dataset_name, cfg.dataset_split, len(run.data))
    write_model_card(
        out,
        repo_id=cfg.hub_model_id,
        dataset=run.label(),
        training_args=cfg.public_dict(),
        final_loss=final_loss,
        num_parameters=count_parameters(model),
        resolution=cfg.resolution,
        sample_image="samples.png" if cfg.eval_batch_size > 0 else None,
        data_description=described,
        hub_dataset=hub_dataset,
        trained=trained,
        ema=cfg.use_ema,
        base_model=hub_base_model(cfg.model_config_name_or_path),
    )


def hub_base_model(name: str | None) -> str | None:
    """The Hub repo a run fine-tuned from (for the card's `base_model`), or None for a local folder or a preset."""
    if not name or Path(name).expanduser().exists():
        return None
    return name if HUB_ID.fullmatch(name) else None


def push_final(out: Path, cfg: TrainConfig, accelerator) -> str | None:
    """Push the saved model; a failed push is one line that says the model is safe and how to retry the upload."""
    from huggingface_hub import constants

    token = cfg.hub_token or os.environ.get("HF_TOKEN")
    try:
        commit = push_to_hub(out, cfg.hub_model_id, token, cfg.hub_private_repo, commit_message="Upload trained DDPM")
    except Exception as e:  # noqa: BLE001 - network, auth, server: the training is done and saved either way
        reason = one_line(e, 200)
        excludes = " ".join(f'--exclude "{p}"' for p in ("checkpoints/*", "logs/*"))
        accelerator.print(
            f"error: the model is saved at {out}, but the upload to {cfg.hub_model_id} failed: {reason}. "
            f"Retry the upload alone with: hf upload {cfg.hub_model_id} {out} . {excludes}"
        )
        return None
    accelerator.print(f"pushed to {constants.ENDPOINT.rstrip('/')}/{cfg.hub_model_id}")
    return getattr(commit, "oid", None)
