"""Training data: scikit-learn's digits, Fashion-MNIST, a local image folder, or a Hub dataset -> tensors in [-1, 1].

The two offline sets are arrays: scikit-learn's digits (bundled with scikit-learn) and Fashion-MNIST, read from its
four original IDX files (Debian's `dataset-fashion-mnist` puts them under /usr/share/datasets/fashion-mnist, or
any folder holding them), else from the Hub. Arrays at the model's size are scaled to [-1, 1] directly; everything
else becomes a `datasets.Dataset` with an image column and goes through one preprocessing path (resize, crop, mode,
scale). Small data sets are decoded once into one in-memory tensor; large ones are decoded per batch.
Unreadable images are skipped and counted (a warning names how many); a data set with no readable image is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import math
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

DIGITS = "digits"
FASHION_MNIST = "fashion_mnist"
FASHION_MNIST_NAMES = (FASHION_MNIST, "fashion-mnist", "zalando-datasets/fashion_mnist")  # offline and Hub spellings
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}
DIGITS_CLASSES = tuple(str(d) for d in range(10))
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IN_MEMORY_BYTES = 2 * 1024**3  # decode once into RAM below this size
# A pixel value 0..255 as the model sees it, (v / 127.5 - 1), computed once on the CPU: a batch of uint8 images looks its
# values up here on any device, so a GPU gives the CPU's numbers bit for bit (CUDA divides by multiplying with the
# reciprocal, one rounding away).
UINT8_TO_UNIT = torch.arange(256, dtype=torch.float32) / 127.5 - 1.0


@functools.cache
def _unit_table(device: torch.device) -> torch.Tensor:
    """UINT8_TO_UNIT on `device`, copied there once."""
    return UINT8_TO_UNIT.to(device)


class DataError(ValueError):
    """Bad training data; the message says what to change."""


def digits_split_indices(split: str) -> np.ndarray:
    """Indices of scikit-learn's digits in a fixed stratified 80/20 split: "train" (1437), "test" (360) or "all"."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    if split == "all":
        return np.arange(len(labels))
    if split not in ("train", "test"):
        raise DataError(f"the digits data set has the splits train, test and all, not {split!r}")
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    return np.sort(train if split == "train" else test)


