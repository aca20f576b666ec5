"""Rows of a sweep: kept atomically as JSON (so a stopped sweep resumes) and as CSV."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path


def load_rows(path) -> list:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else []


def save_rows(path, rows: list) -> None:
    """Replace ``path`` in one step: a kill never leaves half a table."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(rows, indent=2) + "\n")
    partial.replace(path)


def write_csv(path, rows: list, keys: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
