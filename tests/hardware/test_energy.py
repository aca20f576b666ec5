import numpy as np
import pytest
import torch

from sddpm.diffusion import GaussianDiffusion
from sddpm.errors import SddpmError
from sddpm.hardware.energy import energy_report
from sddpm.hardware.hardware_costs import available_hardware, load_hardware_costs
from sddpm.hardware.profiler import ActivityProfiler, profile_sampling
from sddpm.hardware.spike_profile import Population, SpikeProfile, SynapticLayer
from sddpm.models import build_model, count_macs
from sddpm.neurons import MultiStepIF, set_threshold
from sddpm.presets import get_preset


def _profile(arch="snn", threshold=None, steps=3):
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, arch).eval()
    if threshold is not None:
        set_threshold(model, threshold)
    profile, _ = profile_sampling(model, GaussianDiffusion(config.diffusion_steps), config,
                                  n=2, sampler="ddim", steps=steps, progress=False,
                                  meta={"arch": arch})
    return model, config, profile


@pytest.fixture(scope="module")
def snn():
    return _profile()


def test_no_spikes_means_no_ac_energy():
    _, _, silent = _profile(threshold=1e9)
    spike_layers = [i for i, l in enumerate(silent.layers) if l.binary_input]
    assert spike_layers and np.all(silent.input_rate[:, spike_layers] == 0)
    strict = energy_report(silent, load_hardware_costs("45nm-fp32"), "strict")
    assert strict.ac_mj == 0 and strict.mac_mj > 0
    paper = energy_report(silent, load_hardware_costs("45nm-fp32"), "paper")
    assert all(paper.layers[i].energy_mj == 0 for i in spike_layers)
    # no estimate, no events: no gap between them either
    assert all(paper.layers[i].event_gap == 0 for i in spike_layers)


@pytest.mark.parametrize("hardware", available_hardware())
def test_strict_is_never_below_paper(snn, hardware):
    _, _, profile = snn
    hw = load_hardware_costs(hardware)
    paper, strict = energy_report(profile, hw, "paper"), energy_report(profile, hw, "strict")
    assert np.all(strict.per_step_mj >= paper.per_step_mj)
    if hw.mac_pj > hw.ac_pj:  # analog-input layers cost MACs in strict
        assert strict.per_forward_mj > paper.per_forward_mj


def _hand_made_profile() -> SpikeProfile:
    """Four layers, T = 2, two denoising steps, rates chosen by hand."""
    def layer(name, kind, macs, per_timestep, binary):
        return SynapticLayer(name, kind, (1,), (1,), (1,), macs, per_timestep, binary)

    layers = [layer("encoder.conv1", "conv2d", 100, False, False),  # on the analog image
              layer("block.conv", "conv2d", 1000, True, True),  # reads spikes
              layer("block.shortcut", "conv2d", 50, True, False),  # reads the analog stream
              layer("temb.linear", "linear", 20, False, False)]  # once per forward
    rates = np.array([[[1, 1], [0.1, 0.3], [1.0, 0.5], [1, 1]],
                      [[1, 1], [0.2, 0.2], [0.8, 0.8], [0.5, 0.5]]])
    return SpikeProfile(layers=layers, populations=[Population("block.neuron", 10)],
                        timesteps=2, diffusion_t=np.array([900, 100]), input_rate=rates,
                        # padding makes the conv's exact events fewer than its estimate
                        exact_events=np.array([[100, 300, 75, 20], [100, 300, 80, 10]]),
                        population_rate=np.array([[[0.1, 0.3]], [[0.2, 0.2]]]),
                        meta={"arch": "snn"})


