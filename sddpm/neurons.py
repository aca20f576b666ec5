"""Multi-step integrate-and-fire (IF) neurons.

The neuron of the paper, in discrete time with dt = 1 (the Lava convention):

.. math::
    v[t] = v[t-1] (1 - s[t-1]) + x[t], \\qquad s[t] = \\Theta(v[t] - v_{th})

so it fires on ``v > v_th`` and resets hard to 0 after a spike (models of the official
SDDPM code fire on ``v >= v_th``: :data:`FIRING_RULES`). Gradients use the
ATan surrogate :math:`\\partial s / \\partial v = (\\alpha/2) / (1 + (\\pi \\alpha v / 2)^2)`
with the reset detached (snnTorch's convention).

Inputs are ``[T*B, ...]`` tensors, the T spiking timesteps fused into the batch
(timestep-major) so that convolutions and batch norms see one big batch; the neuron
unfolds T, carries its membrane across it, and folds the spikes back.

Three backends give the same spikes:

``snntorch``
    the default: ``snntorch.Leaky(beta=1, reset_mechanism="zero")`` with
    ``snntorch.surrogate.atan``, its T-step loop fused into one autograd function
    (forward without a tape, backward through time by hand). It computes the same
    spikes and the same gradients as the step-by-step Leaky loop (tested), at a
    fraction of the memory and time.
``snntorch-loop``
    the literal step-by-step ``snntorch.Leaky`` loop (the reference for the above).
``norse``
    Norse's ``iaf_feed_forward_step``. Its surrogate is SuperSpike (Norse has no
    ATan), so gradients differ; spikes are identical.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sddpm.errors import SddpmError

NEURON_BACKENDS = ("snntorch", "snntorch-loop", "norse")
# ">" is ours, NIR's and Lava's; ">=" is spikingjelly's IFNode, the official SDDPM code's
FIRING_RULES = (">", ">=")


def check_firing_rule(fires_on: str) -> str:
    if fires_on not in FIRING_RULES:
        raise SddpmError(f"unknown firing rule {fires_on!r}; a neuron fires on '>' "
                         "(v > threshold) or '>=' (v >= threshold)")
    return fires_on


def strict_threshold(threshold: float, fires_on: str, dtype: torch.dtype) -> float:
    """The threshold under which ``v > it`` is the rule ``fires_on`` in ``dtype``.

    For ``>=`` it is the largest ``dtype`` value below ``threshold``: between two
    neighbouring floats there is none, so ``v > it`` and ``v >= threshold`` agree on
    every ``v`` of that dtype. Libraries that only compare strictly (snnTorch, Norse,
    NIR, Lava) reproduce the rule with it.
    """
    if check_firing_rule(fires_on) == ">":
        return float(threshold)
    theta = torch.tensor(threshold, dtype=dtype)
    return float(torch.nextafter(theta, torch.tensor(-math.inf, dtype=dtype)))


class _FusedIF(torch.autograd.Function):
    """T steps of the IF neuron as one autograd node; input ``[T, ...]``.

    Saves the membrane potentials before reset and the spikes; the surrogate and
    the output gradient are formed over all T at once, so the per-step loops are
    one to three memory passes each.
    """

    @staticmethod
    def forward(ctx, x, threshold: float, alpha: float, fires_on: str):
        potentials = torch.empty_like(x)
        spikes = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        compare = torch.ge if fires_on == ">=" else torch.gt
        for t in range(x.shape[0]):
            torch.add(v, x[t], out=potentials[t])
            compare(potentials[t], threshold, out=spikes[t])
            v = torch.addcmul(potentials[t], potentials[t], spikes[t], value=-1.0)
        ctx.save_for_backward(potentials, spikes)
        ctx.threshold, ctx.alpha = threshold, alpha
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        potentials, spikes = ctx.saved_tensors
        # the ATan surrogate, in place on one buffer: each step of it is a full pass
        grad_x = potentials - ctx.threshold
        grad_x.mul_(math.pi / 2 * ctx.alpha).square_().add_(1.0).reciprocal_()
        grad_x.mul_(grad_spikes).mul_(ctx.alpha / 2)
        kept = 1.0 - spikes
        # v[t+1] = v[t] (1 - s[t]) + x[t+1], with s[t] detached in the reset
        for t in range(grad_spikes.shape[0] - 2, -1, -1):
            grad_x[t].addcmul_(grad_x[t + 1], kept[t])
        return grad_x, None, None, None


def if_multistep(x: torch.Tensor, threshold: float = 1.0, alpha: float = 2.0,
                 fires_on: str = ">") -> torch.Tensor:
    """Spikes of an IF population over T steps.

    Parameters
    ----------
    x : torch.Tensor
        Input currents ``[T, ...]``.
    threshold : float
        Firing threshold.
    alpha : float
        ATan surrogate sharpness.
    fires_on : str
        ``">"`` (fires on ``v > threshold``) or ``">="``.

    Returns
    -------
    torch.Tensor
        Spikes ``[T, ...]`` in {0, 1}, same dtype as ``x``.
    """
    # no flattening: a channels-last input keeps its layout (a reshape would copy)
    return _FusedIF.apply(x, float(threshold), float(alpha), check_firing_rule(fires_on))


def _snntorch_loop(x: torch.Tensor, threshold: float, alpha: float,
                   fires_on: str = ">") -> torch.Tensor:
    import snntorch
    from snntorch import surrogate

    leaky = snntorch.Leaky(
        beta=1.0,
        threshold=1.0,
        reset_mechanism="zero",
        spike_grad=surrogate.atan(alpha=alpha),
    )
    # snnTorch fires on mem - threshold > 0 and keeps its threshold as a float32 buffer:
    # set in x's dtype, or a float64 model's '>=' threshold would round back up
    leaky.threshold = torch.tensor(strict_threshold(threshold, fires_on, x.dtype),
                                   dtype=x.dtype)
    mem = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        spk, mem = leaky(x[t], mem)
        out.append(spk.to(x.dtype))  # snnTorch's ATan returns float32 spikes
    return torch.stack(out)


def _norse_loop(x: torch.Tensor, threshold: float, alpha: float,
                fires_on: str = ">") -> torch.Tensor:
    from norse.torch.functional.iaf import (
        IAFFeedForwardState,
        IAFParameters,
        iaf_feed_forward_step,
    )

    params = IAFParameters(
        v_th=torch.as_tensor(strict_threshold(threshold, fires_on, x.dtype), dtype=x.dtype),
        v_reset=torch.as_tensor(0.0, dtype=x.dtype),
        method="super",
    )
    state = IAFFeedForwardState(v=torch.zeros_like(x[0]))
    out = []
    for t in range(x.shape[0]):
        spk, state = iaf_feed_forward_step(x[t], state, params)
        out.append(spk)
    return torch.stack(out)


_BACKEND_FUNCTIONS = {
    "snntorch": if_multistep,
    "snntorch-loop": _snntorch_loop,
    "norse": _norse_loop,
}


def check_backend(name: str) -> str:
    if name not in _BACKEND_FUNCTIONS:
        raise SddpmError(
            f"unknown neuron backend {name!r}; expected one of {', '.join(NEURON_BACKENDS)}"
        )
    return name


class MultiStepIF(nn.Module):
    """An IF population over T spiking timesteps, ``[T*B, ...] -> [T*B, ...]`` spikes.

    Parameters
    ----------
    timesteps : int
        Number of spiking timesteps T fused (timestep-major) into the batch dimension.
    threshold : float
        Firing threshold (1.0 in training; see :func:`set_threshold`).
    backend : str
        One of :data:`NEURON_BACKENDS`.
    alpha : float
        ATan surrogate sharpness.
    fires_on : str
        ``">"`` (sddpm's models) or ``">="`` (the official SDDPM code's IFNode).
    """

    def __init__(
        self,
        *,
        timesteps: int,
        threshold: float = 1.0,
        backend: str = "snntorch",
        alpha: float = 2.0,
        fires_on: str = ">",
    ):
        super().__init__()
        self.timesteps = timesteps
        self.threshold = float(threshold)
        self.backend = check_backend(backend)
        self.alpha = alpha
        self.fires_on = check_firing_rule(fires_on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.reshape(self.timesteps, x.shape[0] // self.timesteps, *x.shape[1:])
        spikes = _BACKEND_FUNCTIONS[self.backend](steps, self.threshold, self.alpha,
                                                  self.fires_on)
        return spikes.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"timesteps={self.timesteps}, threshold={self.threshold}, "
                f"fires_on={self.fires_on!r}, backend={self.backend}")


def spiking_layers(model: nn.Module) -> list[MultiStepIF]:
    return [m for m in model.modules() if isinstance(m, MultiStepIF)]


def _check_threshold(value, where: str = "threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise SddpmError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def thresholds_by_population(model: nn.Module, threshold) -> dict:
    """Each IF population's threshold under ``threshold``: a number for all of them, or a
    map from population path patterns to thresholds.

    The map's keys are module paths of the IF populations (``up.3.neuron1``) or
    shell-style patterns over them (``up.*``); a later key overrides an earlier one for
    the populations both match, and populations no key matches keep 1.0, the training
    threshold. A key that matches nothing is an error: a typo must not pass silently.
    """
    from fnmatch import fnmatchcase

    names = [n for n, m in model.named_modules() if isinstance(m, MultiStepIF)]
    if not isinstance(threshold, dict):
        value = _check_threshold(threshold)
        return dict.fromkeys(names, value)
    if not threshold:
        raise SddpmError("the threshold map is empty; give {\"pattern\": threshold, ...}")
    out = dict.fromkeys(names, 1.0)
    for pattern, value in threshold.items():
        value = _check_threshold(value, f"threshold of {pattern!r}")
        matched = [n for n in names if fnmatchcase(n, pattern)]
        if not matched:
            raise SddpmError(f"threshold map key {pattern!r} matches no IF population; they "
                             f"are {', '.join(names[:4])}, ... (patterns such as 'up.*' work)")
        out.update(dict.fromkeys(matched, value))
    return out


def set_threshold(model: nn.Module, threshold) -> None:
    """Threshold guidance: one threshold for every IF neuron of ``model``, or a map from
    population patterns to thresholds (:func:`thresholds_by_population`)."""
    values = thresholds_by_population(model, threshold)
    for name, layer in model.named_modules():
        if isinstance(layer, MultiStepIF):
            layer.threshold = values[name]


def parse_threshold(text: str):
    """``--threshold``'s value: a number, a JSON file holding a map, or an inline map."""
    import json
    from pathlib import Path

    try:
        return _check_threshold(float(text))
    except ValueError:
        pass
    stripped = text.strip()
    if stripped.startswith("{"):
        source, raw = "the inline threshold map", stripped
    else:
        path = Path(text)
        if not path.is_file():
            raise SddpmError(f"--threshold {text!r} is neither a number nor a JSON file; "
                             "give 0.998, a file of {\"up.*\": 0.998}, or that map inline")
        source, raw = str(path), path.read_text()
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SddpmError(f"{source} is not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
        raise SddpmError(f"{source} must hold one JSON object mapping population patterns "
                         "to thresholds")
    for key, value in mapping.items():
        _check_threshold(value, f"threshold of {key!r}")
    return mapping


def set_backend(model: nn.Module, backend: str) -> None:
    """Switch every IF population of ``model`` to another neuron library."""
    check_backend(backend)
    for layer in spiking_layers(model):
        layer.backend = backend
