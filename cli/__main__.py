"""``python -m sddpm.cli`` (as ``torchrun -m sddpm.cli train ...`` needs) is ``sddpm``."""

import sys

from sddpm.cli.main import main

sys.exit(main())
