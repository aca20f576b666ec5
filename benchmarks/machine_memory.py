"""Run a command and report the machine's peak used memory and the wall time.

Used memory is ``MemTotal - MemAvailable`` of ``/proc/meminfo`` (every process, the
shared memory of Lava's channels and the kernel's share included), sampled every
``--every`` seconds; the figure is the peak less what was used before the command.
A Lava run forks hundreds of processes, so one process's peak RSS says little.

    python benchmarks/machine_memory.py [--every 0.5] [--kill-above GB] [--json] -- COMMAND ...

``--kill-above`` kills the command's whole process group (Lava's children included)
when the machine's used memory passes that many GB, before the kernel's OOM killer
takes the parent and leaves hundreds of orphans holding the memory.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time


def used_bytes() -> int:
    with open("/proc/meminfo") as f:
        fields = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)}
    return fields["MemTotal"] - fields["MemAvailable"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--kill-above", type=float, default=None, metavar="GB")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    before = used_bytes()
    peak = [before]
    done = threading.Event()
    killed = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, start_new_session=True)

    def sample():
        while not done.wait(args.every):
            peak[0] = max(peak[0], used_bytes())
            if args.kill_above and peak[0] > args.kill_above * 1e9 and not killed:
                killed.append(round(time.perf_counter() - t0, 1))
                os.killpg(proc.pid, signal.SIGKILL)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    done.set()
    thread.join()
    if killed:  # the group again: children forked after the first kill
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    result = {"command": command, "returncode": rc, "killed_at_s": killed[0] if killed else None,
              "wall_s": round(time.perf_counter() - t0, 1),
              "used_before_GB": round(before / 1e9, 2), "peak_used_GB": round(peak[0] / 1e9, 2),
              "peak_above_before_GB": round((peak[0] - before) / 1e9, 2)}
    line = json.dumps(result) if args.json else (
        f"exit {rc}{' (killed above the limit)' if killed else ''}; {result['wall_s']} s; "
        f"machine memory used: peak {result['peak_used_GB']} GB ("
        f"{result['peak_above_before_GB']} GB above the {result['used_before_GB']} GB before)")
    print(line, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
