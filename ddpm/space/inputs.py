"""Images coming in: a held-out test image by class, an uploaded file (size checked before decoding), a sketch;
each as the model sees data (its channels and resolution, in [-1, 1])."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import DIGITS_CLASSES, HELD_OUT, DataError, LabelledArrays, Preprocess, digits_arrays, load_held_out
from ..hub import LoadedModel
from .settings import MAX_IMAGES, shown

MAX_UPLOAD_PIXELS = 4096 * 4096  # decoded size of an uploaded image
# The formats read: their header gives the size without decoding. Others may decode inside Image.open, before any
# size is known (an .ico directory saying 16x16 around a 9000x9000 PNG is decoded whole while opening).
FORMATS = ("PNG", "JPEG", "GIF", "WEBP")


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


def image_header(source, name: str, max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image:
    """An image opened from its header only (`source`: a path or a binary file, one of FORMATS), its size checked
    before any pixel is decoded: a decompression bomb is refused without being unpacked. One-line ValueError
    otherwise."""
    side = int(math.isqrt(max_pixels))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL refuses it before we see the size
        raise ValueError(f"{name} is far larger than {side}x{side} pixels decoded: upload a smaller image") from None
    except (OSError, SyntaxError, ValueError, DataError):
        raise ValueError(f"{name} is not an image this app can read: upload a PNG, JPEG, GIF or WebP") from None
    w, h = image.size
    if w * h > max_pixels:
        raise ValueError(f"{name} is {w}x{h} pixels: upload an image of at most {side}x{side}")
    return image


def open_upload(path: str | None, max_pixels: int = MAX_UPLOAD_PIXELS) -> Image.Image:
    """An uploaded file as an image, or a clear error; its size is checked from the header before decoding."""
    if not path:
        raise ValueError("upload an image first (PNG, JPEG, ...)")
    name = shown(Path(path).name, 40)
    image = image_header(str(path), name, max_pixels)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, DataError):
        raise ValueError(f"{name} is not an image this app can read: upload a PNG, JPEG, GIF or WebP") from None
    return image


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


def held_out_batch(model: LoadedModel, count: int) -> torch.Tensor:
    """`count` of the model's held-out test images as model input, the classes in turn."""
    count = int(count)
    if not 1 <= count <= MAX_IMAGES:
        raise ValueError(f"the number of images must be between 1 and {MAX_IMAGES}")
    held = held_out_set(model)
    picks = held_out_order(held.labels)[:count]
    return torch.cat([model_input(model, Image.fromarray(held.images[i], mode="L")) for i in picks])
