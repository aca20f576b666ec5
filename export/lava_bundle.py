"""The Lava deployment bundle: what ``sddpm simulate`` needs, without the checkpoint.

A folder holding ``model.nir`` (the float64 graph with the host side's parameters),
``fixed_point.h5`` (its Loihi integers, see :mod:`sddpm.export.quantize`) and
``manifest.json`` (format, versions of the stack that wrote it, the schedule, and a
SHA-256 of every file). Loading checks all of it before anything runs; a corrupt,
incomplete or version-mismatched bundle is one clear error.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

import nir

from sddpm.errors import SddpmError
from sddpm.export.graph import check_shapes, topological_order
from sddpm.export.latency import balance
from sddpm.export.nir_file import graph_info, read_nir, write_nir
from sddpm.export.quantize import (
    FixedPointNetwork,
    check_against_graph,
    quantize_graph,
    read_fixed_point,
    write_fixed_point,
)
from sddpm.files import file_sha256, write_json

FORMAT = "sddpm-lava-bundle"
FORMAT_VERSION = 2  # 2: fixed-point parameters
GRAPH_FILE = "model.nir"
FIXED_POINT_FILE = "fixed_point.h5"
MANIFEST = "manifest.json"
# what must match between the writer and the reader for the numbers to mean the same
PINNED = ("lava-nc", "nir", "numpy")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def write_bundle(graph: nir.NIRGraph, folder, *, source: dict, weight_bits: int = 8,
                 fixed: FixedPointNetwork | None = None) -> Path:
    """Write the bundle of ``graph`` into ``folder`` (created; files replaced atomically).

    Its fixed-point parameters are ``quantize_graph(graph, weight_bits)``, or ``fixed``
    as given (fine-tuned integers, whose scales are not the graph's maxima any more).
    """
    folder = Path(folder)
    if fixed is None:
        fixed = quantize_graph(graph, weight_bits)  # refuses before anything is written
    else:
        check_against_graph(fixed, graph, "the fine-tuned parameters")
    folder.mkdir(parents=True, exist_ok=True)
    graph_path = write_nir(graph, folder / GRAPH_FILE)
    fixed_path = write_fixed_point(fixed, folder / FIXED_POINT_FILE)
    info = graph_info(graph)
    schedule = balance(graph)
    from sddpm.export.loihi2 import resource_report

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {p: _version(p) for p in ("sddpm", *PINNED, "torch")},
        "source": source,
        "timesteps": info["timesteps"], "model_config": info["model_config"],
        "latency_steps": schedule.latency(),
        "steps_per_forward": schedule.steps_per_forward(info["timesteps"]),
        "fixed_point": {"file": FIXED_POINT_FILE, "weight_bits": fixed.weight_bits,
                        "vth_range": [min(fixed.vth.values()), max(fixed.vth.values())]},
        "files": {path.name: {"sha256": file_sha256(path), "bytes": path.stat().st_size}
                  for path in (graph_path, fixed_path)},
        "loihi2_resources": resource_report(graph, schedule=schedule),
    }
    write_json(folder / MANIFEST, manifest)
    return folder


def _check_manifest_fields(folder: Path, manifest: dict) -> None:
    kinds = {"versions": dict, "files": dict, "source": dict, "model_config": dict,
             "timesteps": int}
    for key, kind in kinds.items():
        if not isinstance(manifest.get(key), kind):
            raise SddpmError(f"bundle {folder}: manifest field {key!r} is missing or not a "
                             f"{kind.__name__}; the bundle is damaged, write it again")
    for name, entry in manifest["files"].items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise SddpmError(f"bundle {folder}: manifest names the file {name!r}; only plain "
                             "names inside the bundle are allowed")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise SddpmError(f"bundle {folder}: manifest entry of {name} has no sha256")


def load_bundle(folder) -> tuple[nir.NIRGraph, dict]:
    """The graph and manifest of a bundle, every check passed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SddpmError(f"bundle {folder} is not a folder; write one with "
                         "'sddpm-export --to lava CKPT -o DIR'")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise SddpmError(f"bundle {folder} has no {MANIFEST}; it is incomplete, write it "
                         "again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SddpmError(f"{folder / MANIFEST} is not valid JSON ({e}); the bundle is "
                         "damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SddpmError(f"{folder} is not an sddpm Lava bundle (manifest format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else '?'})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SddpmError(f"bundle {folder} has format version {manifest.get('format_version')}"
                         f"; this sddpm reads {FORMAT_VERSION}: export it again")
    _check_manifest_fields(folder, manifest)
    mismatched = [f"{p} {manifest['versions'].get(p)} (here {_version(p)})"
                  for p in PINNED if manifest["versions"].get(p) != _version(p)]
    if mismatched:
        raise SddpmError(f"bundle {folder} was written with {', '.join(mismatched)}; "
                         "export it again with this installation")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise SddpmError(f"bundle {folder} lacks {name}; it is incomplete, write it again")
        if file_sha256(path) != entry.get("sha256"):
            raise SddpmError(f"{path} does not match its checksum in the manifest; the "
                             "bundle is corrupt, write it again")
    if GRAPH_FILE not in manifest["files"]:
        raise SddpmError(f"bundle {folder}: the manifest lists no {GRAPH_FILE}")
    graph = read_nir(folder / GRAPH_FILE)
    topological_order(graph)  # every edge between nodes that exist, no cycle
    check_shapes(graph)
    info = graph_info(graph)
    if (info["timesteps"], info["model_config"]) != (manifest["timesteps"],
                                                     manifest["model_config"]):
        raise SddpmError(f"bundle {folder}: the manifest's T or model config differs from the "
                         "graph's; the bundle is damaged, write it again")
    return graph, manifest


def load_fixed_point(folder, graph: nir.NIRGraph, manifest: dict) -> FixedPointNetwork:
    """The bundle's fixed-point parameters (its checks passed in :func:`load_bundle`)."""
    entry = manifest.get("fixed_point")
    if (not isinstance(entry, dict) or not isinstance(entry.get("file"), str)
            or entry["file"] not in manifest["files"]):
        raise SddpmError(f"bundle {folder} lists no fixed-point parameters; the bundle is "
                         "damaged, write it again")
    fixed = read_fixed_point(Path(folder) / entry["file"], graph)
    if entry.get("weight_bits") != fixed.weight_bits:
        raise SddpmError(f"bundle {folder}: the manifest says {entry.get('weight_bits')}-bit "
                         f"weights, {entry['file']} holds {fixed.weight_bits}; the bundle is "
                         "damaged, write it again")
    return fixed
