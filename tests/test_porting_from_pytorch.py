"""docs/porting_from_pytorch.md's table, walked row by row against torch, gradtx and the tests.

Each row is ``| torch | gradtx | notes | tested by |``:

- torch: one code span, a name relative to ``torch.optim`` (``Adam``,
  ``lr_scheduler.StepLR``, ``swa_utils.update_bn``), or a constructor argument
  (``Adam(betas)``): the name must exist in the installed torch, the argument
  in the signature.
- gradtx: ``not applicable`` (then the notes say why and "tested by" is
  ``—``), or code spans; each span that starts with ``gradtx.`` must resolve,
  and the names in its argument list (``gradtx.adam(b1, b2)``,
  ``gradtx.schedules.sgdr(peak_value, first_period=T_0)``) must be parameters
  of that function.  For an optimizer argument, the first span's parameters
  must default to torch's default (torch's 0 may be gradtx's ``None``).
- tested by: ``tests/...py::test_name`` spans; each file must define that
  test function and mention the torch name.

Completeness: every ``torch.optim`` optimizer class, each of its constructor
arguments, every ``lr_scheduler`` class but the base class, and every
``swa_utils`` name has a row.  torch's implementation flags are rows that
say "not applicable"; every other optimizer argument has a gradtx spelling
and a test.  The last test checks that these checks fail on a table with a
row deleted or a name misspelled.
"""

from __future__ import annotations

import ast
import functools
import inspect
import pathlib
import re
from dataclasses import dataclass
from dataclasses import replace

import pytest
import torch
import torch.optim.lr_scheduler
import torch.optim.swa_utils

import gradtx

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "porting_from_pytorch.md"
HEADER = ["torch", "gradtx", "notes", "tested by"]
FLAGS = {"foreach", "fused", "capturable", "differentiable"}
NOT_APPLICABLE = "not applicable"
NO_TEST = "—"

CODE = re.compile(r"`([^`]+)`")
TORCH_NAME = re.compile(r"^(?P<path>[A-Za-z_][\w.]*)(?:\((?P<arg>\w+)\))?$")
GRADTX_NAME = re.compile(r"^gradtx\.(?P<path>[\w.]+)(?:\((?P<args>.*)\))?$")
TEST_NODE = re.compile(r"^(?P<file>tests/[\w/]+\.py)::(?P<name>test_\w+)$")
ARGUMENT = re.compile(r"^(?P<name>\w+)(\s*=.*)?$")


@dataclass(frozen=True)
class Row:
    line: int
    torch: str
    gradtx: str
    notes: str
    tested: str

    def __str__(self):
        return f"line {self.line}: {self.torch}"


def parse_table(text: str) -> list[Row]:
    """The rows of the one table whose header is ``HEADER``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _cells(line) == HEADER]
    assert len(starts) == 1, f"expected one table headed {HEADER}, found {len(starts)}"
    start = starts[0] + 2  # skip the header and the |---| line
    rows = []
    for i in range(start, len(lines)):
        if not lines[i].startswith("|"):
            break
        cells = _cells(lines[i])
        assert len(cells) == 4, f"line {i + 1}: {len(cells)} cells, expected 4"
        rows.append(Row(i + 1, *cells))
    return rows


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [c.strip() for c in line.strip("|").split("|")]


def _resolve(root, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _parameters(fn) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


def _split_arguments(args: str) -> list[str]:
    """Split at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in args:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def torch_name(row: Row) -> tuple[str, str | None]:
    """(path, argument or None) of the row's torch cell."""
    spans = CODE.findall(row.torch)
    assert len(spans) == 1 and (m := TORCH_NAME.match(spans[0])), f"{row}: bad torch cell"
    return m["path"], m["arg"]


def _is_optimizer(obj) -> bool:
    return inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)


def _same_default(theirs, ours) -> bool:
    if theirs == 0 and ours is None:  # a zero in torch is a stage left out in gradtx
        return True
    return bool(theirs == ours)