def test_both_conventions_on_a_hand_made_profile():
    profile = _hand_made_profile()
    fp32 = load_hardware_costs("45nm-fp32")
    # paper: the first conv 100 MACs x 4.6 pJ; every other layer 0.9 pJ per SOP, with
    # SOPs = sum over T of rate x MACs (once-per-forward layers: the one rate x MACs):
    #   step 900: 460 + 0.9 (0.4 * 1000 + 1.5 * 50 + 1.0 * 20) = 905.5 pJ
    #   step 100: 460 + 0.9 (0.4 * 1000 + 1.6 * 50 + 0.5 * 20) = 901.0 pJ
    paper = energy_report(profile, fp32, "paper")
    np.testing.assert_allclose(paper.per_step_mj, [905.5e-9, 901.0e-9], rtol=1e-12)
    assert paper.per_image_mj == pytest.approx(1806.5e-9, rel=1e-12)
    assert paper.per_forward_mj == pytest.approx(903.25e-9, rel=1e-12)
    assert [l.op for l in paper.layers] == ["MAC", "AC", "AC", "AC"]
    assert [l.input for l in paper.layers] == ["analog", "spikes", "analog", "analog"]
    # per layer, the mean over the two steps: 460, 0.9 * 400, 0.9 * 77.5, 0.9 * 15 pJ
    np.testing.assert_allclose([l.energy_mj for l in paper.layers],
                               [460e-9, 360e-9, 69.75e-9, 13.5e-9], rtol=1e-12)
    # exact events against the estimate: the conv meets 300 of its 400 estimated SOPs
    assert [l.event_gap for l in paper.layers] == pytest.approx([0, -0.25, 0, 0])
    assert energy_report(profile, fp32).per_step_mj.tolist() == paper.per_step_mj.tolist()
    # strict: analog inputs cost every dense MAC (the shortcut runs T = 2 times):
    #   460 + 0.9 * 400 + 4.6 * 100 + 4.6 * 20 = 1372 pJ at both steps
    strict = energy_report(profile, fp32, "strict")
    np.testing.assert_allclose(strict.per_step_mj, [1372e-9, 1372e-9], rtol=1e-12)
    assert [l.op for l in strict.layers] == ["MAC", "AC", "MAC", "MAC"]
    assert strict.mac_mj == pytest.approx(1012e-9) and strict.ac_mj == pytest.approx(360e-9)
    # Loihi, strict: 23.6 pJ per event (100 + 400 + 100 + 20) plus neuron updates,
    # 10 neurons x 2 timesteps of which 4 fire: 4 x 81 + 16 x 52 pJ
    loihi = energy_report(profile, load_hardware_costs("loihi1"), "strict")
    np.testing.assert_allclose(loihi.per_step_mj, [(620 * 23.6 + 1156) * 1e-9] * 2,
                               rtol=1e-12)
    assert loihi.neuron_mj == pytest.approx(1156e-9, rel=1e-12)


def test_the_report_as_json(tmp_path):
    d = energy_report(_hand_made_profile(), load_hardware_costs("loihi1"), "strict").to_dict()
    assert (d["hardware"], d["convention"], d["arch"], d["timesteps"]) == (
        "loihi1", "strict", "snn", 2)
    assert d["denoising_steps"] == 2 and d["profile"] == {"arch": "snn"}
    assert d["energy_per_image_mJ"] == pytest.approx(2 * d["energy_per_forward_mJ"])
    assert d["energy_per_forward_mJ"] == pytest.approx((620 * 23.6 + 1156) * 1e-9)
    assert d["breakdown_per_forward_mJ"] == pytest.approx(
        {"mac": 220 * 23.6e-9, "ac": 400 * 23.6e-9, "neuron": 1156e-9})
    assert [s["t"] for s in d["per_step"]] == [900, 100]
    assert d["per_step"][0]["energy_mJ"] == pytest.approx(d["energy_per_forward_mJ"])
    assert [l["name"] for l in d["layers"]] == ["encoder.conv1", "block.conv",
                                                "block.shortcut", "temb.linear"]
    assert d["layers"][1]["event_gap"] == pytest.approx(-0.25)


def test_a_profile_without_a_convolution_has_no_first_conv_to_price():
    profile = _hand_made_profile()
    linear_only = SpikeProfile(
        layers=profile.layers[3:], populations=profile.populations, timesteps=2,
        diffusion_t=profile.diffusion_t, input_rate=profile.input_rate[:, 3:],
        exact_events=profile.exact_events[:, 3:], population_rate=profile.population_rate,
        meta={"arch": "snn"})
    with pytest.raises(SddpmError) as error:
        energy_report(linear_only, load_hardware_costs("45nm-fp32"), "paper")
    assert str(error.value) == ("the profile has no convolution; the 'paper' convention "
                                "prices the first convolution as MACs")


