"""The ``sddpm-export`` command line (NIR and Lava exporters land here)."""

from __future__ import annotations

import argparse
import sys

TARGETS = ("nir", "lava")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sddpm-export",
                                     description="export a trained checkpoint")
    parser.add_argument("checkpoint")
    parser.add_argument("--to", required=True, choices=TARGETS)
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)
    print(f"sddpm-export: error: the {args.to} exporter is not built yet (see the open "
          "NIR-export and Lava-deployment issues)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