def _gradtx_problems(row: Row, arg: str | None, torch_default) -> list[str]:
    spans = [s for s in CODE.findall(row.gradtx) if s.startswith("gradtx.")]
    if not spans:
        return [f"{row}: no gradtx spelling (a `gradtx.` code span) and not {NOT_APPLICABLE!r}"]
    problems = []
    for i, span in enumerate(spans):
        m = GRADTX_NAME.match(span)
        if not m:
            problems.append(f"{row}: cannot read the gradtx spelling {span!r}")
            continue
        try:
            fn = _resolve(gradtx, m["path"])
        except AttributeError:
            problems.append(f"{row}: gradtx.{m['path']} does not exist")
            continue
        if m["args"] is None:
            continue
        params = _parameters(fn)
        names = []
        for a in _split_arguments(m["args"]):
            am = ARGUMENT.match(a)
            if not am:
                problems.append(f"{row}: {span!r}: {a!r} is not an argument name")
            elif am["name"] not in params:
                problems.append(f"{row}: gradtx.{m['path']} has no argument {am['name']!r}")
            else:
                names.append(am["name"])
        if i == 0 and arg is not None and names and torch_default is not inspect.Parameter.empty:
            ours = tuple(params[n].default for n in names)
            theirs = tuple(torch_default) if len(names) > 1 else (torch_default,)
            if len(theirs) != len(ours) or not all(map(_same_default, theirs, ours)):
                given = ", ".join(names)
                problems.append(
                    f"{row}: torch's default {torch_default!r}, gradtx's {ours} ({given})"
                )
    return problems


@functools.cache
def _test_functions(file: str) -> tuple[frozenset[str], str]:
    source = (ROOT / file).read_text()
    tree = ast.parse(source)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return frozenset(names), source


def _tested_problems(row: Row, mention: str) -> list[str]:
    nodes = CODE.findall(row.tested)
    if not nodes:
        return [f"{row}: no test named (a `tests/...py::test_name` code span)"]
    problems = []
    for node in nodes:
        m = TEST_NODE.match(node)
        if not m:
            problems.append(f"{row}: cannot read the test {node!r}")
        elif not (ROOT / m["file"]).is_file():
            problems.append(f"{row}: {m['file']} does not exist")
        else:
            functions, source = _test_functions(m["file"])
            if m["name"] not in functions:
                problems.append(f"{row}: {m['file']} defines no function {m['name']}")
            if not re.search(rf"\b{re.escape(mention)}\b", source):
                problems.append(f"{row}: {m['file']} never mentions {mention!r}")
    return problems


def row_problems(row: Row) -> list[str]:
    """What is wrong with one row (empty if nothing)."""
    try:
        path, arg = torch_name(row)
    except AssertionError as e:
        return [str(e)]
    try:
        obj = _resolve(torch.optim, path)
    except AttributeError:
        return [f"{row}: torch.optim.{path} does not exist"]
    torch_default = inspect.Parameter.empty
    if arg is not None:
        params = _parameters(obj)
        if arg not in params:
            return [f"{row}: torch.optim.{path} has no argument {arg!r}"]
        torch_default = params[arg].default
    not_applicable = row.gradtx.lower().startswith(NOT_APPLICABLE)
    problems = []
    if _is_optimizer(obj) and arg is not None and (arg in FLAGS) != not_applicable:
        problems.append(f"{row}: implementation flags, and only they, are {NOT_APPLICABLE!r}")
    if not_applicable:
        if row.tested != NO_TEST:
            problems.append(f"{row}: {NOT_APPLICABLE!r} rows are tested by {NO_TEST!r}")
        if not row.notes:
            problems.append(f"{row}: say in the notes why it is {NOT_APPLICABLE}")
        return problems
    if not _is_optimizer(obj) or arg is None or arg == "params":
        torch_default = inspect.Parameter.empty  # defaults compared for optimizer arguments
    problems += _gradtx_problems(row, arg, torch_default)
    problems += _tested_problems(row, arg or path.rsplit(".", 1)[-1])
    return problems


def torch_names() -> set[str]:
    """Every name the table must have: optimizers and their arguments, schedulers,
    swa_utils."""
    names = set()
    for name, obj in vars(torch.optim).items():
        if name.startswith("_") or not _is_optimizer(obj) or obj is torch.optim.Optimizer:
            continue
        names.add(name)
        names |= {f"{name}({a})" for a in _parameters(obj) if a != "params"}
    module = torch.optim.lr_scheduler
    schedulers = set(module.__all__) | {
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
    }
    names |= {f"lr_scheduler.{n}" for n in schedulers - {"LRScheduler"}}
    names |= {f"swa_utils.{n}" for n in torch.optim.swa_utils.__all__}
    return names