def test_neuron_updates_count_only_in_strict_with_a_figure(snn):
    _, _, profile = snn
    loihi = load_hardware_costs("loihi1")
    strict = energy_report(profile, loihi, "strict")
    neurons = sum(p.neurons for p in profile.populations) * profile.timesteps
    assert neurons * 52e-9 <= strict.neuron_mj <= neurons * 81e-9
    assert energy_report(profile, loihi, "paper").neuron_mj == 0
    assert energy_report(profile, load_hardware_costs("45nm-fp32"), "strict").neuron_mj == 0


def test_ann_costs_a_mac_per_dense_mac_in_both_conventions():
    model, config, profile = _profile("ann", steps=2)
    hw = load_hardware_costs("45nm-fp32")
    macs = count_macs(model, config)["macs_per_forward"]
    for convention in ("paper", "strict"):
        report = energy_report(profile, hw, convention)
        assert report.per_forward_mj == pytest.approx(macs * 4.6e-9, rel=1e-12)
        assert report.ac_mj == 0


def test_unknown_convention_is_refused(snn):
    with pytest.raises(SddpmError) as error:
        energy_report(snn[2], load_hardware_costs("45nm-fp32"), "loose")
    assert str(error.value) == "unknown convention 'loose'; expected one of paper, strict"


class _BinaryImageNet(torch.nn.Module):
    """A first conv whose input, the image, is binary: 'paper' still prices it as MACs."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.neuron = MultiStepIF(timesteps=2)
        self.conv2 = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x, t):
        h = self.conv1(x.repeat(2, 1, 1, 1))
        return self.conv2(self.neuron(h))


@pytest.mark.parametrize("hardware", available_hardware())
def test_strict_is_never_below_paper_with_a_binary_image(hardware):
    torch.manual_seed(0)
    model = _BinaryImageNet()
    x = (torch.rand(2, 1, 6, 6) > 0.5).float()
    with ActivityProfiler(model, 2) as p, torch.no_grad():
        model(x, torch.zeros(2, dtype=torch.long))
    profile = p.profile()
    assert profile.layers[0].binary_input and not profile.layers[0].per_timestep
    hw = load_hardware_costs(hardware)
    paper, strict = energy_report(profile, hw, "paper"), energy_report(profile, hw, "strict")
    assert strict.layers[0].op == paper.layers[0].op == "MAC"
    assert strict.per_forward_mj >= paper.per_forward_mj


def test_deployed_events_of_unit_synapses_are_one_per_spike():
    """The standard block's spike shortcuts are 1x1 identity maps: a spike meets one
    synapse there, not a dense map's C_out (which the other 1x1-free maps keep)."""
    from dataclasses import replace

    import nir

    from sddpm.export.torch_to_nir import export_nir
    from sddpm.hardware.deployed import profile_from_counts
    from sddpm.models import build_model
    from sddpm.presets import get_preset

    config = replace(get_preset("tiny"), name="tiny-standard", block="standard")
    torch.manual_seed(0)
    graph = export_nir(build_model(config, "snn").double().eval())
    rng = np.random.default_rng(0)
    counts = {n: rng.integers(0, 2, size=(config.timesteps, *node.v_threshold.shape))
              for n, node in graph.nodes.items() if isinstance(node, nir.IF)}
    profile = profile_from_counts(graph, counts, batch=1, diffusion_t=10)
    events = dict(zip((l.name.split("+")[0] for l in profile.layers), profile.exact_events[0]))
    preds = {}
    for a, b in graph.edges:
        preds.setdefault(b, []).append(a)
    units = [n for n in events if n.endswith((".out", ".shortcut"))]
    assert units and all(graph.nodes[n].weight.shape[2:] == (1, 1) for n in units)
    for n in units:
        assert events[n] == counts[preds[n][0]].sum()  # one synapse per spike
    dense = next(n for n in events if n.endswith(".conv2"))
    (source,) = preds[dense]
    assert events[dense] > counts[source].sum() * graph.nodes[dense].weight.shape[0]
