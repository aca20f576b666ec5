"""NIR files of sddpm: standard NIR 1.0.8 plus one extension node, and their reader.

NIR has no nearest-neighbour upsampling. :class:`Upsample2d` (file type
``sddpm.Upsample2d``) is the one extension: ``y[c, i, j] = x[c, i // s, j // s]``. Stock
``nir.read`` rejects a file holding it (its type is not a NIR type); :func:`read_nir`
reads it. A graph without upsampling (a single-level preset) is pure standard NIR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import h5py
import nir
import numpy as np

from sddpm.errors import SddpmError
from sddpm.files import atomic_path

EXTENSION_PREFIX = "sddpm."
FORMAT = "sddpm-nir"
FORMAT_VERSION = 1


@dataclass(eq=False)
class Upsample2d(nir.NIRNode):
    """Nearest-neighbour upsampling of ``[C, H, W]`` by an integer factor per axis.

    .. math::
        y[c, i, j] = x[c, \\lfloor i / s_0 \\rfloor, \\lfloor j / s_1 \\rfloor]
    """

    input_shape: np.ndarray  # (C, H, W)
    scale_factor: np.ndarray  # (s_0, s_1)

    def __post_init__(self):
        self.input_shape = np.asarray(self.input_shape, dtype=np.int64)
        self.scale_factor = np.asarray(self.scale_factor, dtype=np.int64)
        c, h, w = self.input_shape
        self.input_type = {"input": self.input_shape}
        self.output_type = {"output": np.array([c, h * self.scale_factor[0],
                                                w * self.scale_factor[1]])}

    def to_dict(self) -> Dict[str, Any]:
        ret = super().to_dict()
        ret["type"] = EXTENSION_PREFIX + "Upsample2d"
        return ret

    @classmethod
    def from_dict(cls, kwargs: Dict[str, Any]) -> "Upsample2d":
        return cls(input_shape=kwargs["input_shape"], scale_factor=kwargs["scale_factor"],
                   metadata=kwargs.get("metadata", {}))


EXTENSIONS = {EXTENSION_PREFIX + "Upsample2d": Upsample2d}


def write_nir(graph: nir.NIRGraph, path) -> Path:
    """Write ``graph`` atomically; gzip for the weights (every array written is >= 1-d)."""
    with atomic_path(path) as tmp:
        nir.write(tmp, graph, compression="gzip", compression_opts=1)
    return Path(path)


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else value


def read_nir(path) -> nir.NIRGraph:
    """Read an sddpm NIR file, extension nodes included; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SddpmError(f"NIR file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            data = nir.serialization.hdf2dict(f["node"])
        nodes = {}
        for name, node in data["nodes"].items():
            kind = _decode(node["type"])
            if kind.startswith(EXTENSION_PREFIX):
                if kind not in EXTENSIONS:
                    raise SddpmError(f"{path}: node {name} has extension type {kind}, which "
                                     f"this sddpm does not know ({', '.join(EXTENSIONS)})")
                nodes[name] = EXTENSIONS[kind].from_dict(node)
            else:
                nodes[name] = nir.dict2NIRNode({**node, "type": kind})
        edges = [(_decode(a), _decode(b)) for a, b in data["edges"]]
        metadata = data.get("metadata", {})
    except SddpmError:
        raise
    except AssertionError:  # nir's own checks are asserts, the node-type lookup among them
        raise SddpmError(f"{path}: NIR rejects a node (a type NIR 1.0.8 does not know, or "
                         "inconsistent parameter shapes)") from None
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise SddpmError(f"{path} is not a readable NIR file ({type(e).__name__}: {e})") from None
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def firing_rule(graph: nir.NIRGraph) -> str:
    """The model's rule, ``">"`` or ``">="``; NIR's own strict one for a graph of others."""
    if not (isinstance(graph.metadata, dict) and "sddpm" in graph.metadata):
        return ">"
    rule = graph_info(graph).get("fires_on", ">")
    if rule not in (">", ">="):
        raise SddpmError(f"this NIR graph's sddpm metadata names an unknown firing rule "
                         f"{rule!r}; export it again")
    return rule


def model_threshold(graph: nir.NIRGraph, population: str) -> np.ndarray:
    """The model's threshold of an IF node: ``v_threshold``, or for a ``>=`` model the
    float just above it (see :data:`sddpm.export.torch_to_nir.STRICT_FROM_GE`)."""
    v_th = np.asarray(graph.nodes[population].v_threshold)
    if firing_rule(graph) == ">=":
        return np.nextafter(v_th, np.array(np.inf, dtype=v_th.dtype))
    return v_th


def graph_info(graph: nir.NIRGraph) -> dict:
    """The sddpm metadata of a graph (JSON in ``metadata['sddpm']``)."""
    raw = graph.metadata.get("sddpm") if isinstance(graph.metadata, dict) else None
    if raw is None:
        raise SddpmError("this NIR graph was not written by sddpm-export (no 'sddpm' metadata)")
    try:
        info = json.loads(_decode(raw))
    except (json.JSONDecodeError, TypeError) as e:
        raise SddpmError(f"the 'sddpm' metadata of this NIR graph is not JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise SddpmError("the 'sddpm' metadata of this NIR graph is not sddpm-export's")
    if info.get("format_version") != FORMAT_VERSION:
        raise SddpmError(f"this NIR file has sddpm format version {info.get('format_version')}; "
                         f"this sddpm reads {FORMAT_VERSION}: export it again")
    return info
