import gzip

import numpy as np
import pytest
import torch
from helpers import DEVICES
from PIL import Image

from ddpm.data import (
    FASHION_MNIST_DIR,
    DataError,
    ImageData,
    Preprocess,
    digits_dataset,
    digits_split_indices,
    epoch_batches,
    fashion_mnist_arrays,
    load_arrays,
    load_image_dataset,
    load_training_data,
    read_idx,
    steps_per_epoch,
)


def test_digits_are_bundled_split_and_scaled_to_minus_one_one():
    ds = digits_dataset()
    assert len(ds) == 1437 and set(ds.column_names) == {"image", "label"}
    data = ImageData(ds, "image", Preprocess(16, 1))
    assert data.in_memory and data.tensor.shape == (1437, 1, 16, 16)
    assert data.tensor.min() == -1 and data.tensor.max() == 1
    train, test = digits_split_indices("train"), digits_split_indices("test")
    assert len(test) == 360 and not set(train) & set(test) and len(digits_split_indices("all")) == 1797
    assert np.bincount(digits_dataset("test")["label"]).min() >= 35  # stratified: every class held out
    with pytest.raises(DataError, match="splits train, test and all"):
        digits_split_indices("validation")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "CMYK", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_input_mode_becomes_the_requested_channels(mode, channels):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16))
        assert image.mode.startswith("I;16")
    else:
        image = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert(mode)
    x = Preprocess(12, channels)(image)
    assert x.shape == (channels, 12, 12) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_sixteen_bit_keeps_its_range():
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    x = Preprocess(16, 1)(Image.fromarray(ramp))
    assert x[0, 0, 0] == -1 and x[0, 0, -1] == 1  # not clipped to white as a plain convert("L") would


def test_resize_and_center_crop_a_wide_image():
    a = np.zeros((10, 30), dtype=np.uint8)
    a[:, 10:20] = 255  # the middle third is white
    x = Preprocess(10, 1)(Image.fromarray(a))
    assert x.shape == (1, 10, 10) and (x == 1).all()


def test_image_folder_skips_unreadable_files_with_a_count(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    ds, column = load_image_dataset(train_data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        data = ImageData(ds, column, Preprocess(8, 3))
    assert len(data) == 3 and data.skipped == 1


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        load_image_dataset(train_data_dir=str(tmp_path))
    with pytest.raises(DataError, match="not a folder"):
        load_image_dataset(train_data_dir=str(tmp_path / "missing"))
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"junk")
    ds, column = load_image_dataset(train_data_dir=str(tmp_path))
    with pytest.raises(DataError, match="none of the 2 images could be read"):
        ImageData(ds, column, Preprocess(8, 1))


def test_streaming_mode_gives_the_same_batches():
    ds = digits_dataset().select(range(40))
    mem, stream = ImageData(ds, "image", Preprocess(8, 1)), ImageData(ds, "image", Preprocess(8, 1), in_memory=False)
    flip = torch.tensor([True, False, True])
    assert torch.equal(mem.batch([3, 1, 39], flip), stream.batch([3, 1, 39], flip))
    assert torch.equal(mem.batch([5], torch.tensor([True]))[0], mem.batch([5])[0].flip(-1))


@pytest.mark.parametrize("device", DEVICES)
def test_in_memory_images_moved_to_a_device_give_the_same_batches_there(device, tmp_path):
    """`ImageData.to(device)` (the training loop does it on a GPU) cuts each batch on that device, with the numbers
    the CPU gives, for float images (digits) and uint8 ones (Fashion-MNIST) alike; streamed data stays on the CPU."""
    flip = torch.tensor([True, False, True])
    digits = ImageData(digits_dataset().select(range(40)), "image", Preprocess(8, 1))
    fashion = load_training_data(Preprocess(28, 1), "fashion_mnist", data_dir=str(small_fashion_dir(tmp_path)))
    for data in (digits, fashion):
        on_cpu = data.batch([3, 1, 9], flip)
        assert data.to(device) is data and data.device.type == device
        there = data.batch([3, 1, 9], flip)
        assert there.device.type == device and torch.equal(there.cpu(), on_cpu)
    stream = ImageData(digits_dataset().select(range(4)), "image", Preprocess(8, 1), in_memory=False)
    assert stream.to(device).device.type == "cpu" and stream.batch([0, 1]).device.type == "cpu"


def test_epoch_batches_shard_the_data_across_ranks():
    n, b, world = 50, 4, 3
    ranks = [epoch_batches(n, b, epoch=2, seed=0, rank=r, world_size=world) for r in range(world)]
    assert all(len(r) == steps_per_epoch(n, b, world) == 4 for r in ranks)
    seen = [i for r in ranks for batch in r for i in batch]
    assert len(seen) == len(set(seen)) == 48  # disjoint, the incomplete last global batch dropped
    assert epoch_batches(n, b, 2, 0, 1, world) == ranks[1]  # a pure function of (seed, epoch, rank)
    assert epoch_batches(n, b, 3, 0, 1, world) != ranks[1]
    tiny = epoch_batches(3, 8, 0, 0)  # fewer images than a batch: still full batches
    assert len(tiny) == 1 and len(tiny[0]) == 8


def test_random_crops_vary_with_the_seed_and_repeat_with_it(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):  # wide images: resized to 12 x 6, a 6 x 6 window can move sideways
        Image.fromarray(rng.integers(0, 255, (10, 20), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds, column = load_image_dataset(train_data_dir=str(tmp_path))
    data = ImageData(ds, column, Preprocess(6, 1, center_crop=False))
    assert not data.in_memory  # cut fresh at every step
    a, b = data.batch([0, 1, 2, 3], seed=1), data.batch([0, 1, 2, 3], seed=2)
    assert a.shape == (4, 1, 6, 6) and not torch.equal(a, b)
    assert torch.equal(a, data.batch([0, 1, 2, 3], seed=1))


def test_dataset_name_loads_a_dataset_repo_layout(tmp_path):
    """--dataset_name goes through datasets.load_dataset; here on a local repo folder (parquet), as the Hub serves."""
    (tmp_path / "data").mkdir()
    digits_dataset("test").rename_column("image", "picture").to_parquet(str(tmp_path / "data" / "train.parquet"))
    ds, column = load_image_dataset(dataset_name=str(tmp_path))
    assert column == "picture" and len(ds) == 360
    assert ImageData(ds, column, Preprocess(8, 1)).tensor.shape == (360, 1, 8, 8)
    with pytest.raises(DataError, match="could not load dataset"):
        load_image_dataset(dataset_name=str(tmp_path / "nope"))


# --------------------------------------------------------------------- Fashion-MNIST (IDX files)
def write_idx(path, array: np.ndarray, *, magic: bytes | None = None, cut: int = 0):
    """An IDX file as MNIST ships it (gzipped when the name ends in .gz); `magic` replaces the first 4 bytes."""
    header = (magic or bytes([0, 0, 0x08, array.ndim])) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    path.write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)
    return path


def small_fashion_dir(folder, n=12, seed=0):
    rng = np.random.default_rng(seed)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


@pytest.mark.parametrize("name", ["x.gz", "x"])
def test_idx_reader_reads_what_was_written(tmp_path, name):
    a = np.random.default_rng(1).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, a)), a)
    labels = np.array([9, 0, 3], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, labels)), labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cut": 10}, r"bad.gz: the header says 3x28x28 = 2352 bytes, the file holds 2342"),
        ({"magic": b"\x89PNG"}, r"bad.gz: not an IDX file"),
        ({"magic": bytes([0, 0, 0x0D, 3])}, r"bad.gz: IDX data type 0x0d, expected 0x08"),
        ({"cut": 2360}, r"bad.gz: IDX header is cut short"),
    ],
)
def test_idx_reader_names_the_file_and_what_is_wrong(tmp_path, kwargs, message):
    write_idx(tmp_path / "bad.gz", np.zeros((3, 28, 28)), **kwargs)
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08 truncated gzip")
    with pytest.raises(DataError, match="bad.gz: cannot read it"):
        read_idx(tmp_path / "bad.gz")


