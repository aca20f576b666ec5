"""The trained models this repository ships, installed as the data package ``sddpm.shipped``.

``README.md`` beside this file says how each one was made. Code finds them through
:func:`shipped_path` only, so a checkout (editable install) and an installed wheel
read the same files: the package's own folder, wherever pip put it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SNN = "fmnist-small-snn.pt"  # the default model of `sddpm demo` and `energy --reproduce-table3`
ANN = "fmnist-small-ann.pt"
CLASSIFIER = "fmnist-classifier.pt"  # the feature extractor of classifier-FID/KID


def shipped_path(name: str) -> Path:
    """The path of a shipped file (it may be absent in a trimmed install: check it)."""
    return Path(str(resources.files(__name__).joinpath(name)))