def digits_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 8, 8] in 0..255, labels [N]) of one split of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = digits_split_indices(split)
    return np.round(digits.images[idx] * 255.0 / 16.0).astype(np.uint8), digits.target[idx]


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format, gzipped or not) as a uint8 array of the shape its header gives.

    Header: two zero bytes, the data type (0x08 = unsigned byte), the number of dimensions, then each dimension as a
    big-endian uint32; then the data. Anything else (wrong magic, a type other than bytes, a short file) is a
    `DataError` naming the file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path.name}: cannot read it ({e}): download the file again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path.name}: not an IDX file (its first bytes are not the IDX magic number 0x0000080N)")
    if raw[2] != 0x08:
        raise DataError(f"{path.name}: IDX data type 0x{raw[2]:02x}, expected 0x08 (unsigned bytes)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path.name}: IDX header is cut short or declares {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected, got = math.prod(shape), len(raw) - 4 - 4 * ndim
    if got != expected:
        raise DataError(f"{path.name}: the header says {'x'.join(map(str, shape))} = {expected} bytes, the file holds {got}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `folder` (e.g. train-images-idx3-ubyte.gz), or None."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_arrays(split: str = "train", data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(images uint8 [N, 28, 28], labels [N]) of Fashion-MNIST's "train" (60,000) or "test" (10,000) split from
    its IDX files in `data_dir` (default: Debian's /usr/share/datasets/fashion-mnist); None when the files are not
    there (the caller then loads the Hub copy). A given `data_dir` without the files is an error."""
    if split not in FASHION_MNIST_FILES:
        raise DataError(f"Fashion-MNIST has the splits train and test, not {split!r}")
    folder = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    prefix = FASHION_MNIST_FILES[split]
    files = [find_idx_file(folder, f"{prefix}-{kind}-idx{n}-ubyte") for kind, n in (("images", 3), ("labels", 1))]
    if None in files:
        if data_dir:
            raise DataError(
                f"--data_dir {folder.name} does not hold {prefix}-images-idx3-ubyte(.gz) and {prefix}-labels-idx1-ubyte(.gz)"
            )
        return None
    images, labels = (read_idx(f) for f in files)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{files[0].name} and {files[1].name} do not match: {images.shape} images, {labels.shape} labels")
    return images, labels


def arrays_dataset(images: np.ndarray, labels: np.ndarray):
    """uint8 images [N, H, W] (grayscale) and their labels as a `datasets.Dataset` with "image" and "label"."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": Value("int64")})
    pil = [Image.fromarray(a, mode="L") for a in images]
    return Dataset.from_dict({"image": pil, "label": np.asarray(labels).tolist()}, features=features)


def digits_dataset(split: str = "train"):
    """scikit-learn's bundled 8x8 handwritten digits (no download) as a `datasets.Dataset`.

    Pixel values 0..16 become 8-bit grayscale images 0..255 (bright strokes on black), with their labels.
    The "train" split (1437 images) is the default; "test" (360) is held out for evaluation.
    """
    return arrays_dataset(*digits_arrays(split))


@dataclass(frozen=True)
class LabelledArrays:
    """An offline data set: uint8 grayscale images [N, H, W], their labels [N], and the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def describe_dataset(dataset_name: str | None, split: str, count: int) -> tuple[str, str | None]:
    """(source, split, count and licence of the training data in a sentence; its Hub id) for a model card."""
    if dataset_name in (None, DIGITS):
        return (
            f"scikit-learn's bundled 8x8 handwritten digits (the UCI ML hand-written digits test set: 1,797 images, "
            f"10 classes, CC BY 4.0), split **{split}**: {count:,} images (a fixed stratified 80/20 split; the 360 test "
            "images are held out). Bright strokes on black, 17 grey levels scaled to 0-255.",
            None,
        )
    if dataset_name in FASHION_MNIST_NAMES:
        return (
            f"Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, Zalando Research; MIT licence): 28x28 grayscale images of "
            f"clothing in 10 classes (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle "
            f"boot), split **{split}**: {count:,} images; the 10,000 test images are held out. Read offline from the "
            "original IDX files (Debian's dataset-fashion-mnist), the same data as the Hub's zalando-datasets/fashion_mnist.",
            FASHION_MNIST_HUB,
        )
    return (
        f"`{dataset_name}`, split **{split}**: {count:,} images.",
        dataset_name if dataset_name and "/" in dataset_name else None,
    )


HELD_OUT = "held_out.npz"  # a model folder's few test images, for the app's forward-process and likelihood views


def held_out_examples(arrays: LabelledArrays, per_class: int = 10) -> LabelledArrays:
    """The first `per_class` images of each class, class by class (a small, balanced, fixed sample)."""
    idx = np.concatenate([np.flatnonzero(arrays.labels == c)[:per_class] for c in range(len(arrays.classes))])
    return LabelledArrays(arrays.images[idx], arrays.labels[idx], arrays.classes)


def save_held_out(path: str | Path, arrays: LabelledArrays) -> Path:
    """Write images, labels and class names to an .npz (plain arrays: loaded with allow_pickle=False)."""
    np.savez_compressed(path, images=arrays.images, labels=arrays.labels, classes=np.array(arrays.classes))
    return Path(path)


MAX_HELD_OUT_BYTES = 64 * 2**20  # held-out images unpacked: thousands of 28 px images fit many times over


def _npz_unpacked_bytes(path: str | Path) -> int:
    """Bytes the arrays of an .npz file would take once loaded, from each member's zip entry and .npy header (the
    header's shape is what numpy allocates), without reading any array."""
    total = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
            total += max(info.file_size, math.prod(shape) * dtype.itemsize)
    return total


def load_held_out(path: str | Path, max_bytes: int = MAX_HELD_OUT_BYTES) -> LabelledArrays:
    """Read what `save_held_out` wrote; anything else, or more than `max_bytes` unpacked, is a `DataError`."""
    try:
        unpacked = _npz_unpacked_bytes(path)
        if unpacked > max_bytes:
            raise DataError(f"{Path(path).name} unpacks to {unpacked / 2**20:.0f} MB; at most {max_bytes / 2**20:.0f} MB is read")
        with np.load(path, allow_pickle=False) as f:
            images, labels, classes = f["images"], f["labels"], tuple(str(c) for c in f["classes"])
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise DataError(f"{Path(path).name} is not a held-out image file ({type(e).__name__})") from None
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),) or not classes:
        raise DataError(f"{Path(path).name} does not hold uint8 images [N, H, W] with one label each")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(classes):
        raise DataError(f"{Path(path).name} has labels outside its {len(classes)} classes")
    return LabelledArrays(images, labels, classes)


