"""The training loop (Ho et al. Algorithm 1) under Hugging Face `accelerate`.

repeat: x_0 ~ data, t ~ Uniform{1..T}, eps ~ N(0, I); gradient step on w_t ||eps - eps_theta(x_t, t)||^2.

`train` reads top to bottom: `setup` builds a `Run`; each step is `forward_backward` per micro-batch (the one place
a step draws its randomness), `optimizer_step`, a `LossWindow` for the log line, and `periodic` (checkpoints, sample
grids, model saves); `finish` writes the model folder and its card and pushes it. The flags live in `config.py`
(each with its help), checkpoints in `checkpoints.py`, the model folder and its push in `export.py`.

Everything random in a step (timesteps, noise, flips) and the data order are functions of (seed, rank, step),
and a checkpoint holds model, optimizer, LR schedule and EMA: a run killed at any point and resumed from its
last checkpoint ends with the same weights as one never interrupted. Checkpoints are written to a temporary
folder and renamed, so a kill while saving never leaves a broken latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data as data_lib
from .checkpoints import CHECKPOINTS, find_checkpoint, save_checkpoint, weights_digest
from .config import TrainConfig
from .export import ema_weights, push_final, sample_grid, write_model
from .hub import one_line, push_to_hub
from .models import count_parameters, load_unet, make_unet
from .scheduler import DDPMScheduler

LOGS = "logs"


def compile_note(dynamo_plugin) -> str:
    """How the network ran, for the card: "" in eager mode, else the torch.compile backend and mode (accelerate's
    `--dynamo_backend` / `--dynamo_mode`, or ACCELERATE_DYNAMO_BACKEND / ACCELERATE_DYNAMO_MODE)."""
    backend = str(getattr(dynamo_plugin.backend, "value", dynamo_plugin.backend)).lower()
    if backend == "no":
        return ""
    return f", the network under torch.compile ({backend}, mode {dynamo_plugin.mode or 'default'})"


def machine_name() -> str:
    """The CPU's model name and thread count, or the GPU's name: where a model trained, for its card."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "CPU"
    return f"{cpu}, {torch.get_num_threads()} threads"


def trackers(report_to: str | None) -> str | list[str] | None:
    """--report_to as accelerate takes it: None for "none", "all", or a list ("tensorboard,wandb")."""
    if report_to in (None, "", "none"):
        return None
    return "all" if report_to == "all" else [r.strip() for r in report_to.split(",") if r.strip()]


def log_images(accelerator, picture, step: int) -> None:
    """The sample grid to every tracker that takes images (TensorBoard, Weights & Biases, Comet, ...)."""
    image = np.asarray(picture.convert("RGB"))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({"samples": image[None]}, step, dataformats="NHWC")
        elif callable(getattr(tracker, "log_images", None)):
            try:
                tracker.log_images({"samples": [image]}, step)
            except NotImplementedError:
                pass


