import gzip
import pickle
import struct

import numpy as np
import pytest

from sddpm.data import DEBIAN_FASHION_MNIST, load_dataset, read_idx_images
from sddpm.errors import SddpmError


def _write_idx(path, images, magic=2051, compress=False):
    n, h, w = images.shape
    data = struct.pack(">IIII", magic, n, h, w) + images.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_images_padded_to_32_and_scaled(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    _write_idx(tmp_path / name, images, compress=compress)
    data = load_dataset("mnist", image_size=32, data_dir=tmp_path)
    batch = data.batch([0, 4])
    assert len(data) == 5 and batch.shape == (2, 1, 32, 32)
    assert batch[:, :, :2].eq(-1).all()  # the padding is black
    assert np.allclose((batch[1, 0, 2:30, 2:30].numpy() + 1) * 127.5, images[4], atol=1e-3)


def test_malformed_idx_files(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)), magic=2049)
    with pytest.raises(SddpmError, match="magic"):
        load_dataset("mnist", image_size=32, data_dir=tmp_path)
    (tmp_path / "t.idx").write_bytes(struct.pack(">IIII", 2051, 10, 28, 28) + b"\0" * 100)
    with pytest.raises(SddpmError, match="truncated"):
        read_idx_images(tmp_path / "t.idx")


def test_missing_data_sets_say_how_to_get_them(tmp_path):
    with pytest.raises(SddpmError, match="--data-dir"):
        load_dataset("mnist", image_size=32, data_dir=tmp_path)
    with pytest.raises(SddpmError, match="cifar-10-batches-py"):
        load_dataset("cifar10", image_size=32)
    with pytest.raises(SddpmError, match="does not exist"):
        load_dataset("celeba", image_size=64, data_dir=tmp_path / "nope")


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_found_automatically():
    train = load_dataset("fmnist", image_size=32)
    test = load_dataset("fmnist", image_size=32, split="test")
    assert (len(train), len(test)) == (60000, 10000)
    x = train.batch(range(256))
    assert x.min() == -1 and x.max() == 1 and 0.2 < (x > -1).float().mean() < 0.8


def test_cifar10_pickles_and_a_refused_payload(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        batch = {b"data": np.full((2, 3072), i, dtype=np.uint8), b"labels": [0, 1]}
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar10", image_size=32, data_dir=tmp_path)
    assert len(data) == 10 and data.batch([9]).shape == (1, 3, 32, 32)

    class Evil:
        def __reduce__(self):
            return (print, ("payload ran",))

    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(SddpmError, match="not a CIFAR-10 batch"):
        load_dataset("cifar10", image_size=32, data_dir=tmp_path)


def test_image_folder_center_crop_resize(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    # 120 x 60: a red 30-px band left and right, green in the centre square
    wide = np.zeros((60, 120, 3), dtype=np.uint8)
    wide[:, :30, 0] = wide[:, 90:, 0] = 255
    wide[:, 30:90, 1] = 255
    Image.fromarray(wide).save(tmp_path / "sub" / "a.png")
    Image.new("RGB", (40, 80), (0, 0, 255)).save(tmp_path / "b.png")
    data = load_dataset("celeba", image_size=64, data_dir=tmp_path)
    x = data.batch([1, 0])  # sorted paths: b.png, sub/a.png; so x[0] is a.png
    assert x.shape == (2, 3, 64, 64)
    assert (x[0, 1] == 1).all() and (x[0, 0] == -1).all()  # only the green centre is kept
    assert (x[1, 2] == 1).all() and (x[1, :2] == -1).all()  # channel order is RGB


def test_corrupt_image_and_gzip_files(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    data = load_dataset("lsun", image_size=64, data_dir=tmp_path)
    with pytest.raises(SddpmError, match="broken.jpg"):
        data.batch([0])
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:-12] + b"junkjunkjunk")
    with pytest.raises(SddpmError, match="cannot read|truncated|magic"):
        load_dataset("mnist", image_size=32, data_dir=tmp_path)


def test_digits_bundled():
    data = load_dataset("digits", image_size=8)
    assert len(data) == 1797 and data.batch([0]).shape == (1, 1, 8, 8)