def load_arrays(dataset_name: str | None, split: str = "train", data_dir: str | Path | None = None) -> LabelledArrays | None:
    """digits (None or "digits") or Fashion-MNIST from local files; None for any other name, or when Fashion-MNIST's
    files are not on this machine (the caller then loads it from the Hub)."""
    if dataset_name in (None, DIGITS):
        return LabelledArrays(*digits_arrays(split), DIGITS_CLASSES)
    if dataset_name in FASHION_MNIST_NAMES:
        found = fashion_mnist_arrays(split, data_dir)
        return LabelledArrays(*found, FASHION_MNIST_CLASSES) if found else None
    return None


def load_image_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | None = None,
    image_column: str | None = None,
    split: str = "train",
    cache_dir: str | None = None,
):
    """(dataset, image column) from a Hub dataset, a local folder, or digits when neither is given."""
    from datasets import load_dataset

    if dataset_name and train_data_dir:
        raise DataError("give either --dataset_name or --train_data_dir, not both")
    if train_data_dir:
        folder = Path(train_data_dir)
        if not folder.is_dir():
            raise DataError(f"--train_data_dir {folder} is not a folder: point it at a folder of images")
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*") if p.is_file()):
            raise DataError(f"no images found in {folder}: put .png/.jpg files in it (or in class subfolders)")
        ds = load_dataset("imagefolder", data_dir=str(folder), split="train", cache_dir=cache_dir)
    elif dataset_name in (None, DIGITS):
        ds = digits_dataset(split)
    else:
        hub_name = FASHION_MNIST_HUB if dataset_name in FASHION_MNIST_NAMES else dataset_name
        try:
            ds = load_dataset(hub_name, dataset_config_name, split=split, cache_dir=cache_dir)
        except Exception as e:  # the datasets library's own error names the problem; keep it on one line
            raise DataError(f"could not load dataset {dataset_name!r}: {str(e).splitlines()[0]}") from e
    return ds, find_image_column(ds, image_column)


def find_image_column(ds, image_column: str | None = None) -> str:
    """The named column, or the first column of `Image` type (else one called image/img/picture)."""
    from datasets import Image as ImageFeature

    columns = list(ds.column_names)
    if image_column:
        if image_column not in columns:
            raise DataError(f"no column {image_column!r} in the data set: its columns are {', '.join(columns)}")
        return image_column
    for name, feature in ds.features.items():
        if isinstance(feature, ImageFeature):
            return name
    for name in ("image", "img", "picture"):
        if name in columns:
            return name
    raise DataError(f"no image column found (columns: {', '.join(columns)}): name it with --image_column")


