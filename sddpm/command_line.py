"""What every sddpm command line shares: one-line errors, option types, the exit codes.

Only command-line modules read argv. Every failure a user can fix is an
:class:`~sddpm.errors.SddpmError`, printed as one line ``PROG: error: ...`` with exit
status 2; no traceback. Both commands (``sddpm``, ``sddpm-export``) and every stage's
sub-commands use these.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from sddpm.errors import SddpmError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but its errors are one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def run_command(prog: str, action: Callable[[], None]) -> int:
    """Run ``action``; the exit status, with the user's errors as one line on stderr."""
    try:
        action()
    except SddpmError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: the system's words suffice
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