def use_the_cores(accelerator) -> None:
    """On CPU, `accelerate launch` leaves torch one thread per process (OMP_NUM_THREADS=1): give each process its
    share of the cores instead, unless the user set OMP_NUM_THREADS themselves."""
    if accelerator.device.type != "cpu" or os.environ.get("DDPM_KEEP_THREADS") == "1":
        return
    launched = os.environ.get("ACCELERATE_DYNAMO_BACKEND") is not None or "LOCAL_RANK" in os.environ
    if launched and torch.get_num_threads() == 1:
        share = max(1, (os.cpu_count() or 1) // accelerator.num_processes)
        torch.set_num_threads(share)


def resolve_repo_id(name: str, token: str | None) -> str:
    """USER/NAME for --hub_model_id NAME (or the output folder's name): the repo is created under the token's user,
    as diffusers' train_unconditional.py does; the Hub says whose it is."""
    from huggingface_hub import HfApi

    try:
        return HfApi(token=token or os.environ.get("HF_TOKEN")).create_repo(name, exist_ok=True).repo_id
    except Exception as e:  # noqa: BLE001 - offline, no token, ...: one line before any training
        reason = one_line(e, 160)
        raise ValueError(
            f"--push_to_hub: could not create the model repo {name} on the Hub ({reason}); pass "
            "--hub_model_id USER/NAME and check the token (hf auth login)"
        ) from None


def check_distributed(accelerator) -> None:
    """Fail clearly when `accelerate launch` started several processes that cannot talk to each other."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and accelerator.num_processes != world:
        raise SystemExit(
            f"error: {world} processes were started but they are not connected (accelerate runs them as "
            f"{accelerator.distributed_type.value}, each alone); on a machine without GPU launch with "
            f"`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {world} train_accelerate.py ...`"
        )


def _step_generator(seed: int, rank: int, micro_step: int, device="cpu") -> torch.Generator:
    """The randomness of one micro-batch, a pure function of (seed, rank, micro_step) on `device` (the same run on
    the same hardware draws the same numbers; a GPU draws its noise where it uses it, with no copy from the host)."""
    return torch.Generator(device).manual_seed((seed * 1_000_003 + rank) * 1_000_000_007 + micro_step)


def _build_data(cfg: TrainConfig) -> data_lib.ImageData:
    return data_lib.load_training_data(
        data_lib.Preprocess(cfg.resolution, cfg.channels or 1, cfg.center_crop),
        cfg.dataset_name,
        cfg.dataset_config_name,
        cfg.train_data_dir,
        cfg.image_column,
        cfg.dataset_split,
        cfg.cache_dir,
        cfg.data_dir,
        auto_channels=cfg.channels is None,
    )


def _keep_on_device(data: data_lib.ImageData, accelerator) -> data_lib.ImageData:
    """On a GPU, in-memory images that take at most a quarter of its free memory live there: every batch is then
    cut on the device (Fashion-MNIST's 60,000 images are 47 MB as uint8), and the loop copies nothing from the host."""
    device = accelerator.device
    if device.type != "cuda" or not data.in_memory:
        return data
    free, _ = torch.cuda.mem_get_info(device)
    if data.tensor.numel() * data.tensor.element_size() <= free // 4:
        data.to(device)
    return data


def _build_unet(cfg: TrainConfig):
    if cfg.model_config_name_or_path:
        unet = load_unet(cfg.model_config_name_or_path)
        if unet.config.sample_size != cfg.resolution or unet.config.in_channels != cfg.channels:
            raise ValueError(
                f"the model takes {unet.config.in_channels}x{unet.config.sample_size}px images but the data is "
                f"{cfg.channels}x{cfg.resolution}px: set --resolution {unet.config.sample_size} "
                f"--channels {unet.config.in_channels}"
            )
        return unet
    return make_unet(cfg.model_preset, cfg.resolution, cfg.channels)


@dataclass
class Run:
    """Everything one training run holds: what `setup` builds, the loop advances and `finish` saves."""

    cfg: TrainConfig
    accelerator: object
    data: data_lib.ImageData
    unet: torch.nn.Module
    scheduler: DDPMScheduler
    weights: torch.Tensor | None  # w_t of L_gamma (None: uniform)
    optimizer: torch.optim.Optimizer
    lr_schedule: object
    ema: object | None
    out: Path
    report_to: str | list[str] | None
    batches_per_epoch: int  # micro-batches of one epoch on one rank
    max_steps: int
    images_every: int
    model_every: int
    step: int = 0  # optimizer steps done
    first_step: int = 0  # where this process started (a resumed run starts past 0)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    pending_push: object | None = None  # the checkpoint push still uploading the model folder (a Future)
    _epoch: dict = dataclasses.field(default_factory=dict)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def images_per_step(self) -> int:
        return self.cfg.train_batch_size * self.cfg.gradient_accumulation_steps * self.world

    def indices(self, micro_step: int) -> list[int]:
        """This rank's image indices of one micro-batch: a pure function of (seed, epoch, rank)."""
        epoch, index = divmod(micro_step, self.batches_per_epoch)
        if epoch not in self._epoch:
            self._epoch.clear()
            self._epoch[epoch] = data_lib.epoch_batches(
                len(self.data), self.cfg.train_batch_size, epoch, self.cfg.seed, self.rank, self.world
            )
        return self._epoch[epoch][index]

    def label(self) -> str:
        cfg = self.cfg
        return cfg.dataset_name or (f"local folder {Path(cfg.train_data_dir).name}" if cfg.train_data_dir else "digits")


def setup(cfg: TrainConfig) -> Run:
    """Accelerator, data, network, optimizer, LR schedule and EMA, resumed from a checkpoint when asked."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    started = time.perf_counter()
    cfg.check()
    out = Path(cfg.output_dir)
    report_to = trackers(cfg.report_to)
    logging_dir = out / (cfg.logging_dir or LOGS)  # a relative --logging_dir lies under the output folder, as in diffusers
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(logging_dir)),
    )
    check_distributed(accelerator)
    use_the_cores(accelerator)
    if cfg.push_to_hub and not (cfg.hub_model_id and "/" in cfg.hub_model_id):  # diffusers: USER/<output folder name>
        cfg = dataclasses.replace(cfg, hub_model_id=resolve_repo_id(cfg.hub_model_id or out.resolve().name, cfg.hub_token))

    data = _keep_on_device(_build_data(cfg), accelerator)
    if cfg.channels is None:  # the data decided: say so, and keep it in the card's arguments
        cfg = dataclasses.replace(cfg, channels=data.preprocess.channels)
        accelerator.print(
            f"channels: {cfg.channels} ({'RGB' if cfg.channels == 3 else 'grayscale'}, from the data; --channels overrides)"
        )
    set_seed(cfg.seed)  # the same initial weights on every rank
    unet = _build_unet(cfg)
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=cfg.clip_sample,
    )
    diag = scheduler.diagnostics()
    if diag.warning and accelerator.is_main_process:
        print(f"warning: {diag.warning}")
    weights = None if cfg.timestep_weighting == "uniform" else scheduler.timestep_weights(cfg.timestep_weighting, cfg.snr_gamma)

    spe = data_lib.steps_per_epoch(len(data), cfg.train_batch_size, accelerator.num_processes)
    micro_per_step = cfg.gradient_accumulation_steps
    max_steps = cfg.max_train_steps or math.ceil(cfg.num_epochs * spe / micro_per_step)
    steps_per_epoch = max(1, spe // micro_per_step)
    optimizer, lr_schedule, ema = _optimisation(cfg, unet, accelerator, max_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    unet.to(memory_format=torch.channels_last)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(lr_schedule)
    run = Run(
        cfg, accelerator, data, unet, scheduler, weights, optimizer, lr_schedule, ema, out, report_to, spe, max_steps,
        images_every=cfg.save_images_epochs * steps_per_epoch if cfg.save_images_epochs else cfg.save_images_steps,
        model_every=cfg.save_model_epochs * steps_per_epoch if cfg.save_model_epochs else 0,
        started=started,
    )  # fmt: skip
    _resume(run)
    return run


def _optimisation(cfg: TrainConfig, unet, accelerator, max_steps: int):
    """AdamW (fused on CUDA, multi-tensor on CPU), the LR schedule, and the EMA of the weights (or None)."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    ema = None
    if cfg.use_ema:
        ema = EMAModel(
            unet.parameters(),
            decay=cfg.ema_max_decay,
            use_ema_warmup=True,
            inv_gamma=cfg.ema_inv_gamma,
            power=cfg.ema_power,
            foreach=True,  # one multi-tensor update instead of one per parameter
            model_cls=type(unet),
            model_config=unet.config,
        )
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.adam_weight_decay,
        eps=cfg.adam_epsilon,
        **({"fused": True} if accelerator.device.type == "cuda" else {"foreach": True}),  # one kernel, not one a tensor
    )
    lr_schedule = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps, num_training_steps=max_steps)
    return optimizer, lr_schedule, ema


