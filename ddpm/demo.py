"""What the Space shows, without Gradio: model registry, the streamed trajectory, and the teaching views.

`app.py` wires these functions to widgets; everything here takes and returns plain Python, tensors and PIL
images, so it is tested directly. Bad input raises `ValueError` with a one-line message for the UI.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import DIGITS_CLASSES, HELD_OUT, DataError, LabelledArrays, Preprocess, digits_arrays, load_held_out
from .hub import LoadedModel, ModelLoadError, load_pipeline
from .likelihood import bits_per_dim
from .limits import Limits, OverBudget, check_model, check_request
from .models import count_parameters
from .sampling import bf16_is_native, frame_times, trajectory, walk
from .visualize import auto_scale, frame_indices, grid, save_gif, side_by_side

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = str(ROOT / "pretrained" / "ddpm-fashion")  # the default: Fashion-MNIST 28 px, T = 1000
DIGITS_MODEL = str(ROOT / "pretrained" / "ddpm-digits")  # scikit-learn's 8 px digits, T = 1000 as in Ho et al.
ARTICLE_T200_MODEL = str(ROOT / "pretrained" / "ddpm-digits-t200")  # the same recipe with the article's T = 200
BUNDLED_MODELS = {
    BUNDLED_MODEL: "bundled Fashion-MNIST model (trained on its 60,000 training images)",
    DIGITS_MODEL: "bundled digits model (scikit-learn's 8x8 digits, 1437 training images)",
    ARTICLE_T200_MODEL: "bundled digits model with the article's T = 200",
}
MAX_IMAGES = 16
MAX_UPLOAD_PIXELS = 4096 * 4096  # decoded size of an uploaded image
MAX_SEED = 2**32 - 1
GIF_FRAMES = 60
GALLERY_FRAMES = 11
SAMPLER_LABELS = {
    "DDPM ancestral, all T steps (Algorithm 2)": "ddpm",
    "DDPM respaced (fewer steps)": "respaced",
    "DDIM (fewer steps, eta)": "ddim",
}


# ---------------------------------------------------------------------- models
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
MAX_NAME = 200


def shown(text: str, limit: int = 60) -> str:
    """What a visitor typed, safe to echo: one line, at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ModelRegistry:
    """The models a Space serves, loaded on demand and kept while their parameters fit in `limits.model_cache_mb`
    (least recently used dropped first; the default model is kept).

    Who may load what: visitors name Hub repo ids (user/name) or the bundled models (by their project-relative
    names); local folders are for the operator (`folders`, e.g. the model given at start) unless `allow_local`
    opts in for local development. A refused name is answered without looking at the disk, so the reply tells
    nothing about the server's files. Every model is checked against `limits` before its weights are read.
    """

    def __init__(self, default: str = BUNDLED_MODEL, limits: Limits | None = None, allow_local: bool = True,
                 folders: tuple[str, ...] = ()):  # fmt: skip
        self.limits = limits or Limits()
        self.allow_local = allow_local
        self.folders = {display_name(str(Path(p).resolve())): str(Path(p).resolve()) for p in (*BUNDLED_MODELS, *folders)}
        self.default = self.key(default) or default
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, name: str) -> str | None:
        """The cache key of a name this registry serves (a folder's absolute path, or a repo id), else None."""
        if name in self.folders:
            return self.folders[name]
        if name in self.folders.values():
            return name
        if self.allow_local and Path(name).expanduser().is_dir():  # one cache entry per folder, however spelled
            return str(Path(name).expanduser().resolve())
        if HUB_REPO_ID.fullmatch(name) and ".." not in name and "--" not in name:
            return name
        return None

    def is_folder(self, key: str) -> bool:
        return key in self.folders.values() or (self.allow_local and Path(key).is_absolute())

    def load(self, name: str | None) -> LoadedModel:
        """The model `name` (a Hub repo id, a bundled model; empty = default); raises ModelLoadError."""
        name = (name or "").strip() or self.default
        if len(name) > MAX_NAME:
            raise ModelLoadError(f"a model name has at most {MAX_NAME} characters (a Hub repo id is user/name)")
        key = self.key(name)
        if key is None:
            kinds = "a model folder, a bundled model or a Hub repo id" if self.allow_local else "a bundled model or a Hub repo id"
            raise ModelLoadError(f"{shown(name)!r} is not {kinds} (user/name): this Space loads those")
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        cost = {}

        def check(unet_config, scheduler_config, weights_bytes):
            try:
                cost["flops"] = check_model(unet_config, scheduler_config, weights_bytes, self.limits)
            except OverBudget as e:
                raise ModelLoadError(f"{shown(name)} is not served here: {e}") from None

        model = load_pipeline(key, check=check, local=self.is_folder(key))
        model.flops_per_step = cost["flops"]
        with self._lock:
            self._models[key] = model
            self._models.move_to_end(key)
            self._evict()
        return model

    def _evict(self) -> None:
        budget = self.limits.model_cache_mb * 2**20
        while sum(map(parameter_bytes, self._models.values())) > budget:
            old = next((k for k in self._models if k != self.default), None)
            if old is None or old == next(reversed(self._models)):
                break  # the default, or the model just asked for, stays
            del self._models[old]

    def __contains__(self, name: str) -> bool:
        return (self.key(name) or name) in self._models


