"""Pictures of the process: tensors in [-1, 1] -> uint8 images, grids, nearest-neighbour upscaling, GIFs, plots."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> [B, H, W, C] uint8, as diffusers' pipelines do ((x / 2 + 0.5).clamp(0, 1))."""
    a = (x.detach().float().cpu() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return np.round(a * 255).astype(np.uint8)


def grid(x: torch.Tensor, nrow: int | None = None, padding: int = 1, scale: int = 1) -> Image.Image:
    """A batch as one image: `nrow` per row (default about square), `padding` px of grey between, upscaled by `scale`
    with nearest neighbour so every pixel of a small sample stays a crisp square."""
    images = to_uint8(x)
    b, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    canvas = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 128, dtype=np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        canvas[top : top + h, left : left + w] = im
    out = Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode="L" if c == 1 else "RGB")
    return upscale(out, scale)


def upscale(image: Image.Image, scale: int) -> Image.Image:
    return image if scale <= 1 else image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def auto_scale(size: int, target: int = 256) -> int:
    """An integer upscaling factor that brings a `size`-pixel image to about `target` pixels."""
    return max(1, target // max(1, size))


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    mode = "RGB" if "RGB" in (left.mode, right.mode) else "L"
    out = Image.new(mode, (left.width + gap + right.width, max(left.height, right.height)), 255 if mode == "L" else (255,) * 3)
    out.paste(left.convert(mode), (0, 0))
    out.paste(right.convert(mode), (left.width + gap, 0))
    return out


def stacked(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """Pictures one below the other, left-aligned, on white."""
    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    out = Image.new(mode, (max(im.width for im in images), sum(im.height for im in images) + gap * (len(images) - 1)),
                    255 if mode == "L" else (255,) * 3)  # fmt: skip
    y = 0
    for im in images:
        out.paste(im.convert(mode), (0, y))
        y += im.height + gap
    return out


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=64)
def _band(mode: str, width: int, height: int, text: str) -> Image.Image:
    """A white band holding `text`, drawn once per (size, text): a label repeated on every frame costs nothing."""
    from PIL import ImageDraw

    band = Image.new(mode, (width, height), 255 if mode == "L" else (255,) * 3)
    ImageDraw.Draw(band).text((4, 2), text, fill=0 if mode == "L" else (0, 0, 0), font=_font(height - 5))
    return band


def captioned(image: Image.Image, text: str, height: int = 18) -> Image.Image:
    """`image` with a white band below it holding `text` (e.g. the frame's t and SNR), in PIL's own font."""
    out = Image.new(image.mode, (image.width, image.height + height))
    out.paste(image, (0, 0))
    out.paste(_band(image.mode, image.width, height, text), (0, image.height))
    return out


def save_png(image: Image.Image, path: str | Path) -> Path:
    """A PNG written fast (zlib level 1: a run's frames are written once and served at once; about 4x faster to
    write than the default level, a little larger). Lossless either way."""
    image.save(path, format="PNG", compress_level=1)
    return Path(path)


def save_gif(frames: list[Image.Image], path: str | Path, duration_ms: int = 60, final_hold_ms: int = 1500) -> Path:
    """An animated GIF that loops, holding the last frame (x_0) a moment longer."""
    path = Path(path)
    durations = [duration_ms] * (len(frames) - 1) + [final_hold_ms]
    frames = [f.convert("RGB") if f.mode not in ("L", "RGB", "P") else f for f in frames]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return path


def frame_indices(num_frames: int, count: int) -> list[int]:
    """`count` indices spread evenly over [0, num_frames - 1], first and last included."""
    if count >= num_frames:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})
