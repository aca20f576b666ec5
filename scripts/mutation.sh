#!/usr/bin/env bash
# `make mutation`: mutmut 2 over the files the latency and energy figures rest on, against
# the tests that pin them. One file per run: mutmut 2.5.1's cache fails ("assert line"
# in cached_mutation_status) when one run mutates several files. Each survivor's diff
# goes to runs/mutation/<file>.txt. Not in CI: about 10 minutes on 2 cores.
set -euo pipefail
VENV=${VENV:-.venv}
TESTS="tests/export/test_latency.py tests/hardware/test_deployed.py tests/hardware/test_energy.py"
out=runs/mutation
mkdir -p "$out"
for f in export/latency.py hardware/deployed.py hardware/energy.py; do
    rm -f .mutmut-cache
    "$VENV/bin/mutmut" run --paths-to-mutate "$f" --CI --no-progress --simple-output \
        --runner "$VENV/bin/python -m pytest -x -q -p no:cacheprovider $TESTS"
    report="$out/$(basename "$f" .py).txt"
    "$VENV/bin/mutmut" show all > "$report"
    echo "$f: $(grep -c '^# mutant' "$report" || true) surviving mutants -> $report"
done