def missing_rows(rows: list[Row]) -> list[str]:
    have = {CODE.findall(r.torch)[0] if CODE.findall(r.torch) else r.torch for r in rows}
    return sorted(torch_names() - have)


ROWS = parse_table(DOC.read_text())


@pytest.mark.parametrize("row", ROWS, ids=[r.torch.strip("`") for r in ROWS])
def test_row(row):
    assert row_problems(row) == []


def test_every_torch_name_has_a_row():
    assert missing_rows(ROWS) == []


def test_no_row_twice():
    names = [r.torch for r in ROWS]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_list_of_torch_names_is_torch_2_13s():
    names = torch_names()
    optimizers = {n for n in names if "(" not in n and "." not in n}
    assert optimizers == {
        "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon",
        "NAdam", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam",
    }  # fmt: skip
    assert {"Adam(decoupled_weight_decay)", "Muon(adjust_lr_fn)", "SGD(fused)"} <= names
    assert "Adam(params)" not in names
    assert len([n for n in names if n.startswith("lr_scheduler.")]) == 15
    assert "lr_scheduler.LRScheduler" not in names
    assert len([n for n in names if n.startswith("swa_utils.")]) == 7


def _problems(rows: list[Row]) -> list[str]:
    return [p for r in rows for p in row_problems(r)] + missing_rows(rows)


SR = "`tests/reference/test_torch_sgd_adam.py::"
# (what, the row's torch cell, the cells changed, a piece of the problem it must cause)
BROKEN = [
    ("a misspelt torch argument", "Adam(betas)", dict(torch="`Adam(betaz)`"), "no argument"),
    ("a misspelt torch class", "SGD", dict(torch="`SGDD`"), "torch.optim.SGDD does not exist"),
    ("a misspelt gradtx argument", "Adam(betas)", dict(gradtx="`gradtx.adam(b1, b3)`"), "'b3'"),
    ("a misspelt gradtx function", "Adam", dict(gradtx="`gradtx.adma`"), "gradtx.adma does not"),
    ("a gradtx argument of other defaults", "Adam(lr)",
     dict(gradtx="`gradtx.adamax(learning_rate)`"), "torch's default 0.001"),
    ("no gradtx spelling", "Adam(lr)", dict(gradtx="adam's learning_rate"), "no gradtx spelling"),
    ("a test that does not exist", "Adam(lr)", dict(tested=SR + "test_nothing`"), "test_nothing"),
    ("a test file that does not exist", "Adam(lr)",
     dict(tested="`tests/reference/test_adam.py::test_adam`"), "does not exist"),
    ("a test of something else", "Muon(ns_steps)",
     dict(tested=SR + "test_sgd_matches_torch`"), "never mentions 'ns_steps'"),
    ("a flag given a spelling", "Adam(fused)", dict(gradtx="`gradtx.adam`"), "only they"),
    ("an argument left untested", "Adam(eps)", dict(gradtx=NOT_APPLICABLE, tested=NO_TEST),
     "only they"),
    ("a not-applicable row with a test", "swa_utils.update_bn",
     dict(tested=SR + "test_sgd_matches_torch`"), "tested by"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "name", "changes", "problem"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_checks_catch_a_misspelling(what, name, changes, problem):
    assert any(r.torch == f"`{name}`" for r in ROWS), name
    rows = [replace(r, **changes) if r.torch == f"`{name}`" else r for r in ROWS]
    found = _problems(rows)
    assert found, f"{what} went unnoticed"
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    "name", ["Adam(betas)", "Rprop", "lr_scheduler.CyclicLR", "swa_utils.update_bn"]
)
def test_the_checks_catch_a_deleted_row(name):
    rows = [r for r in ROWS if r.torch != f"`{name}`"]
    assert len(rows) == len(ROWS) - 1
    assert missing_rows(rows) == [name]
