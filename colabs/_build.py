"""Build the notebooks in colabs/ from their sources in colabs/src/.

Each source is a Python file in "percent" format: ``# %%`` starts a code cell,
``# %% [markdown]`` a Markdown cell (its lines lose their leading ``# ``), and
``# %% setup`` a code cell that begins with the standard setup below (install
gradtx when it is not importable; ``FAST`` for short settings).  Notebooks are
written without outputs.  Run ``python colabs/_build.py`` after editing a source;
``tests/test_colabs.py`` fails when a notebook is out of date.
"""

from __future__ import annotations

import pathlib
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SETUP = '''# Setup: use gradtx from this checkout, or install it from its git repository (e.g. in Colab:
# set GRADTX_REPO_URL to the repository's git URL first).
import importlib.util, os, subprocess, sys

if importlib.util.find_spec("gradtx") is None and os.path.exists("../gradtx/__init__.py"):
    sys.path.insert(0, os.path.abspath(".."))  # running inside a checkout
if importlib.util.find_spec("gradtx") is None:
    url = os.environ.get("GRADTX_REPO_URL")
    if not url:
        raise ImportError("gradtx is not installed: set GRADTX_REPO_URL to its git URL, or pip install it")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"gradtx[demo] @ git+{url}"], check=True)
FAST = os.environ.get("GRADTX_COLAB_FAST") == "1"  # short settings, used by the test suite'''


def cells_from_source(text: str) -> list:
    cells, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(
                line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines()
            )
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "setup":
            cells.append(nbformat.v4.new_code_cell((SETUP + "\n" + body).strip("\n")))
        elif kind == "code" and body:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            tag = line[4:].strip()
            kind = {"[markdown]": "markdown", "setup": "setup", "": "code"}[tag]
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def build(source: pathlib.Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_from_source(source.read_text())
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.stem[:2]}-{i:02d}"  # stable ids: rebuilding changes nothing
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    return nb


def main() -> int:
    for source in sorted((HERE / "src").glob("[0-9][0-9]_*.py")):
        target = HERE / f"{source.stem}.ipynb"
        text = nbformat.writes(build(source)) + "\n"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
