"""Training images from local files only: nothing is downloaded at run time.

Every data set becomes an :class:`ImageSet`: ``len()`` images that ``batch(indices)``
returns as float tensors ``[n, C, H, W]`` in [-1, 1] at the preset's size.

- ``fmnist``, ``mnist``: idx files (``train-images-idx3-ubyte`` or ``.gz``), 28x28 padded
  to 32x32. Fashion-MNIST is found automatically in Debian's ``dataset-fashion-mnist``.
- ``cifar10``: the python pickles (``cifar-10-batches-py/data_batch_1..5``).
- ``celeba``, ``lsun``: a folder of images, center-cropped and resized.
- ``digits``: scikit-learn's bundled 8x8 digits, for quick runs.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sddpm.errors import SddpmError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class ImageSet:
    """Images held as uint8 ``[N, C, H, W]`` (or loaded lazily from files)."""

    def __init__(self, images: np.ndarray | None = None, files: list | None = None,
                 image_size: int = 32):
        self.images = images
        self.files = files
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def batch(self, indices) -> torch.Tensor:
        idx = np.asarray(indices)
        if self.images is not None:
            raw = self.images[idx]
        else:
            raw = np.stack([_load_image_file(self.files[i], self.image_size) for i in idx])
        return torch.from_numpy(raw).float().div(127.5).sub(1.0)


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_idx(path: Path, magic_expected: int, what: str) -> np.ndarray:
    """The uint8 array of an idx file (gzipped or not): magic, then one size per axis."""
    ndim = magic_expected & 0xFF
    try:
        with _open_maybe_gz(path) as f:
            header = f.read(4 + 4 * ndim)
            if len(header) < 4 + 4 * ndim:
                raise SddpmError(f"{path} is truncated: no idx header; re-install the data set")
            magic, *shape = struct.unpack(">" + "I" * (1 + ndim), header)
            if magic != magic_expected:
                raise SddpmError(f"{path} is not an idx {what} file (magic {magic}, expected "
                                 f"{magic_expected})")
            data = np.frombuffer(f.read(int(np.prod(shape))), dtype=np.uint8)
    except (OSError, EOFError, zlib.error) as e:
        raise SddpmError(f"cannot read {path}: {e}; re-install or re-download the data set") from None
    if data.size != int(np.prod(shape)):
        raise SddpmError(f"{path} is truncated: {data.size} of {int(np.prod(shape))} {what} bytes")
    return data.reshape(shape)


def read_idx_images(path: Path) -> np.ndarray:
    """Images ``[N, H, W]`` uint8 from an idx3 file (magic 2051), gzipped or not."""
    return _read_idx(path, 2051, "image")


def read_idx_labels(path: Path) -> np.ndarray:
    """Labels ``[N]`` uint8 from an idx1 file (magic 2049), gzipped or not."""
    return _read_idx(path, 2049, "label")


def load_labels(name: str, *, data_dir: str | Path | None = None,
                split: str = "train") -> np.ndarray:
    """Class labels of an idx data set (``fmnist``, ``mnist``), aligned with its images."""
    stem = "train-labels-idx1-ubyte" if split == "train" else "t10k-labels-idx1-ubyte"
    defaults = [DEBIAN_FASHION_MNIST] if name == "fmnist" else []
    path = _find_idx(Path(data_dir) if data_dir else None, stem, defaults)
    if path is None:
        raise SddpmError(f"{name}: no {stem}[.gz] found; install dataset-fashion-mnist or "
                         "pass --data-dir with the idx files")
    return read_idx_labels(path)


def _find_idx(data_dir: Path | None, stem: str, defaults: list) -> Path | None:
    dirs = []
    if data_dir is not None:
        dirs += [data_dir, data_dir / "raw", data_dir / "FashionMNIST" / "raw",
                 data_dir / "MNIST" / "raw"]
    else:
        dirs += defaults
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _idx_set(name: str, data_dir: Path | None, image_size: int, split: str) -> ImageSet:
    stem = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    defaults = [DEBIAN_FASHION_MNIST] if name == "fmnist" else []
    path = _find_idx(data_dir, stem, defaults)
    if path is None:
        where = str(data_dir) if data_dir else "the default locations"
        hint = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
                " or pass --data-dir" if name == "fmnist" else "pass --data-dir DIR")
        raise SddpmError(f"{name}: no {stem}[.gz] in {where}; {hint} with the idx files")
    images = read_idx_images(path)
    pad = (image_size - images.shape[-1]) // 2
    if pad < 0:
        raise SddpmError(f"{name} images are {images.shape[-1]} px, larger than the preset's "
                         f"{image_size}")
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    return ImageSet(images[:, None], image_size=image_size)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses everything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar10_set(data_dir: Path | None, image_size: int, split: str) -> ImageSet:
    if data_dir is None:
        raise SddpmError("cifar10 needs --data-dir DIR holding cifar-10-batches-py "
                         "(the python version of CIFAR-10)")
    root = data_dir / "cifar-10-batches-py" if (data_dir / "cifar-10-batches-py").is_dir() else data_dir
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    arrays = []
    for name in names:
        path = root / name
        if not path.is_file():
            raise SddpmError(f"cifar10: missing {path}; expected the 'python version' "
                             "pickles data_batch_1..5 and test_batch")
        try:
            with open(path, "rb") as f:
                batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
            arrays.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise SddpmError(f"cifar10: {path} is not a CIFAR-10 batch ({e})") from None
    images = np.concatenate(arrays)
    if image_size != 32:
        raise SddpmError(f"cifar10 images are 32 px, the preset wants {image_size}")
    return ImageSet(images, image_size=image_size)


def _load_image_file(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size),
                                                                        Image.BICUBIC)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise SddpmError(f"cannot read image {path} ({e}); remove or replace the file") from None


def _folder_set(name: str, data_dir: Path | None, image_size: int) -> ImageSet:
    if data_dir is None or not data_dir.is_dir():
        raise SddpmError(f"{name} needs --data-dir DIR, a folder of its images (jpg/png)")
    files = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SddpmError(f"{name}: no .jpg/.png images under {data_dir}")
    return ImageSet(files=files, image_size=image_size)


def _digits_set(image_size: int) -> ImageSet:
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().images).float()[:, None] / 16.0  # [N,1,8,8]
    if image_size != 8:
        digits = F.interpolate(digits, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)
    return ImageSet((digits.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
                    image_size=image_size)


DATASETS = ("fmnist", "mnist", "cifar10", "celeba", "lsun", "digits")


def load_dataset(name: str, *, image_size: int, data_dir: str | Path | None = None,
                 split: str = "train") -> ImageSet:
    """Load data set ``name`` (see the module docstring) at ``image_size``."""
    data_dir = Path(data_dir) if data_dir else None
    if data_dir is not None and not data_dir.exists():
        raise SddpmError(f"data directory {data_dir} does not exist")
    if name in ("fmnist", "mnist"):
        return _idx_set(name, data_dir, image_size, split)
    if name == "cifar10":
        return _cifar10_set(data_dir, image_size, split)
    if name in ("celeba", "lsun"):
        return _folder_set(name, data_dir, image_size)
    if name == "digits":
        return _digits_set(image_size)
    raise SddpmError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
