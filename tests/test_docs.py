"""The documentation's Python snippets run.

Every fenced ```python block of README.md, CONTRIBUTING.md and docs/*.md is
executed: one file's blocks in order, in one namespace, in a fresh Python
process per file (so x64, device counts and dtype-promotion settings made by
one file cannot reach another).  A block preceded by a ``<!-- not run -->``
line (one line; a reason may follow: ``<!-- not run: ... -->``) is skipped; keep those
for code that is deliberately partial or needs several processes, and say in
the mark which test runs the same code.

Tracebacks point at the Markdown file and line of the failing statement.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.conftest import FAST_COMPILE

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")],
    key=lambda p: str(p.relative_to(ROOT)),
)
# Extra XLA flags per file: the sharding examples need 8 (simulated) devices.
XLA_FLAGS = {"docs/distributed.md": "--xla_force_host_platform_device_count=8"}
TIMEOUT_S = 300  # per file; each file should take a few seconds

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b.*-->\s*$")


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """``(first line number, code, run)`` for each ```python block of a Markdown text.

    The fence's indentation (a block inside a list item) is removed from the
    code; ``run`` is false when the last non-blank line before the fence is a
    ``<!-- not run -->`` mark.
    """
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks = m["indent"], m["ticks"]
        info = m["info"].strip().split()
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(ticks) and lines[end].strip().strip("`") == ""
        ):
            end += 1
        if info and info[0] == "python":
            before = [line for line in lines[:i] if line.strip()]
            run = not (before and NOT_RUN.match(before[-1]))
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[i + 1 : end]
            ]
            blocks.append((i + 2, "\n".join(body) + "\n", run))
        i = end + 1
    return blocks


# Runs in the subprocess: each block compiled under the Markdown file's name and
# shifted to its line, so a traceback names the doc line that failed.
RUNNER = """
import json, sys
path, blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for line, code in blocks:
    exec(compile("\\n" * (line - 1) + code, path, "exec"), namespace)
"""


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_block_parser():
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- not run: partial -->",
            "",
            "```python",
            "...",
            "```",
            "- a list item:",
            "",
            "  ```python",
            "  b = a + 1",
            "  ```",
            "```bash",
            "echo no",
            "```",
        ]
    )
    assert python_blocks(text) == [
        (2, "a = 1\n", True),
        (7, "...\n", False),
        (12, "b = a + 1\n", True),
    ]


def _runnable(path: pathlib.Path) -> list[tuple[int, str]]:
    return [(line, code) for line, code, run in python_blocks(path.read_text()) if run]


WITH_CODE = [p for p in FILES if _runnable(p)]


def test_the_set_up_pages_have_code_to_run():
    assert {"README.md", "docs/optimizers.md"} <= {_rel(p) for p in WITH_CODE}


@pytest.mark.parametrize("path", WITH_CODE, ids=_rel)
def test_python_blocks_run(path, tmp_path):
    blocks = _runnable(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    flags = [FAST_COMPILE, XLA_FLAGS.get(_rel(path), "")]
    env |= {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "XLA_FLAGS": " ".join(flags)}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([_rel(path), blocks]),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # files a snippet writes land in a temporary directory
        env=env,
        timeout=TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(f"{_rel(path)}: a Python block failed\n{proc.stderr[-6000:]}", pytrace=False)


def test_the_signatures_in_the_optimizer_tables_are_the_real_ones():
    """docs/optimizers.md's family tables open each row with a call such as
    ``adam(learning_rate=1e-3, ..., *, weight_decay=None)``: every argument named
    there exists, with that default, on the side of ``*`` it stands (they showed
    ``weight_decay=0.0`` where the default is ``None``)."""
    import inspect

    import gradtx

    text = (ROOT / "docs" / "optimizers.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)\(([^`]*)\)` \|", text, re.M)
    shown = [(name, args) for name, args in rows if args.strip() != "..."]
    assert len(shown) >= 10, rows
    for name, args in shown:
        real = inspect.signature(getattr(gradtx, name)).parameters
        keyword_only = False
        for part in (p.strip() for p in args.split(",")):
            if part == "*":
                keyword_only = True
                continue
            arg, _, default = part.partition("=")
            assert arg in real, (name, arg)
            kind = real[arg].kind
            assert (kind == inspect.Parameter.KEYWORD_ONLY) == keyword_only, (name, arg)
            if default:
                assert default == repr(real[arg].default) or (
                    isinstance(real[arg].default, float) and float(default) == real[arg].default
                ), (name, arg, default, real[arg].default)
