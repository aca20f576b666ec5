"""Rows of a sweep: kept atomically as JSON (so a stopped sweep resumes) and as CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sddpm.files import atomic_path, write_json


def load_rows(path) -> list:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else []


def save_rows(path, rows: list) -> None:
    """Replace ``path`` in one step: a kill never leaves half a table."""
    write_json(path, rows)


def write_csv(path, rows: list, keys: list) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