def _resume(run: Run) -> None:
    cfg, accelerator = run.cfg, run.accelerator
    if not cfg.resume_from_checkpoint:
        return
    path = find_checkpoint(run.out, cfg.resume_from_checkpoint)
    if path is None:
        accelerator.print(f"no checkpoint in {run.out / CHECKPOINTS}: starting a new run")
        return
    accelerator.load_state(str(path))
    if run.ema is not None:  # EMAModel.load_state_dict leaves its shadow weights where the file was read: the CPU
        run.ema.to(accelerator.device)
    run.step = run.first_step = int(path.name.split("-")[-1])
    accelerator.print(f"resumed from {path} at step {run.step}")


def forward_backward(run: Run, micro_step: int, sync: bool) -> torch.Tensor:
    """One micro-batch of Algorithm 1: x_0 from the data, t ~ U{0..T-1}, eps ~ N(0, I), the loss's gradient added to
    the weights' .grad. Everything random here is a pure function of (seed, rank, micro_step): the one place where
    a step draws its randomness, so a resumed run draws what an uninterrupted one would."""
    cfg, accelerator, device = run.cfg, run.accelerator, run.accelerator.device
    g = _step_generator(cfg.seed, run.rank, micro_step)
    indices = run.indices(micro_step)
    flip = torch.rand(len(indices), generator=g) < 0.5 if cfg.random_flip else None
    crop_seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    x0 = run.data.batch(indices, flip, crop_seed).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    T = run.scheduler.num_train_timesteps
    if device.type == "cpu":
        t = torch.randint(0, T, (len(indices),), generator=g)
        noise = torch.randn(x0.shape, generator=g).contiguous(memory_format=torch.channels_last)
    else:  # drawn on the device (its own generator, seeded the same way): no host-to-device copy a step
        g_device = _step_generator(cfg.seed, run.rank, micro_step, device)
        noise = torch.randn(x0.shape, generator=g_device, device=device).contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, T, (len(indices),), generator=g_device, device=device)
    with accelerator.no_sync(run.unet) if not sync else contextlib.nullcontext(), accelerator.autocast():
        loss = run.scheduler.loss(run.unet, x0, t, noise, loss_type=cfg.loss_type, weights=run.weights)
        accelerator.backward(loss / cfg.gradient_accumulation_steps)
    return loss.detach()


