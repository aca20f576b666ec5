#!/bin/bash
# Train one run to each of several step counts in turn, keeping a copy of its checkpoint
# at each (OUT/snap-STEPS.pt), resuming OUT/last.pt where it exists: a long run spread
# over sessions, with the states a same-budget comparison needs along the way.
#
#   scripts/train_in_stages.sh OUT STEPS [STEPS ...] -- TRAIN-OPTIONS
#   scripts/train_in_stages.sh runs/long-snn 1000 2250 19000 -- --preset fmnist-small --arch snn
#
# One thread per run (OMP_NUM_THREADS=1 unless set): two runs share 2 cores best that way,
# and a run's losses repeat exactly only at the thread count it started with.
set -euo pipefail
usage="usage: scripts/train_in_stages.sh OUT STEPS [STEPS ...] -- TRAIN-OPTIONS"
[ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
out=$1; shift
targets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  [[ "$1" =~ ^[0-9]+$ ]] || { echo "step count '$1' is no whole number; $usage" >&2; exit 2; }
  targets+=("$1"); shift
done
[ $# -gt 0 ] || { echo "no '--' before the train options; $usage" >&2; exit 2; }
shift
sddpm=${SDDPM:-$(dirname "$0")/../.venv/bin/sddpm}
python=$(dirname "$sddpm")/python
for t in "${targets[@]}"; do
  [ -f "$out/snap-$t.pt" ] && continue
  resume=()
  if [ -f "$out/last.pt" ]; then
    resume=(--resume)
    # a run resumed past a stage (snapshots are not committed) has no state of that stage
    # left to keep: say so instead of keeping a later state under its name
    at=$("$python" -c 'import sys; from sddpm.checkpoint import load_checkpoint
print(load_checkpoint(sys.argv[1], verify=False)["step"])' "$out/last.pt")
    if [ "$at" -gt "$t" ]; then
      echo "stage $t: $out/last.pt is already at step $at; no snapshot of step $t kept"
      continue
    fi
  fi
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$sddpm" train "$@" --steps "$t" --out "$out" "${resume[@]}"
  cp "$out/last.pt" "$out/snap-$t.pt.tmp" && mv "$out/snap-$t.pt.tmp" "$out/snap-$t.pt"
done
