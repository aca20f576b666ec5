import json

import pytest

from sddpm.errors import SddpmError
from sddpm.hardware.hardware_costs import HardwareCosts, available_hardware, load_hardware_costs


def test_every_shipped_profile_loads_with_a_source():
    names = available_hardware()
    assert {"45nm-fp32", "45nm-fp16", "45nm-int8", "loihi1", "truenorth"} <= set(names)
    for name in names:
        profile = load_hardware_costs(name)
        assert profile.name == name
        assert len(profile.source) > 20
        assert profile.mac_pj >= profile.ac_pj > 0


def test_fp32_profile_holds_the_papers_constants():
    profile = load_hardware_costs("45nm-fp32")
    assert (profile.mac_pj, profile.ac_pj) == (4.6, 0.9)
    assert load_hardware_costs("loihi1").neuron_update_pj == {"active": 81.0, "inactive": 52.0}


def test_unknown_profile_names_the_choices():
    with pytest.raises(SddpmError, match="unknown hardware 'tpu'.*45nm-fp32"):
        load_hardware_costs("tpu")


def test_profile_file_by_path_and_its_errors(tmp_path):
    good = {"name": "mine", "description": "d", "mac_pj": 2.0, "ac_pj": 1.0,
            "neuron_update_pj": None, "source": "measured by me"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(good))
    assert load_hardware_costs(str(path)) == HardwareCosts(**good)
    path.write_text(json.dumps({**good, "mac_pj": 0.5}))
    with pytest.raises(SddpmError, match="mac_pj 0.5 is below ac_pj"):
        load_hardware_costs(str(path))
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "source"}))
    with pytest.raises(SddpmError, match="lacks source"):
        load_hardware_costs(str(path))
    for bad, message in [({"mac_pj": float("nan")}, "mac_pj must be a positive, finite"),
                         ({"ac_pj": "0.9"}, "ac_pj must be a positive, finite"),
                         ({"neuron_update_pj": 5}, "neuron_update_pj must be null"),
                         ({"neuron_update_pj": {"active": "81", "inactive": 52}},
                          "neuron_update_pj.active must be")]:
        path.write_text(json.dumps({**good, **bad}))
        with pytest.raises(SddpmError, match=message):
            load_hardware_costs(str(path))
    path.write_text("{not json")
    with pytest.raises(SddpmError, match="not valid JSON"):
        load_hardware_costs(str(path))
    with pytest.raises(SddpmError, match="does not exist"):
        load_hardware_costs(str(tmp_path / "absent.json"))


def test_sram_figures_of_the_memory_convention(tmp_path):
    costs = load_hardware_costs("45nm-int32-sram")
    # Lemaire et al.'s fit: 8 KiB, 32 KiB and 1 MiB of 32-bit words cost about 13.9,
    # 16.1 and 104.6 pJ per access
    from sddpm.hardware.memory_energy import access_pj

    for kib, pj in ((8, 13.9), (32, 16.1), (1024, 104.6)):
        assert access_pj(kib * 1024 * 8 / 32, costs) == pytest.approx(pj, abs=0.05)
    base = costs.to_dict()
    for memory, problem in (({"pj_per_bit": 1e-5}, "memory must be null"),
                            ({"pj_per_bit": -1, "pj_per_access": 13.2, "word_bits": 32},
                             "memory.pj_per_bit must be a positive")):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**base, "memory": memory}))
        with pytest.raises(SddpmError, match=problem):
            load_hardware_costs(str(path))
