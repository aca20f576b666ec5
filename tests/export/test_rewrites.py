"""Each rewrite against the torch layers it replaces, in float64."""

import numpy as np
import pytest
import torch
from torch import nn

from sddpm.export.rewrites import (
    compose_pointwise,
    conv_map,
    fold_batchnorm_module,
    split_input_channels,
)


def _run(m, x):
    return nn.functional.conv2d(x, torch.as_tensor(m.weight), torch.as_tensor(m.bias),
                                stride=m.stride, padding=m.padding)


def _random_bn(channels):
    bn = nn.BatchNorm2d(channels).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn


@pytest.mark.parametrize("stride", [1, 2])
def test_fold_batchnorm_equals_conv_then_bn(stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=1).double()
    bn = _random_bn(5)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    folded = fold_batchnorm_module(conv_map(conv), bn)
    with torch.no_grad():
        torch.testing.assert_close(_run(folded, x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_split_input_channels_turns_a_concat_into_fan_in():
    torch.manual_seed(0)
    conv = nn.Conv2d(7, 4, 3, padding=1).double()
    a, b = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 4, 6, 6, dtype=torch.float64)
    parts = split_input_channels(conv_map(conv), [3, 4])
    with torch.no_grad():
        torch.testing.assert_close(_run(parts[0], a) + _run(parts[1], b),
                                   conv(torch.cat([a, b], dim=1)), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="do not add up"):
        split_input_channels(conv_map(conv), [3, 3])


@pytest.mark.parametrize("stride", [1, 2])
def test_compose_pointwise_equals_shortcut_after_conv(stride):
    torch.manual_seed(0)
    inner = nn.Conv2d(3, 5, 3, stride=stride, padding=1).double()
    outer = nn.Conv2d(5, 6, 1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    composed = compose_pointwise(conv_map(outer), conv_map(inner))
    with torch.no_grad():
        torch.testing.assert_close(_run(composed, x), outer(inner(x)), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="1x1"):
        compose_pointwise(conv_map(inner), conv_map(outer))


def test_rewrites_leave_their_inputs_intact():
    conv = conv_map(nn.Conv2d(4, 4, 3, padding=1).double())
    before = conv.weight.copy(), conv.bias.copy()
    fold_batchnorm_module(conv, _random_bn(4))
    split_input_channels(conv, [1, 3])
    compose_pointwise(conv_map(nn.Conv2d(4, 2, 1).double()), conv)
    assert np.array_equal(conv.weight, before[0]) and np.array_equal(conv.bias, before[1])
