"""The project's Conv process model computes what Lava's own Conv model computes.

Lava's model calls ``lava.proc.conv.utils.conv`` (then, in ``fixed_pt``, its 24-bit
``signed_clamp``) every step; :class:`SpikeConv` must give the same numbers through
either of its products, on any shape the exports use and beyond: integers bit for bit,
floats within 1e-12 of the output's scale (only the order of additions differs). The
Lava runs then swap the two models under one network and compare every step.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lava.proc.conv import utils

from sddpm.export.lava_conv.kernel import ConvGeometry, SpikeConv, signed_clamp


@st.composite
def conv_cases(draw):
    kernel = draw(st.sampled_from([1, 2, 3]))
    stride = draw(st.sampled_from([1, 2]))
    padding = draw(st.sampled_from([0, 1]))
    w = draw(st.integers(max(1, kernel - 2 * padding), 9))
    h = draw(st.integers(max(1, kernel - 2 * padding), 9))
    c_in, c_out = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    density = draw(st.sampled_from([0.0, 0.03, 0.3, 1.0]))
    seed = draw(st.integers(0, 2 ** 31))
    return kernel, stride, padding, (w, h, c_in), c_out, density, seed


def _case(kernel, stride, padding, shape, c_out, density, seed, integer):
    rng = np.random.default_rng(seed)
    weight_shape = (c_out, kernel, kernel, shape[2])
    # integers large enough that some sums leave the 24-bit range and must wrap as Lava's
    weight = (rng.integers(-2 ** 21, 2 ** 21, weight_shape).astype(np.int32) if integer
              else rng.normal(size=weight_shape))
    spikes = (rng.random(shape) < density).astype(np.int32 if integer else np.float64)
    geometry = ConvGeometry(shape, (kernel, kernel), (stride, stride), (padding, padding),
                            c_out)
    lava = utils.conv(spikes.astype(bool), weight, (kernel, kernel), (stride, stride),
                      (padding, padding), (1, 1), 1)
    return weight, spikes, geometry, lava


@settings(max_examples=150, deadline=None, derandomize=True)
@given(conv_cases())
def test_both_products_equal_lavas_float_conv(case):
    weight, spikes, geometry, lava = _case(*case, integer=False)
    conv = SpikeConv(weight, geometry)
    scale = max(np.abs(lava).max(), 1.0)
    for product in (conv.dense, conv.events, conv):
        ours = product(spikes)
        assert ours.shape == lava.shape == geometry.output_shape
        assert np.abs(ours - lava).max() <= 1e-12 * scale


@settings(max_examples=150, deadline=None, derandomize=True)
@given(conv_cases())
def test_both_products_equal_lavas_fixed_point_conv_bit_for_bit(case):
    weight, spikes, geometry, lava = _case(*case, integer=True)
    expected = utils.signed_clamp(lava, bits=24)
    conv = SpikeConv(weight, geometry)
    for product in (conv.dense, conv.events, conv):
        ours = signed_clamp(product(spikes).astype(np.int32), bits=24)
        assert ours.dtype == expected.dtype and np.array_equal(ours, expected)


@pytest.mark.parametrize("high, dtype", [(128, np.float32), (2 ** 18, np.float64)])
def test_loihis_8_bit_kernels_are_summed_in_float32_larger_ones_in_float64(high, dtype):
    rng = np.random.default_rng(1)
    weight = rng.integers(-high, high, (8, 3, 3, 300)).astype(np.int32)
    geometry = ConvGeometry((5, 5, 300), (3, 3), (1, 1), (1, 1), 8)
    conv = SpikeConv(weight, geometry)
    assert conv.dtype == dtype
    spikes = np.ones((5, 5, 300))  # every tap: the largest partial sums there are
    lava = utils.conv(spikes.astype(bool), weight, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    for product in (conv.dense, conv.events):
        assert np.array_equal(product(spikes).astype(np.int32), lava.astype(np.int32))


def test_the_cost_model_picks_events_for_sparse_input_and_blas_for_dense():
    geometry = ConvGeometry((16, 16, 64), (3, 3), (1, 1), (1, 1), 64)
    conv = SpikeConv(np.ones((64, 3, 3, 64)), geometry)
    assert conv.choose(10) == "events"
    assert conv.choose(16 * 16 * 64 // 2) == "dense"
    conv(np.zeros((16, 16, 64)))
    conv(np.ones((16, 16, 64)))
    assert conv.calls == {"events": 1, "dense": 1}


def test_a_kernel_that_does_not_fit_the_geometry_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        SpikeConv(np.ones((4, 3, 3, 2)), ConvGeometry((5, 5, 3), (3, 3), (1, 1), (1, 1), 4))


def _run_lava_conv(conv_model, tag, weight, frames, shape, stride, padding):
    """One Conv fed ``frames`` [steps, W, H, C] from a source, its output recorded."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from sddpm.export.lava_conv.models import fast_conv_models
    from sddpm.export.nir_to_lava import prepare_lava_import

    prepare_lava_import()
    steps = frames.shape[0]
    source = Source(data=np.moveaxis(frames, 0, -1))
    conv = Conv(weight=weight, input_shape=shape, padding=padding, stride=stride)
    sink = Sink(shape=conv.output_shape, buffer=steps)
    source.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    models = fast_conv_models(tag) if conv_model == "fast" else {}
    sink.run(condition=RunSteps(num_steps=steps),
             run_cfg=Loihi2SimCfg(select_tag=tag, exception_proc_model_map=models))
    try:
        return np.moveaxis(sink.data.get(), -1, 0)
    finally:
        sink.stop()


@pytest.mark.slow  # two compiled Lava networks per precision
@pytest.mark.parametrize("tag", ["floating_pt", "fixed_pt"])
def test_lavas_conv_process_gives_the_same_stream_with_either_model(tag):
    rng = np.random.default_rng(3)
    shape, c_out, stride, padding = (7, 6, 5), 4, (2, 1), (1, 0)
    integer = tag == "fixed_pt"
    weight = (rng.integers(-128, 128, (c_out, 3, 3, shape[2])) if integer
              else rng.normal(size=(c_out, 3, 3, shape[2])))
    # sparse steps, dense steps and an empty one, so both products run inside Lava
    density = np.array([0.02, 0.6, 0.0, 0.05, 1.0, 0.3])[:, None, None, None]
    frames = (rng.random((6, *shape)) < density).astype(float)
    stock, fast = (_run_lava_conv(m, tag, weight, frames, shape, stride, padding)
                   for m in ("lava", "fast"))
    assert stock.shape == fast.shape and np.abs(stock).sum() > 0
    if integer:
        assert np.array_equal(stock, fast)
    else:
        assert np.abs(stock - fast).max() <= 1e-12 * np.abs(stock).max()
