"""Generated damage to a checkpoint's bytes (Hypothesis): whatever the damage, a command
either works or says what is wrong in one line; it never shows a traceback.

A byte flipped inside a tensor is caught by the checksum; one in the zip's structure by
the container; one in padding may change nothing, and then the command runs. ``make
test`` tries ``FUZZ_EXAMPLES`` cases (default 40, seconds); ``make fuzz`` tries 1,000.
"""

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sddpm.cli.main import main

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def original(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "original.pt"
    shutil.copy(tiny_checkpoint, path)
    return path.read_bytes()


damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10 ** 9), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10 ** 9), st.just(0)),
    st.tuples(st.just("zero"), st.integers(0, 10 ** 9), st.integers(1, 4096)),
)


def _damaged(data: bytes, kind: str, where: int, size: int) -> bytes:
    where %= len(data)
    if kind == "flip":
        return data[:where] + bytes([data[where] ^ size]) + data[where + 1:]
    if kind == "truncate":
        return data[:where]
    return data[:where] + bytes(min(size, len(data) - where)) + data[where + size:]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damage)
def test_damaged_bytes_never_show_a_traceback(capsys, tmp_path, original, case):
    path = tmp_path / "damaged.pt"
    path.write_bytes(_damaged(original, *case))
    try:
        code = main(["info", str(path), "--json"])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code != 0:
        assert code == 2 and len(captured.err.strip().splitlines()) == 1, captured.err
        assert captured.err.startswith("sddpm: error:")
    else:  # the damage missed every tensor: the checksum says they are the written ones
        assert json.loads(captured.out)["integrity"] == "verified"
