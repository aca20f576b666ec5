#!/usr/bin/env bash
# `make mutation`: mutmut 2 over the files the latency and energy figures rest on, against
# the tests that pin them; each survivor's diff goes to runs/mutation/<file>.txt. Not in
# CI: about 10 minutes on 2 cores.
#
# mutmut 2.5.1 sometimes stops on its own cache ("assert line" in cached_mutation_status;
# more often when one run mutates several files), so each file gets its own run, and a
# stopped run is started again: the cache keeps the mutants already tested. Its backup
# (FILE.bak, the original) is put back whatever happened.
set -uo pipefail
VENV=${VENV:-.venv}
# a mutant of the same length written within the second of the last test run keeps the
# original's .pyc (same mtime and size) and "survives": no bytecode cache at all
export PYTHONDONTWRITEBYTECODE=1
find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
TESTS="tests/export/test_latency.py tests/hardware/test_deployed.py tests/hardware/test_energy.py tests/hardware/test_conventions.py"
out=runs/mutation
mkdir -p "$out"
for f in export/latency.py hardware/deployed.py hardware/energy.py hardware/memory_energy.py hardware/conventions.py; do
    rm -f .mutmut-cache
    finished=no
    for attempt in 1 2 3 4 5; do
        if "$VENV/bin/mutmut" run --paths-to-mutate "$f" --CI --no-progress --simple-output \
            --runner "$VENV/bin/python -m pytest -x -q -p no:cacheprovider $TESTS"; then
            finished=yes
            break
        fi
        echo "mutmut stopped on $f (attempt $attempt); starting it again" >&2
        if [ -f "$f.bak" ]; then mv "$f.bak" "$f"; fi
    done
    if [ -f "$f.bak" ]; then mv "$f.bak" "$f"; fi
    report="$out/$(basename "$f" .py).txt"
    "$VENV/bin/mutmut" show all > "$report"
    # mutmut's own cache (sqlite) knows every mutant's fate
    tally=$("$VENV/bin/python" -c 'import sqlite3; print(", ".join(f"{s} {n}" for s, n in
        sqlite3.connect(".mutmut-cache").execute(
        "select status, count(*) from Mutant group by status")))')
    echo "$f: $(grep -c '^# mutant' "$report") surviving mutants -> $report" \
         "($tally; run finished: $finished)"
    [ "$finished" = yes ] || exit 1
done
