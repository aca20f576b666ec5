"""Writing files so that a crash never leaves half of one, and naming a file's bytes.

Every file the project writes (checkpoints, NIR files, bundles, profiles, reports)
goes through :func:`atomic_path`: the writer fills a temporary file in the target's
folder, which is flushed to disk and renamed over the target only when the writer
returned. A kill at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def default_file_mode() -> int:
    """What ``open(path, "w")`` would give: 0o666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` on success.

    >>> with atomic_path("out/model.nir") as tmp:
    ...     nir.write(tmp, graph)

    The parent folder is created. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data on disk before the name points at it
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON (with a final newline) atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def cache_dir() -> Path:
    """Where recomputable results are kept: ``$XDG_CACHE_HOME/sddpm`` (``~/.cache/sddpm``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "sddpm"


def cached_array(name: str, compute: Callable[[], np.ndarray],
                 shape: tuple | None = None) -> np.ndarray:
    """``compute()``, kept in :func:`cache_dir` under ``name`` (``.npy``) for next time.

    A cached file that is absent, unreadable or not of ``shape`` is computed again; a
    cache that cannot be written costs only the recomputation. Saved atomically under a
    name of this process's own, so parallel runs never publish a half-written file.
    """
    path = cache_dir() / name
    try:
        cached = np.load(path)
        if shape is None or cached.shape == tuple(shape):
            return cached
    except (OSError, ValueError):
        pass
    value = np.asarray(compute())
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, value)
    except OSError:
        pass
    return value


def save_figure(fig, path, **savefig_kwargs) -> Path:
    """A matplotlib figure, written atomically in the format its suffix names."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".").lower(), **savefig_kwargs)
    return Path(path)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes as hex, read in blocks (large files welcome)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def readable_file(path, what: str, hint: str) -> Path:
    """``path`` if it is a regular file this process can read, else a one-line error.

    ``what`` names the file (``checkpoint``), ``hint`` says what to give instead. The
    checks run in the order a user would look: missing, a loop of links, a folder,
    something that is not a file, unreadable, empty.
    """
    import errno
    import stat

    from sddpm.errors import SddpmError

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SddpmError(f"{what} {path} does not exist; {hint}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SddpmError(f"{what} {path} is a symlink loop (its links point at each "
                             f"other); {hint}") from None
        raise SddpmError(f"{what} {path} cannot be opened ({e.strerror}); {hint}") from None
    if stat.S_ISDIR(mode):
        raise SddpmError(f"{what} {path} is a directory; {hint}")
    if not stat.S_ISREG(mode):
        raise SddpmError(f"{what} {path} is not a regular file; {hint}")
    if not os.access(path, os.R_OK):
        raise SddpmError(f"{what} {path} cannot be read (permission denied); {hint}")
    if os.stat(path).st_size == 0:
        raise SddpmError(f"{what} {path} is empty; {hint}")
    return path