@dataclass(frozen=True)
class Preprocess:
    """PIL image -> float tensor [C, H, W] in [-1, 1]: mode, resize (shorter side), crop, scale."""

    resolution: int
    channels: int = 1
    center_crop: bool = True

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise DataError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.resolution < 1:
            raise DataError(f"--resolution must be a positive number of pixels, got {self.resolution}")

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        image = to_mode(image, self.channels)
        w, h = image.size
        scale = self.resolution / min(w, h)
        size = (max(self.resolution, round(w * scale)), max(self.resolution, round(h * scale)))
        if size != (w, h):
            image = image.resize(size, Image.Resampling.BILINEAR)
        image = crop(image, self.resolution, self.center_crop, rng)
        a = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a))


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode (L, RGB, RGBA, P, LA, I;16, I, F, CMYK ...) as 8-bit L (1 channel) or RGB (3)."""
    if channels not in (1, 3):
        raise DataError(f"--channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit: rescale to 8 bits by its range
        a = np.asarray(image, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        image = Image.fromarray(np.round(a).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = ImageOps.exif_transpose(image) if hasattr(image, "getexif") else image
    return image.convert("L" if channels == 1 else "RGB")


def crop(image: Image.Image, size: int, center: bool, rng: np.random.Generator | None) -> Image.Image:
    w, h = image.size
    if center or rng is None:
        left, top = (w - size) // 2, (h - size) // 2
    else:
        left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    return image.crop((left, top, left + size, top + size))


def decode(value) -> Image.Image:
    """An image cell as stored by `datasets` (PIL image, {"bytes", "path"}, or a path) -> PIL image."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        else:
            image = Image.open(value["path"])
    else:
        image = Image.open(value)
    image.load()
    return image