def optimizer_step(run: Run) -> None:
    """Clip the gradient's norm, step AdamW and the LR schedule, update the EMA."""
    if run.cfg.max_grad_norm:
        run.accelerator.clip_grad_norm_(run.unet.parameters(), run.cfg.max_grad_norm)
    run.optimizer.step()
    run.lr_schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.step(run.unet.parameters())
    run.step += 1


class LossWindow:
    """The loss and the images/s over the steps since the last log line (summed on the device: no sync a step)."""

    def __init__(self, device):
        self.total, self.count, self.since = torch.zeros((), device=device), 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.count += 1

    def close(self, run: Run) -> dict:
        """The window's mean loss over all ranks, its images/s, the LR and the EMA's decay; starts the next window."""
        mean = run.accelerator.reduce(self.total / self.count, reduction="mean").item()
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        logs = {"loss": mean, "lr": run.lr_schedule.get_last_lr()[0],
                "images_per_s": self.count * run.cfg.train_batch_size * run.world / elapsed}  # fmt: skip
        if run.ema is not None:
            logs["ema_decay"] = run.ema.cur_decay_value if run.ema.cur_decay_value is not None else 0.0
        self.total.zero_()
        self.count, self.since = 0, time.perf_counter()
        return logs


def periodic(run: Run, last_loss: float | None) -> None:
    """What happens every N steps: a checkpoint (and its push), a sample grid, the model folder."""
    cfg, accelerator, step = run.cfg, run.accelerator, run.step
    if cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0 and step < run.max_steps:
        save_checkpoint(accelerator, run.out, step, cfg.checkpoints_total_limit)
        if cfg.push_checkpoints and cfg.push_to_hub and accelerator.is_main_process:
            write_model(run, last_loss, final=False)
            run.pending_push = push_to_hub(run.out, cfg.hub_model_id, cfg.hub_token, cfg.hub_private_repo,
                                           commit_message=f"Checkpoint at step {step}", run_as_future=True)  # fmt: skip
    if run.images_every and step % run.images_every == 0 and accelerator.is_main_process:
        images_dir = run.out / LOGS / "samples"
        images_dir.mkdir(parents=True, exist_ok=True)
        model = ema_weights(accelerator, run.unet, run.ema)
        picture = sample_grid(model, run.scheduler, cfg, cfg.eval_sampler, cfg.eval_steps)
        picture.save(images_dir / f"step-{step:07d}.png")
        log_images(accelerator, picture, step)
    if run.model_every and step % run.model_every == 0 and step < run.max_steps and accelerator.is_main_process:
        write_model(run, last_loss, final=False)


