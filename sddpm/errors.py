"""The one exception type of the project.

Every message names what was expected, what was found, and how to fix it, so that
the command line can print it as one line and exit non-zero.
"""


class SddpmError(Exception):
    """Raised for every user-facing failure (bad input, bad file, bad option)."""