def test_fashion_mnist_from_a_data_dir_stays_uint8_and_scales_like_preprocess(tmp_path):
    folder = small_fashion_dir(tmp_path)
    data = load_training_data(Preprocess(28, 1), "fashion_mnist", data_dir=str(folder))
    assert data.tensor.dtype == torch.uint8 and data.tensor.shape == (12, 1, 28, 28)
    images, labels = fashion_mnist_arrays("test", folder)
    assert labels.tolist() == [i % 10 for i in range(12)]
    by_pil = torch.stack([Preprocess(28, 1)(Image.fromarray(a)) for a in read_idx(folder / "train-images-idx3-ubyte.gz")[[4, 7]]])
    assert torch.equal(data.batch([4, 7]), by_pil)  # the fast path gives the numbers of the general one
    resized = load_training_data(Preprocess(16, 1), "zalando-datasets/fashion_mnist", data_dir=str(folder))
    assert resized.tensor.shape == (12, 1, 16, 16) and resized.tensor.dtype == torch.float32


def test_fashion_mnist_data_dir_errors(tmp_path):
    with pytest.raises(DataError, match="does not hold train-images-idx3-ubyte"):
        load_training_data(Preprocess(28, 1), "fashion_mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="use it with --dataset_name fashion_mnist"):
        load_training_data(Preprocess(28, 1), "digits", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="splits train and test"):
        fashion_mnist_arrays("validation", small_fashion_dir(tmp_path))


def test_debians_fashion_mnist_is_read_offline():
    """The real files of Debian's dataset-fashion-mnist (installed by .ci/run): the original 60,000 / 10,000."""
    assert FASHION_MNIST_DIR.is_dir(), "install Debian's dataset-fashion-mnist (bash .ci/run does)"
    train, test = load_arrays("fashion_mnist", "train"), load_arrays("fashion_mnist", "test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.images.max() == 255 and train.images.min() == 0
    data = load_training_data(Preprocess(28, 1), "fashion_mnist")
    assert len(data) == 60000 and data.tensor.dtype == torch.uint8  # one tensor in memory, 47 MB


def test_held_out_images_are_refused_when_they_unpack_too_large(tmp_path):
    """A few kB of .npz can claim gigabytes: what numpy would allocate is read from the headers, nothing more."""
    import io
    import zipfile

    from ddpm.data import DataError, LabelledArrays, load_held_out, save_held_out

    small = LabelledArrays(np.zeros((20, 8, 8), np.uint8), np.arange(20) % 2, ("a", "b"))
    assert load_held_out(save_held_out(tmp_path / "ok.npz", small)).images.shape == (20, 8, 8)
    many = LabelledArrays(np.zeros((20_000, 28, 28), np.uint8), np.zeros(20_000, np.int64), ("a",))
    path = save_held_out(tmp_path / "many.npz", many)
    with pytest.raises(DataError, match=r"many.npz unpacks to 1\d MB; at most 1 MB is read"):
        load_held_out(path, max_bytes=2**20)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**10, 28, 28)})
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as z:  # a header that asks numpy for 7.8 TB, 20 bytes behind it
        z.writestr("images.npy", header.getvalue() + b"\0" * 20)
    with pytest.raises(DataError, match="forged.npz unpacks to 7\\d{6} MB"):
        load_held_out(tmp_path / "forged.npz")
