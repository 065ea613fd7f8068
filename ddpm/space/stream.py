"""A sampling run as a stream of `Update`s: the live frame, then the GIF, the gallery of frames chosen evenly in
log-SNR and a zip of them. `generate` starts from noise; `from_drawing` from a visitor's image noised to t."""

from __future__ import annotations

import math
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..hub import LoadedModel
from ..sampling import frame_times, trajectory, walk
from ..visualize import auto_scale, captioned, grid, save_gif, save_png, side_by_side
from .frames import frame_caption, log_snr_frames
from .inputs import model_input
from .runtime import RunClock, Serialized
from .settings import Settings, fewer, learn_cost, turn_size
from .views import strength_note

PREVIEW_S = 1.0  # a live preview a second: twice a second cost DDIM-50 about 0.1 of served / network alone (issue 32)
GIF_FRAMES = 60
GALLERY_FRAMES = 11
X_T_LABEL, X0_LABEL, NO_X0_LABEL = "x_t", "predicted x_0", "predicted x_0: none yet"  # the halves of a pair


@dataclass
class Update:
    """One streamed state of a generation: the live preview, and at the end the GIF, gallery and download."""

    preview: Image.Image
    status: str
    step: int
    num_steps: int
    gif: str | None = None
    gallery: list[tuple[str, str]] = field(default_factory=list)
    download: str | None = None
    scrub: list[tuple[str, str]] = field(default_factory=list)  # (x_t | x̂0 picture, caption) for each GIF frame
    samples: str | None = None  # a finished run's x_0 as a .npy file [N, C, H, W] in [-1, 1] (the copies view reads it)

    @property
    def done(self) -> bool:
        return self.gif is not None


