"""Execute a notebook top to bottom and save the executed copy: ``run_notebook.py NB OUT``."""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main(notebook: str, out: str) -> int:
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: run_notebook.py NOTEBOOK.ipynb OUT.ipynb")
    sys.exit(main(sys.argv[1], sys.argv[2]))