def parameter_bytes(model: LoadedModel) -> int:
    return sum(p.numel() * p.element_size() for p in model.unet.parameters())


def display_name(name: str) -> str:
    """A model name as shown in the UI: folders inside the project relative to it."""
    path = Path(name)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else name


def describe(model: LoadedModel) -> str:
    """A short markdown card of the model for the UI."""
    cfg, sched = model.unet.config, model.scheduler
    d = sched.diagnostics()
    name = BUNDLED_MODELS.get(model.source) or f"`{display_name(model.source)}`" + trained_on(model)
    text = (
        f"**{name}**: UNet2DModel, {count_parameters(model.unet) / 1e6:.2f} M parameters, "
        f"{cfg.in_channels} channel(s) at {cfg.sample_size}x{cfg.sample_size} px; T = {sched.num_train_timesteps}, "
        f"{sched.config.beta_schedule} schedule, predicts {sched.config.prediction_type}."
    )
    return text + (f"\n\n⚠️ {d.warning}" if d.warning else "")


def trained_on(model: LoadedModel) -> str:
    """ ", trained on X" as its model card says (our cards write "trained on **X**"), or nothing."""
    card = model.path / "README.md"
    found = re.search(r"trained on \*\*([^*\n]{1,80})\*\*", card.read_text(errors="replace")) if card.is_file() else None
    return f", trained on {found[1]}" if found else ""


# ---------------------------------------------------------------------- generation
PRECISION_LABELS = {
    "fp32: the same images as diffusers": "fp32",
    "bf16: faster on CPUs with bfloat16": "bf16",
}


def default_precision() -> str:
    """The Generate tab's default: bf16 where this CPU computes it natively (it pays there), else fp32."""
    label = {v: k for k, v in PRECISION_LABELS.items()}
    return label["bf16" if bf16_is_native() else "fp32"]


@dataclass(frozen=True)
class Settings:
    seed: int
    num_images: int
    sampler: str
    num_steps: int
    eta: float
    show_x0: bool
    precision: str = "fp32"


def check_settings(model: LoadedModel, seed, num_images, sampler, num_steps, eta, show_x0, precision="fp32",
                   limits: Limits | None = None) -> Settings:  # fmt: skip
    """Validate what a visitor (or an API caller) asked for, and its work against `limits`; ValueError says what
    to change."""
    T = model.scheduler.num_train_timesteps
    sampler = SAMPLER_LABELS.get(sampler, sampler)
    if sampler not in SAMPLER_LABELS.values():
        raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLER_LABELS)}")
    precision = PRECISION_LABELS.get(precision, precision)
    if precision not in PRECISION_LABELS.values():
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISION_LABELS)}")
    try:
        seed, num_images, num_steps, eta = int(seed), int(num_images), int(num_steps), float(eta)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("seed, number of images and steps must be whole numbers, eta a number") from None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}")
    if not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"the number of images must be between 1 and {MAX_IMAGES}, got {num_images}")
    if sampler == "ddpm":
        num_steps = T
    elif not 1 <= num_steps <= T:
        raise ValueError(f"the number of steps must be between 1 and {T} (this model's T), got {num_steps}")
    if not 0.0 <= eta <= 1.0 or math.isnan(eta):
        raise ValueError(f"eta must be between 0 and 1, got {eta}")
    if limits is not None:
        check_request(num_images, num_steps, model.flops_per_step, limits)
    return Settings(seed, num_images, sampler, num_steps, eta, bool(show_x0), precision)


def log_snr(scheduler, t: int) -> float:
    """log SNR(t) = log(abar_t / (1 - abar_t)) at the article's time t >= 1."""
    abar = float(scheduler.alphas_cumprod[int(t) - 1])
    return math.log(abar / (1.0 - abar))