def picture_scale(size: int, num_images: int) -> int:
    """The upscaling of each image in a grid of `num_images`: about 64 px each for 16, 256 px for one."""
    return auto_scale(size, max(64, 256 // math.ceil(math.sqrt(num_images))))


@dataclass
class Kept:
    """What a run keeps of its frames as it goes: the GIF's (captioned with t and SNR), the gallery's (with their t),
    and the scrubber's x_t | x̂0 pairs (each half labelled, the pair captioned), written as PNGs (with their caption)."""

    frames_dir: Path
    gif: list[Image.Image] = field(default_factory=list)
    gallery: list[tuple[Image.Image, int]] = field(default_factory=list)
    scrub: list[tuple[str, str]] = field(default_factory=list)

    def gif_frame(self, picture: Image.Image, caption: str, pair: Image.Image | None) -> None:
        """A GIF frame and its scrubber pair (`pair`: x_t beside x̂0; None when `picture` already is that pair)."""
        self.gif.append(captioned(picture, caption))
        shown = self.gif[-1] if pair is None else captioned(pair, caption)
        path = self.frames_dir / f"scrub-{len(self.scrub):03d}.png"
        save_png(shown, path)
        self.scrub.append((str(path), caption))


def noised_start(model: LoadedModel, noised, generator, nrow: int, scale: int):
    """For `noised = (x_0, t)`: the walk's start (x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps the
    generator's first draw; and t) and the pictures shown left of the result (x_0, x_t). (None, []) otherwise."""
    if noised is None:
        return None, []
    x0, t = noised
    eps = torch.randn(x0.shape, generator=generator)
    x_t = model.scheduler.q_sample(x0, int(t) - 1, eps).to(x0.dtype)
    lead = [captioned(grid(x0, nrow=nrow, scale=scale), "x_0, yours"),
            captioned(grid(x_t.clamp(-1, 1), nrow=nrow, scale=scale), f"x_t, noised to t = {int(t)}")]  # fmt: skip
    return (x_t, int(t)), lead


@dataclass
class Pictures:
    """How a run's frames become pictures: a grid of its images (`nrow` a row, each upscaled `scale` times), with
    the network's x̂0 beside x_t when `show_x0`."""

    nrow: int
    scale: int
    show_x0: bool

    @classmethod
    def of(cls, model: LoadedModel, settings: Settings) -> Pictures:
        config = model.unet.config
        size = config.sample_size if isinstance(config.sample_size, int) else max(config.sample_size)
        return cls(math.ceil(math.sqrt(settings.num_images)), picture_scale(size, settings.num_images), settings.show_x0)

    def grid(self, x: torch.Tensor) -> Image.Image:
        return grid(x.clamp(-1, 1), nrow=self.nrow, scale=self.scale)

    def render(self, frame) -> Image.Image:
        """What a frame shows: x_t, or with `show_x0` the pair x_t | x̂0."""
        return self.pair(frame) if self.show_x0 else grid(frame.sample, nrow=self.nrow, scale=self.scale)

    def pair(self, frame) -> Image.Image:
        """x_t beside the network's x̂0 of the step that made it, each half labelled."""
        return side_by_side(captioned(grid(frame.sample, nrow=self.nrow, scale=self.scale), X_T_LABEL), self.predicted(frame))

    def predicted(self, frame) -> Image.Image:
        """x̂0 of the step that made this frame, labelled; for x_T, which no step made, a grey square that says so."""
        if frame.pred_original_sample is None:
            return captioned(self.grid(torch.zeros_like(frame.sample)), NO_X0_LABEL)
        return captioned(self.grid(frame.pred_original_sample), X0_LABEL)


def generate(
    model: LoadedModel,
    settings: Settings,
    workdir: str | Path,
    min_interval: float = PREVIEW_S,
    noised: tuple[torch.Tensor, int] | None = None,
    limit_s: float | None = None,
) -> Iterator[Update]:
    """Run the sampler and stream: the first frame at once, then a preview every `min_interval` seconds, then
    the results.

    The last update carries the GIF of the trajectory (x_T -> x_0; with x_0 predictions beside it when asked),
    a gallery of PNG frames chosen evenly in log-SNR and captioned with t and SNR, and a zip of all of them.
    `noised = (x_0, t)` starts instead from x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at time t, eps being the
    seed's first draw (the one Generate spends on x_T), and shows x_0 and x_t left of the final image.
    A run that has held the server `limit_s` seconds (`RunClock`) stops at its next step: its last update holds
    the frames made up to that step, the status line says where it stopped and why.
    """
    workdir, scheduler = Path(workdir), model.scheduler
    pictures = Pictures.of(model, settings)
    steps = settings.num_steps if settings.sampler != "ddpm" else None
    generator = torch.Generator().manual_seed(settings.seed)
    start, lead = noised_start(model, noised, generator, pictures.nrow, pictures.scale)
    times = frame_times(walk(scheduler.num_train_timesteps, settings.sampler, steps, None if start is None else start[1]))
    n = len(times) - 1
    keep_gif, keep_gallery = (set(log_snr_frames(scheduler, times, k)) for k in (GIF_FRAMES, GALLERY_FRAMES))
    kept = Kept(workdir / "frames")
    kept.frames_dir.mkdir(parents=True, exist_ok=True)
    network = Serialized(model.unet, turn_size(model, settings.precision))
    clock = RunClock(network, limit_s)
    start_time = last = time.perf_counter()
    picture = stopped = None
    frames = trajectory(network, scheduler, settings.num_images, sampler=settings.sampler, num_inference_steps=steps,
                        eta=settings.eta, generator=generator, precision=settings.precision, start=start,
                        clip_sample=settings.clip)  # fmt: skip
    for frame in frames:
        now = time.perf_counter()
        stopped = frame if frame.step < n and clock.over() else None  # the limit: this frame is the last
        due = frame.step == 0 or now - last >= min_interval
        if not (due or stopped or frame.step in keep_gif or frame.step in keep_gallery or frame.step == n):
            continue
        picture = pictures.render(frame)
        caption = frame_caption(scheduler, frame.t)
        if frame.step in keep_gif or stopped:
            kept.gif_frame(picture, caption, None if settings.show_x0 else pictures.pair(frame))
        if frame.step in keep_gallery or stopped:
            kept.gallery.append((picture, frame.t))
        if stopped:
            frames.close()
            break
        if due and frame.step < n:
            last = now
            left = (now - start_time) / max(frame.step, 1) * (n - frame.step)
            eta_text = f" · about {left:.0f} s left" if frame.step else ""
            yield Update(picture, f"step {frame.step} of {n} · {caption}{eta_text}", frame.step, n)
    learn_cost(model, settings, network.calls, clock.seconds)
    gif, captions, download = write_results(workdir, scheduler, kept.gif, kept.gallery)
    if lead:  # the drawing tab: x_0, x_t, then where the reverse process took it, each labelled
        picture = captioned(picture, "x_0 again, denoised" if stopped is None else "x_t where the limit stopped it")
    for before in reversed(lead):
        picture = side_by_side(before, picture)
    status = final_status(settings, scheduler, n, time.perf_counter() - start_time, stopped, clock.seconds)
    step = n if stopped is None else stopped.step
    samples = None
    if stopped is None:  # x_0 itself, for "Is it copying?" (a stopped run has none)
        samples = workdir / "x0.npy"
        np.save(samples, frame.sample.clamp(-1, 1).float().cpu().numpy())
    yield Update(picture, status, step, n, gif=str(gif), gallery=captions, download=str(download), scrub=kept.scrub,
                 samples=None if samples is None else str(samples))  # fmt: skip


def final_status(settings: Settings, scheduler, n: int, seconds: float, stopped, held_s: float) -> str:
    """The status line of a finished run, or of one the request limit stopped at frame `stopped`: where, and why."""
    clipped = "x̂0 clipped" if settings.clip else "x̂0 not clipped"
    what = f"({settings.sampler_name}, seed {settings.seed}, {settings.precision}, {clipped})"
    if stopped is None:
        return f"done: {n} steps for {settings.num_images} image(s) in {seconds:.1f} s {what}"
    return (f"stopped at step {stopped.step} of {n} ({frame_caption(scheduler, stopped.t)}) after {held_s:.0f} s, "
            f"this Space's limit for one request; the GIF and frames go up to that step {what}. "
            f"To finish within it: {fewer(settings)}.")  # fmt: skip


def write_results(workdir: Path, scheduler, gif_frames: list[Image.Image], gallery: list[tuple[Image.Image, int]]):
    """A finished (or stopped) run's files: the GIF, the gallery's frames as PNGs named and captioned by t, and a
    zip of both. Returns (GIF path, [(frame path, caption)], zip path)."""
    gif = save_gif(gif_frames, workdir / "trajectory.gif")
    captions = []
    for image, t in gallery:
        path = workdir / "frames" / f"t={t:04d}.png"
        save_png(image, path)
        captions.append((str(path), frame_caption(scheduler, t)))
    zip_path = workdir / "ddpm-trajectory.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.write(gif, gif.name)
        for path, _ in captions:
            z.write(path, f"frames/{Path(path).name}")
    return gif, captions, zip_path


def from_drawing(model: LoadedModel, image: Image.Image, t: int, settings: Settings, workdir: str | Path,
                 min_interval: float = PREVIEW_S, limit_s: float | None = None) -> Iterator[Update]:  # fmt: skip
    """Your image through q and back through p_theta: x_0 (preprocessed as training data is) -> x_t (the closed
    form, eps from the seed) -> x_0 again by the reverse process from t, streamed as `generate` streams.
    At t = 0 the result is the input; at t = T it is Generate's image for that seed up to sqrt(abar_T) x_0."""
    x0 = model_input(model, image)
    strength_note(model, t)  # checks t
    if int(t) == 0:
        picture = grid(x0, scale=picture_scale(x0.shape[-1], 1))
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        gif = save_gif([picture], workdir / "trajectory.gif")
        frame = workdir / "t=0000.png"
        save_png(picture, frame)
        gallery = [(str(frame), "t = 0 (x_0)")]
        yield Update(picture, "done: t = 0, no steps: the input itself", 0, 0, gif=str(gif), gallery=gallery, download=str(gif))
        return
    yield from generate(model, settings, workdir, min_interval, noised=(x0, int(t)), limit_s=limit_s)
