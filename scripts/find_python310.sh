#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter: python3.10 on PATH, else one installed by
# pyenv. Lava 0.10 and lava-dl 0.6 run on 3.10 only.
set -u
is310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
if command -v python3.10 >/dev/null 2>&1 && is310 python3.10; then
    command -v python3.10; exit 0
fi
root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
for py in $(ls -d "$root"/versions/3.10*/bin/python3.10 2>/dev/null | sort -V -r); do
    if is310 "$py"; then echo "$py"; exit 0; fi
done
echo "error: no Python 3.10 found (Lava needs exactly 3.10); install one, e.g." \
     "'pyenv install 3.10' or your distribution's python3.10 with venv, then rerun" >&2
exit 1