def log_snr_frames(scheduler, times: list[int], count: int) -> list[int]:
    """Indices of about `count` of the frames at article times `times` (start ... 0), evenly spaced in log-SNR.

    Evenly spaced in t, a linear schedule spends most frames where x_t is still noise (SNR < 1 until t ~ 260 of
    1000): the picture only forms in the last quarter. log SNR is the quantity the image's visibility follows
    (signal and noise in decibels), so equal steps in it show equal steps of the picture forming. x_T (the first
    frame) and x_0 (the last) are always kept.
    """
    n = len(times)
    if count >= n:
        return list(range(n))
    noisy = [i for i, t in enumerate(times) if t > 0]
    levels = np.array([log_snr(scheduler, times[i]) for i in noisy])  # increasing along the walk
    targets = np.linspace(levels[0], levels[-1], count - 1)
    nearest = np.abs(levels[None, :] - targets[:, None]).argmin(axis=1)
    return sorted({noisy[int(k)] for k in nearest} | {0, n - 1})


def frame_caption(scheduler, t: int) -> str:
    """ "t = 250 · SNR 1.02": the frame's time and its signal-to-noise ratio abar_t / (1 - abar_t)."""
    return f"t = {t} · SNR {math.exp(log_snr(scheduler, t)):.3g}" if t > 0 else "t = 0 (x_0)"


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

    @property
    def done(self) -> bool:
        return self.gif is not None


class WorkDirs:
    """Per-request output folders under one root per server process, the oldest removed beyond `keep`.

    The root is removed when the process exits, and roots left by processes that no longer run (a killed server)
    are removed when the next one starts: disk use stays bounded across requests and restarts.
    """

    PREFIX = "ddpm-space-"

    def __init__(self, root: str | Path | None = None, keep: int = 16):
        if root is None:
            self.remove_stale()
            root = tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-")
            atexit.register(shutil.rmtree, root, True)
        self.root = Path(root)
        self.keep = keep
        self._lock = threading.Lock()

    @classmethod
    def remove_stale(cls, parent: str | Path | None = None) -> None:
        for old in Path(parent or tempfile.gettempdir()).glob(f"{cls.PREFIX}*"):
            pid = old.name[len(cls.PREFIX) :].split("-")[0]
            if old.is_dir() and (not pid.isdigit() or not _alive(int(pid))):
                shutil.rmtree(old, ignore_errors=True)

    def new(self) -> Path:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(dir=self.root))
            runs = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in runs[: max(0, len(runs) - self.keep)]:
                shutil.rmtree(old, ignore_errors=True)
            return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Serialized:
    """The network behind one process-wide lock: one forward pass at a time. Concurrent requests then take turns
    step by step instead of running several thread teams on 2 vCPUs, which slows every one of them many times."""

    lock = threading.Lock()

    def __init__(self, network):
        self.network = network

    def __call__(self, *args, **kwargs):
        with self.lock:
            return self.network(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.network, name)