class ImageData:
    """A data set ready for training: `batch(indices, flip_mask)` returns a [B, C, H, W] tensor in [-1, 1]."""

    def __init__(self, ds, image_column: str, preprocess: Preprocess, in_memory: bool | None = None):
        from datasets import Image as ImageFeature

        self.preprocess = preprocess
        if isinstance(ds.features.get(image_column), ImageFeature):
            ds = ds.cast_column(image_column, ImageFeature(decode=False))
        self.column = ds[image_column] if len(ds) else []
        if len(self.column) == 0:
            raise DataError("the data set has no images: check the folder, dataset name or split")
        per_image = 4 * preprocess.channels * preprocess.resolution**2
        if in_memory is None:  # random crops differ at every step, so they are cut from freshly decoded images
            in_memory = preprocess.center_crop and len(self.column) * per_image <= IN_MEMORY_BYTES
        self.in_memory = in_memory
        self.skipped = 0
        if self.in_memory:
            self.tensor, self.skipped = self._decode_all()
            self.size = len(self.tensor)
        else:
            self.size = len(self.column)

    @classmethod
    def from_arrays(cls, arrays: LabelledArrays, preprocess: Preprocess) -> ImageData:
        """All images in memory. At the model's size and channels they stay one uint8 tensor, scaled to [-1, 1]
        batch by batch (the same numbers `Preprocess` gives); otherwise each goes through `preprocess` once."""
        self = cls.__new__(cls)
        self.preprocess, self.column, self.in_memory, self.skipped = preprocess, None, True, 0
        r = preprocess.resolution
        if arrays.images.shape[1:] == (r, r) and preprocess.channels == 1:
            self.tensor = torch.from_numpy(np.ascontiguousarray(arrays.images)).unsqueeze(1)
        else:
            self.tensor = torch.stack([preprocess(Image.fromarray(a, mode="L")) for a in arrays.images])
        self.size = len(self.tensor)
        return self

    def _decode_all(self) -> tuple[torch.Tensor, int]:
        images, skipped = [], 0
        for value in self.column:
            try:
                images.append(self.preprocess(decode(value)))
            except (OSError, ValueError, SyntaxError):
                skipped += 1
        if not images:
            raise DataError(f"none of the {len(self.column)} images could be read: check the files' format")
        if skipped:
            warnings.warn(f"skipped {skipped} unreadable image(s) of {len(self.column)}", UserWarning, stacklevel=3)
        return torch.stack(images), skipped

    def __len__(self) -> int:
        return self.size

    @property
    def device(self) -> torch.device:
        """Where `batch` returns its images: the in-memory tensor's device (see `to`), else the CPU."""
        return self.tensor.device if self.in_memory else torch.device("cpu")

    def to(self, device: torch.device | str) -> ImageData:
        """Keep the in-memory images on `device` (a GPU: each batch is then cut there, with no copy from the host
        a step); streamed data stays on the CPU. Returns self."""
        if self.in_memory:
            self.tensor = self.tensor.to(device)
        return self

    def batch(self, indices: list[int], flip: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """The images at `indices`, mirrored left-right where `flip` is True; random crops (if any) drawn from `seed`."""
        if self.in_memory:
            x = self.tensor[torch.as_tensor(indices, device=self.tensor.device)]
            if x.dtype == torch.uint8:
                x = _unit_table(x.device)[x.long()]
        else:
            rng = np.random.default_rng(seed)
            x = torch.stack([self._load(i, rng) for i in indices])
        if flip is not None and bool(flip.any()):
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def _load(self, i: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Decode one image (streaming mode); an unreadable one is replaced by the next readable one."""
        for k in range(len(self.column)):
            try:
                return self.preprocess(decode(self.column[(i + k) % len(self.column)]), rng)
            except (OSError, ValueError, SyntaxError):
                self.skipped += 1
        raise DataError("no image in the data set could be read")


def is_colour(image: Image.Image) -> bool:
    """Whether an image has colour: a colour mode whose channels differ somewhere (an RGB file of grey pixels is grey)."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return False
    rgb = np.asarray(to_mode(image, 3).resize((min(image.width, 64), min(image.height, 64))), dtype=np.int16)
    return bool(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 2)


def channels_of(images, sample: int = 32) -> int:
    """3 if any of the first `sample` images (dataset cells) has colour, else 1: the data decides, not a default."""
    for value in list(images[:sample]):
        try:
            if is_colour(decode(value)):
                return 3
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable images are skipped (and counted) when the data is decoded
    return 1


def load_training_data(
    preprocess: Preprocess,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | None = None,
    image_column: str | None = None,
    split: str = "train",
    cache_dir: str | None = None,
    data_dir: str | None = None,
    auto_channels: bool = False,
) -> ImageData:
    """The training data, ready for `batch()`: digits and Fashion-MNIST from local arrays when they are here (random
    crops of a resized array still go through the streamed path), everything else through `load_image_dataset`.
    `auto_channels`: the data's own channels (`channels_of`) replace `preprocess.channels`."""
    if data_dir and dataset_name not in FASHION_MNIST_NAMES:
        raise DataError("--data_dir is the folder of Fashion-MNIST's IDX files: use it with --dataset_name fashion_mnist")
    arrays = None if train_data_dir else load_arrays(dataset_name, split, data_dir)
    if arrays is not None:
        if auto_channels:
            preprocess = dataclasses.replace(preprocess, channels=1)  # digits and Fashion-MNIST are grayscale
        if image_column not in (None, "image"):
            raise DataError(f"no column {image_column!r} in the data set: its columns are image, label")
        r = preprocess.resolution
        if preprocess.center_crop or arrays.images.shape[1:] == (r, r):
            return ImageData.from_arrays(arrays, preprocess)
        return ImageData(arrays_dataset(arrays.images, arrays.labels), "image", preprocess)
    ds, column = load_image_dataset(dataset_name, dataset_config_name, train_data_dir, image_column, split, cache_dir)
    if auto_channels:
        from datasets import Image as ImageFeature

        cells = ds.cast_column(column, ImageFeature(decode=False)) if isinstance(ds.features.get(column), ImageFeature) else ds
        preprocess = dataclasses.replace(preprocess, channels=channels_of(cells[column][:32]))
    return ImageData(ds, column, preprocess)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This rank's batches of one epoch: a permutation seeded by (seed, epoch), shared by all ranks, cut into
    global batches of batch_size * world_size, of which rank r takes the r-th slice (per-rank sharding).

    The last incomplete global batch is dropped; if the data set is smaller than one global batch, the
    permutation is repeated so every step still sees a full batch.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    global_batch = batch_size * world_size
    reps = max(1, math.ceil(global_batch / n))
    perm = torch.cat([torch.randperm(n, generator=g) for _ in range(reps)]).tolist()
    batches = []
    for start in range(0, len(perm) - global_batch + 1, global_batch):
        chunk = perm[start : start + global_batch]
        batches.append(chunk[rank * batch_size : (rank + 1) * batch_size])
    return batches


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    return max(1, (max(n, batch_size * world_size)) // (batch_size * world_size))
