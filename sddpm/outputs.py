"""Checking where results will go before the work that fills them."""

from __future__ import annotations

import os
from pathlib import Path

from sddpm.errors import SddpmError


def writable_file(name, suffixes: tuple) -> Path:
    """An output file path with one of ``suffixes``; its folder is created."""
    path = Path(name)
    if path.suffix.lower() not in suffixes:
        raise SddpmError(f"output {name} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise SddpmError(f"output {name} is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise SddpmError(f"cannot write into {path.parent}; choose another output path")
    return path


def writable_folder(name, what: str = "output") -> Path:
    """An output folder, created; ``what`` names it in errors (``--out``, a bundle)."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise SddpmError(f"{what} {name} is a file; give a folder")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise SddpmError(f"cannot write into {name}; choose another {what} folder")
    return path