def picture_scale(size: int, num_images: int) -> int:
    """The upscaling of each image in a grid of `num_images`: about 64 px each for 16, 256 px for one."""
    return auto_scale(size, max(64, 256 // math.ceil(math.sqrt(num_images))))


def generate(
    model: LoadedModel,
    settings: Settings,
    workdir: str | Path,
    min_interval: float = 0.5,
    noised: tuple[torch.Tensor, int] | None = None,
) -> Iterator[Update]:
    """Run the sampler and stream: the first frame at once, then a preview every `min_interval` seconds, then
    the results.

    The last update carries the GIF of the trajectory (x_T -> x_0; with x_0 predictions beside it when asked),
    a gallery of PNG frames chosen evenly in log-SNR and captioned with t and SNR, and a zip of all of them.
    `noised = (x_0, t)` starts instead from x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at time t, eps being the
    seed's first draw (the one Generate spends on x_T), and shows x_0 and x_t left of the final image.
    """
    workdir = Path(workdir)
    frames_dir = workdir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    unet, scheduler = model.unet, model.scheduler
    size = unet.config.sample_size if isinstance(unet.config.sample_size, int) else max(unet.config.sample_size)
    nrow = math.ceil(math.sqrt(settings.num_images))
    scale = picture_scale(size, settings.num_images)
    steps = settings.num_steps if settings.sampler != "ddpm" else None
    generator = torch.Generator().manual_seed(settings.seed)
    start, lead = None, []
    if noised is not None:
        x0, t = noised
        eps = torch.randn(x0.shape, generator=generator)
        start = (model.scheduler.q_sample(x0, int(t) - 1, eps).to(x0.dtype), int(t))
        lead = [grid(x0, nrow=nrow, scale=scale), grid(start[0].clamp(-1, 1), nrow=nrow, scale=scale)]
    times = frame_times(walk(scheduler.num_train_timesteps, settings.sampler, steps, None if start is None else start[1]))
    n = len(times) - 1
    keep_gif, keep_gallery = (
        set(log_snr_frames(scheduler, times, GIF_FRAMES)),
        set(log_snr_frames(scheduler, times, GALLERY_FRAMES)),
    )

    def render(frame) -> Image.Image:
        picture = grid(frame.sample, nrow=nrow, scale=scale)
        if settings.show_x0:
            x0 = frame.pred_original_sample if frame.pred_original_sample is not None else torch.zeros_like(frame.sample)
            picture = side_by_side(picture, grid(x0.clamp(-1, 1), nrow=nrow, scale=scale))
        return picture

    gif_frames: list[Image.Image] = []
    gallery: list[tuple[Image.Image, int]] = []
    start_time = last = time.perf_counter()
    picture = None
    frames = trajectory(Serialized(unet), scheduler, settings.num_images, sampler=settings.sampler, num_inference_steps=steps,
                        eta=settings.eta, generator=generator, precision=settings.precision, start=start)  # fmt: skip
    for frame in frames:
        now = time.perf_counter()
        due = frame.step == 0 or now - last >= min_interval
        if not (due or frame.step in keep_gif or frame.step in keep_gallery or frame.step == n):
            continue
        picture = render(frame)
        if frame.step in keep_gif:
            gif_frames.append(picture)
        if frame.step in keep_gallery:
            gallery.append((picture, frame.t))
        if due and frame.step < n:
            last = now
            yield Update(picture, f"step {frame.step} of {n} · {frame_caption(scheduler, frame.t)}", frame.step, n)

    elapsed = time.perf_counter() - start_time
    gif = save_gif(gif_frames, workdir / "trajectory.gif")
    captions = []
    for image, t in gallery:
        path = frames_dir / f"t={t:04d}.png"
        image.save(path)
        captions.append((str(path), frame_caption(scheduler, t)))
    zip_path = workdir / "ddpm-trajectory.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.write(gif, gif.name)
        for path, _ in captions:
            z.write(path, f"frames/{Path(path).name}")
    for before in reversed(lead):
        picture = side_by_side(before, picture)
    status = f"done: {n} steps for {settings.num_images} image(s) in {elapsed:.1f} s (seed {settings.seed}, {settings.precision})"
    yield Update(picture, status, n, n, gif=str(gif), gallery=captions, download=str(zip_path))


# ---------------------------------------------------------------------- teaching views
def model_input(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """A PIL image as the model sees data: its channels and resolution, in [-1, 1], shape [1, C, H, W]."""
    cfg = model.unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    return Preprocess(size, cfg.in_channels)(image)[None]


@functools.lru_cache(maxsize=8)
def _held_out_file(path: str) -> LabelledArrays:
    return load_held_out(path)


def held_out_set(model: LoadedModel) -> LabelledArrays:
    """The model's own held-out test images (held_out.npz beside its weights), else the digits' test split."""
    path = model.path / HELD_OUT
    if path.is_file():
        try:
            return _held_out_file(str(path))
        except DataError:
            pass  # a broken file: the views still work on the digits
    return LabelledArrays(*digits_arrays("test"), DIGITS_CLASSES)


def held_out_image(model: LoadedModel, class_name: str, index: int) -> Image.Image:
    """Example `index` of class `class_name` among the model's held-out test images."""
    held = held_out_set(model)
    if class_name not in held.classes:
        raise ValueError(f"pick a class of this model's data: {', '.join(held.classes)}")
    members = np.flatnonzero(held.labels == held.classes.index(class_name))
    if not 0 <= int(index) < len(members):
        raise ValueError(f"pick an example between 0 and {len(members) - 1} of {class_name}")
    return Image.fromarray(held.images[members[int(index)]], mode="L")


def held_out_order(labels: np.ndarray) -> np.ndarray:
    """Indices that take the classes in turn (one of each class, then the second of each, ...)."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))


def open_upload(path: str | None, max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image:
    """An uploaded file as an image, or a clear error. The size is read from the header before anything is
    decoded, so a decompression bomb is refused without being unpacked."""
    if not path:
        raise ValueError("upload an image first (PNG, JPEG, ...)")
    name = shown(Path(path).name, 40)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(str(path))
            w, h = image.size
            if w * h > max_pixels:
                side = int(math.isqrt(max_pixels))
                raise ValueError(f"{name} is {w}x{h} pixels: upload an image of at most {side}x{side}")
            image.load()
            return image
    except ValueError as e:
        if "pixels: upload" in str(e):
            raise
        raise ValueError(f"{name} is not an image this app can read: upload a PNG, JPEG, GIF or WebP") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL refuses it before we see the size
        side = int(math.isqrt(max_pixels))
        raise ValueError(f"{name} is far larger than {side}x{side} pixels decoded: upload a smaller image") from None
    except (OSError, SyntaxError, DataError):
        raise ValueError(f"{name} is not an image this app can read: upload a PNG, JPEG, GIF or WebP") from None


def drawing_image(image: Image.Image | None) -> Image.Image:
    """A sketch (white strokes on the black canvas, or an image uploaded into it) as a plain image; an empty
    canvas is an error. Transparent parts are the canvas: black, the background of the bundled data sets."""
    if image is None:
        raise ValueError("draw something first (or upload an image into the canvas)")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    lo, hi = image.convert("L").getextrema()
    if lo == hi:
        raise ValueError("the canvas is empty: draw something first (or upload an image into it)")
    return image


def strength_note(model: LoadedModel, t: int) -> str:
    """What starting the reverse process at time t keeps of the drawing: abar_t, the SNR, and in words."""
    T = model.scheduler.num_train_timesteps
    if not 0 <= int(t) <= T:
        raise ValueError(f"t must be between 0 and {T}")
    if int(t) == 0:
        return "**t = 0**: no noise, nothing for the model to do: the result is your drawing."
    abar = float(model.scheduler.alphas_cumprod[int(t) - 1])
    snr = abar / (1 - abar)
    if snr >= 1:
        words = "more signal than noise: the model keeps your drawing and cleans it up"
    elif snr >= 0.01:
        words = "more noise than signal: only the rough shape of your drawing survives"
    else:
        words = "almost pure noise: the model forgets your drawing and makes an image of its own"
    return f"**t = {int(t)}** of {T}: ᾱ_t = {abar:.4f}, SNR = ᾱ_t / (1 − ᾱ_t) = {snr:.3g}: {words}."


def from_drawing(model: LoadedModel, image: Image.Image, t: int, settings: Settings, workdir: str | Path,
                 min_interval: float = 0.5) -> Iterator[Update]:  # fmt: skip
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
        picture.save(frame)
        gallery = [(str(frame), "t = 0 (x_0)")]
        yield Update(picture, "done: t = 0, no steps: the input itself", 0, 0, gif=str(gif), gallery=gallery, download=str(gif))
        return
    yield from generate(model, settings, workdir, min_interval, noised=(x0, int(t)))


def _x_t(model: LoadedModel, x0: torch.Tensor, t: int, seed: int) -> tuple[torch.Tensor, float]:
    """(x_t, abar_t) at the article's time t (0 = the data itself), eps drawn from `seed`."""
    s = model.scheduler
    T = s.num_train_timesteps
    if not 0 <= int(t) <= T:
        raise ValueError(f"t must be between 0 and {T}")
    if int(t) == 0:
        return x0, 1.0
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    return s.q_sample(x0, int(t) - 1, eps), float(s.alphas_cumprod[int(t) - 1])


def forward_view(model: LoadedModel, x0: torch.Tensor, t: int, seed: int = 0) -> tuple[Image.Image, str]:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at the article's time t (0 = the data), beside x_0."""
    xt, abar = _x_t(model, x0, t, seed)
    scale = auto_scale(x0.shape[-1], 192)
    snr = abar / (1 - abar) if abar < 1 else math.inf
    picture = side_by_side(grid(x0, scale=scale, padding=0), grid(xt.clamp(-1, 1), scale=scale, padding=0))
    text = (
        f"**t = {int(t)}** of T = {model.scheduler.num_train_timesteps}: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) "
        f"with abar_t = {abar:.5f}, sqrt(abar_t) = {math.sqrt(abar):.4f} (signal kept), "
        f"sqrt(1 - abar_t) = {math.sqrt(1 - abar):.4f} (noise std), SNR = {snr:.4g}. Left: x_0, right: x_t."
    )
    return picture, text


def forward_strip(model: LoadedModel, x0: torch.Tensor, count: int = 9, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """x_t at `count` times from t = 0 to T, all with the same eps (the closed form, not a chain)."""
    T = model.scheduler.num_train_timesteps
    scale = auto_scale(x0.shape[-1], 96)
    return [
        (grid(_x_t(model, x0, t, seed)[0].clamp(-1, 1), scale=scale, padding=0), f"t = {t}") for t in frame_indices(T + 1, count)
    ]


def schedule_figure(model: LoadedModel):
    """beta_t, abar_t (with sqrt(abar_t)) and SNR(t) over t = 1..T, as a matplotlib figure."""
    from matplotlib.figure import Figure

    s = model.scheduler
    t = np.arange(1, s.num_train_timesteps + 1)
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(t, s.betas.numpy())
    ax1.set(title="beta_t", xlabel="t")
    ax2.plot(t, s.alphas_cumprod.numpy(), label="abar_t")
    ax2.plot(t, s.sqrt_alphas_cumprod.numpy(), label="sqrt(abar_t)")
    ax2.set(title="abar_t = prod alpha_s", xlabel="t", ylim=(0, 1.02))
    ax2.legend()
    ax3.semilogy(t, s.snr().numpy())
    ax3.set(title="SNR(t) = abar_t / (1 - abar_t)", xlabel="t")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    return fig


def schedule_report(model: LoadedModel) -> str:
    s = model.scheduler
    d = s.diagnostics()
    text = (
        f"T = {d.num_train_timesteps}, beta from {float(s.betas[0]):.2e} to {float(s.betas[-1]):.4f} "
        f"({s.config.beta_schedule}). At t = T: abar_T = {d.alphas_cumprod_T:.3e}, sqrt(abar_T) = "
        f"{d.sqrt_alphas_cumprod_T:.4f}, SNR(T) = {d.snr_T:.3e}; prior KL(q(x_T|x_0) || N(0, I)) = "
        f"{d.prior_kl_bits:.3e} bits/dim for unit-variance data."
    )
    return text + (f"\n\n⚠️ {d.warning}" if d.warning else "\n\n✅ x_T is close to N(0, I): sampling can start from pure noise.")


def likelihood_view(model: LoadedModel, x0: torch.Tensor, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None, limits: Limits | None = None):  # fmt: skip
    """The bound L_T + sum L_{t-1} + L_0 (bits/dim) on a batch, as a chart of every term and a summary."""
    from matplotlib.figure import Figure

    if limits is not None:
        check_request(x0.shape[0], model.scheduler.num_train_timesteps, model.flops_per_step, limits)
    terms = bits_per_dim(Serialized(model.unet), model.scheduler, x0, generator=torch.Generator().manual_seed(int(seed)),
                         progress=progress)  # fmt: skip
    s = terms.summary()
    per_t = terms.terms.mean(0).numpy()
    T = len(per_t)
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(3, 1))
    ax1.semilogy(np.arange(2, T + 1), np.clip(per_t[1:], 1e-12, None), label="L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t))")
    ax1.set(title="terms of the bound over t (bits/dim)", xlabel="t")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    names = ["L_T", "sum L_{t-1}", "L_0", "total"]
    values = [s["L_T"], s["sum_L_t-1"], s["L_0"], s["bits_per_dim"]]
    ax2.bar(names, values, color=["#999", "#4c72b0", "#dd8452", "#222"])
    ax2.set(title="bits/dim")
    ax2.tick_params(axis="x", labelrotation=30)
    text = (
        f"**{s['bits_per_dim']:.3f} bits/dim** (upper bound on -log2 p(x_0) per dimension) for {x0.shape[0]} image(s): "
        f"L_T = {s['L_T']:.2e}, sum of L_(t-1) = {s['sum_L_t-1']:.3f}, L_0 = {s['L_0']:.3f}."
    )
    return fig, text


def held_out_batch(model: LoadedModel, count: int) -> torch.Tensor:
    """`count` of the model's held-out test images as model input, the classes in turn."""
    count = int(count)
    if not 1 <= count <= MAX_IMAGES:
        raise ValueError(f"the number of images must be between 1 and {MAX_IMAGES}")
    held = held_out_set(model)
    picks = held_out_order(held.labels)[:count]
    return torch.cat([model_input(model, Image.fromarray(held.images[i], mode="L")) for i in picks])