def finish(run: Run, last_loss: float | None, images_per_s: float | None) -> dict:
    """Every rank's weights digest; the model folder, its card and the push (main process); the summary."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    digest = weights_digest(accelerator.unwrap_model(run.unet))
    # one write for the whole line: print() writes the text and the newline separately, and two ranks sharing a pipe
    # can then interleave their lines
    sys.stdout.write(
        f"rank {run.rank} of {run.world} ({accelerator.distributed_type.value}): final training weights sha256 {digest}\n"
    )
    sys.stdout.flush()
    summary = {"steps": run.step, "final_loss": last_loss, "output_dir": str(run.out), "processes": run.world,
               "digest": digest, "images_per_s": images_per_s}  # fmt: skip
    if accelerator.is_main_process:
        trained = (
            f"{run.step} steps of {run.images_per_step} images ({run.step * run.images_per_step / len(run.data):.1f} "
            f"epochs); this run did steps {run.first_step + 1}-{run.step} in "
            f"{(time.perf_counter() - run.started) / 60:.0f} min of wall clock on {run.world} process(es), "
            f"{accelerator.device} ({machine_name()}){compile_note(accelerator.state.dynamo_plugin)}."
        )
        write_model(run, last_loss, final=True, trained=trained)
        accelerator.print(f"saved the model to {run.out} (final loss {last_loss})")
        if run.cfg.push_to_hub:
            summary["hub_commit"] = push_final(run.out, run.cfg, accelerator)
            summary["push_failed"] = summary["hub_commit"] is None
    accelerator.end_training()
    return summary


@contextlib.contextmanager
def stop_between_steps():
    """Ctrl-C while training: the step in hand (and its checkpoint) finishes, then `train` raises KeyboardInterrupt.

    The first SIGINT only sets the yielded Event, which the loop reads between steps; a second one interrupts at
    once. Left to Python, the first would be raised at whatever bytecode runs, and one that lands in a finalizer is
    printed as "Exception ignored" and dropped: training would go on. Off the main thread (no signals there), the
    Event is never set.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def first_ctrl_c(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def train(cfg: TrainConfig) -> dict:
    """Train, checkpoint, save the model folder (and push it). Returns a summary dict (main process)."""
    from tqdm.auto import tqdm

    run = setup(cfg)
    cfg, accelerator = run.cfg, run.accelerator
    if accelerator.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        if run.report_to:
            accelerator.init_trackers("ddpm", config={k: v for k, v in cfg.public_dict().items() if v is not None})
        kept = f"in {run.data.device.type} memory" if run.data.in_memory else "streamed"
        accelerator.print(
            f"{len(run.data)} images ({kept}), {count_parameters(run.unet) / 1e6:.2f} M parameters, {run.world} "
            f"process(es) on {accelerator.device}, {run.max_steps} steps of {run.images_per_step} images"
        )
    run.unet.train()
    progress = tqdm(total=run.max_steps, initial=run.step, disable=not accelerator.is_local_main_process, desc="train")
    window, last_loss = LossWindow(accelerator.device), None
    timed_steps, timed_seconds = 0, 0.0  # steady-state throughput: the steps alone, after a few warm-up steps
    micro_per_step = cfg.gradient_accumulation_steps
    with stop_between_steps() as ctrl_c:
        while run.step < run.max_steps:
            t_step = time.perf_counter()
            for micro in range(micro_per_step):
                window.add(forward_backward(run, run.step * micro_per_step + micro, sync=micro == micro_per_step - 1))
            optimizer_step(run)
            if run.step == run.max_steps and accelerator.device.type == "cuda":
                torch.cuda.synchronize()  # the GPU work still queued counts in the throughput
            if run.step - run.first_step > 3:
                timed_steps, timed_seconds = timed_steps + 1, timed_seconds + time.perf_counter() - t_step
            progress.update(1)
            if run.step % cfg.logging_steps == 0 or run.step == run.max_steps:
                logs = window.close(run)
                progress.set_postfix(loss=f"{logs['loss']:.4f}", img_s=f"{logs['images_per_s']:.0f}")
                if run.report_to:
                    accelerator.log(logs, step=run.step)
                last_loss = logs["loss"]
            periodic(run, last_loss)
            if ctrl_c.is_set():
                progress.close()
                raise KeyboardInterrupt
    progress.close()
    return finish(run, last_loss, timed_steps * run.images_per_step / timed_seconds if timed_seconds else None)
