"""gradtx/_registry.py and the Markdown it renders (gradtx/_catalogue.py).

The README's optimizer table and docs/optimizers.md's catalogue are generated
from the registry, between marker comments: these tests fail when a file's
block differs from what the code renders now, and when an optimizer's
docstring lacks a part of the template the catalogue shows.
"""

from __future__ import annotations

import inspect
import shutil

import pytest

import gradtx
from gradtx import _catalogue
from gradtx._registry import GENERATED
from gradtx._registry import OPTIMIZERS
from gradtx._registry import ROOT
from gradtx._registry import catalogue
from gradtx._registry import main
from gradtx._registry import others
from gradtx._registry import primitives
from gradtx._registry import readme_prose
from gradtx._registry import readme_table
from gradtx._registry import write_readme_prose
from tests.registry import REGISTRY

FIX = "run python -m gradtx._registry --write"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_blocks_are_current(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert _catalogue.generated(text, name) == GENERATED[name](), (
        f"{name}'s generated block differs from the registry's docstrings: {FIX}"
    )


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_docstring_follows_the_template(name):
    fn = OPTIMIZERS[name].factory
    found = _catalogue.problems(inspect.getdoc(fn), inspect.signature(fn).parameters)
    assert not found, f"gradtx.{name}'s docstring (see CONTRIBUTING.md, Docstrings): {found}"


def test_every_optimizer_is_in_the_table_and_the_catalogue():
    table, cat = readme_table(), catalogue()
    for name in OPTIMIZERS:
        assert f"\n| `{name}` |" in table
        assert f"\n### `{name}`\n" in cat


def test_the_readmes_prose_counts_the_registered_optimizers():
    # The count and the list of optimizers neither torch nor optax has, in the
    # introduction and the comparison table, are written by --write too.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_prose(text) == text, f"README.md's counts differ from the registry: {FIX}"
    flat = " ".join(text.split())
    assert f"gradtx has {len(OPTIMIZERS)} named optimizers" in flat
    # (a list written here broke the test for the next optimizer neither library has)
    listed = flat.split("), plus ", 1)[1].split(" (Lookahead", 1)[0]
    assert listed.replace(" and ", ", ").split(", ") == [f"`{n}`" for n in others()]
    assert {"adabound", "ranger", "swats"} <= set(others()) and "adam" not in others()
    assert f"**Primitives** ({len(primitives())} transforms" in flat
    assert {"scale_by_rms", "clip", "lazy"} <= set(primitives())
    assert "schedule_free_eval_params" not in primitives()  # it returns params


def test_write_rewrites_the_readmes_prose_counts(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = text.replace(f"gradtx has {len(OPTIMIZERS)} named", "gradtx has 3 named", 1)
    first = others()[0]
    stale = stale.replace(f"catalogue, plus `{first}`, ", "catalogue, plus ", 1)
    stale = stale.replace("**Primitives** (", "**Primitives** (1", 1)
    (tmp_path / "README.md").write_text(stale, encoding="utf-8")
    assert write_readme_prose(tmp_path)
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == readme_prose(text)
    assert not write_readme_prose(tmp_path)


def test_readme_prose_refuses_a_readme_without_its_sentences():
    with pytest.raises(ValueError, match=r"README.md: expected .*named optimizers.* 1 time"):
        readme_prose("no counts here")


def test_optaxs_own_optimizers_take_optaxs_positional_arguments():
    # An optimizer whose rule defaults to optax's (no torch counterpart) is called as
    # optax's is: the same positional parameters in the same order, none left out.
    # (lookahead, a wrapper from the first round's sources, names its optimizer
    # ``inner``; its positions are optax's.)
    import optax

    for name in OPTIMIZERS:
        theirs = getattr(optax, name, None) or getattr(optax.contrib, name, None)
        ours = inspect.signature(getattr(gradtx, name)).parameters
        convention = ours["convention"].default if "convention" in ours else "optax"
        if theirs is None or convention != "optax" or name == "lookahead":
            continue
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        want = [p.name for p in inspect.signature(theirs).parameters.values() if p.kind in kinds]
        got = [p.name for p in ours.values() if p.kind in kinds]
        assert got[: len(want)] == want, (name, got, want)


def test_registering_a_name_twice_is_refused():
    from gradtx._registry import optimizer

    with pytest.raises(ValueError, match="'sign_sgd' is already registered"):

        @optimizer(references="x")
        def sign_sgd():
            """A copy left unrenamed."""

    assert OPTIMIZERS["sign_sgd"].factory is gradtx.sign_sgd


def test_the_generated_markdown_adds_no_python_blocks():
    # tests/test_docs.py runs every ```python block; equations are plain blocks.
    for text in (readme_table(), catalogue()):
        assert "```python" not in text


# ------------------------------------------------------------------ the template

GOOD = """Thing (Someone), as ``ref.thing``.

Update (``t`` from 1)::

  θ_t = θ_{t-1} - η g_t

Chain: ``scale_by_learning_rate``.

Differences:
  * torch: equal.
  * optax: ``x``
    continued.

Args:
  learning_rate: η.
  a, b: two numbers.

Example:
  >>> 1 + 1
  2

References:
  Someone, "Thing", 2024.
"""


def test_problems_accepts_the_template():
    assert _catalogue.problems(GOOD, ["learning_rate", "a", "b"]) == []


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.replace("Differences:", "Differences"), "no Differences: paragraph"),
        (lambda d: d.replace("Update (``t`` from 1)::", "Update:"), "no update equations"),
        (lambda d: d.replace("  >>> 1 + 1\n  2\n", "  1 + 1\n"), "no doctest"),
        (lambda d: d.replace("as ``ref.thing``.", "as\n``ref.thing``."), "one line"),
        (lambda d: d.replace("Chain: ``scale_by_learning_rate``.", "Chain:"), "Chain: is empty"),
        (lambda d: d.replace("  a, b: two numbers.\n", ""), "does not document ['a', 'b']"),
        (lambda d: d + "\nChain: again.\n", "Chain: appears 2 times"),
        (
            lambda d: (
                d.replace("Example:\n  >>> 1 + 1\n  2\n\n", "") + "\nExample:\n  >>> 1\n  1\n"
            ),
            "in the order",
        ),
    ],
)
def test_problems_finds_each_departure(edit, expected):
    found = _catalogue.problems(edit(GOOD), ["learning_rate", "a", "b"])
    assert any(expected in p for p in found), found


def test_parse_splits_the_sections():
    d = _catalogue.parse(GOOD)
    assert d.summary == "Thing (Someone), as ``ref.thing``."
    assert d.body.startswith("Update (``t`` from 1)::")
    assert [n for n, _ in d.sections] == list(_catalogue.SECTIONS)
    assert d.section("Differences") == "* torch: equal.\n* optax: ``x``\n  continued."
    assert d.section("References") == 'Someone, "Thing", 2024.'


def test_to_markdown():
    md = _catalogue.to_markdown(
        "A ``code``\nspan ``across\nlines``::\n\n  x = 1\n\n    y = 2\n\nafter ::\n\n  z\n"
    )
    assert (
        md
        == "A `code`\nspan `across\nlines`:\n\n```\nx = 1\n\n  y = 2\n```\n\nafter\n\n```\nz\n```"
    )


# ------------------------------------------------------------------- the blocks


def test_replaced_keeps_the_rest_of_the_file():
    text = f"intro\n\n{_catalogue.BEGIN}\nold\n{_catalogue.END}\n\noutro\n"
    new = _catalogue.replaced(text, "new", "x.md")
    assert new == f"intro\n\n{_catalogue.BEGIN}\n\nnew\n\n{_catalogue.END}\n\noutro\n"
    assert _catalogue.generated(new, "x.md") == "new"
    assert _catalogue.replaced(new, "new", "x.md") == new


@pytest.mark.parametrize(
    "text",
    [
        "no markers",
        f"{_catalogue.BEGIN}\nonly a beginning\n",
        f"{_catalogue.END}\n{_catalogue.BEGIN}\n",
        f"{_catalogue.BEGIN}\n{_catalogue.END}\n{_catalogue.BEGIN}\n{_catalogue.END}\n",
    ],
)
def test_markers_must_be_there_once(text):
    with pytest.raises(ValueError, match="x.md: expected one line"):
        _catalogue.block(text, "x.md")


def test_write_rewrites_a_stale_block(tmp_path):
    for name in GENERATED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    _catalogue.write(tmp_path, GENERATED)  # current, whatever the checkout's state
    readme = tmp_path / "README.md"
    current = readme.read_text(encoding="utf-8")
    readme.write_text(current.replace("| `adam` |", "| `adam` | edited by hand |", 1))
    assert _catalogue.stale(tmp_path, GENERATED) == ["README.md"]
    assert _catalogue.write(tmp_path, GENERATED) == ["README.md"]
    assert readme.read_text(encoding="utf-8") == current
    assert _catalogue.stale(tmp_path, GENERATED) == []
    assert _catalogue.write(tmp_path, GENERATED) == []


# ---------------------------------------------------------------------- the CLI


def test_main_prints_the_table_and_the_catalogue(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == readme_table() + "\n"
    assert main(["catalogue"]) == 0
    assert capsys.readouterr().out == catalogue() + "\n"


def test_main_write_without_markers_fails_clearly(tmp_path, monkeypatch, capsys):
    for name in GENERATED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("no markers\n")
    monkeypatch.setattr("gradtx._registry.ROOT", tmp_path)
    assert main(["--write"]) == 1
    assert "expected one line" in capsys.readouterr().err


def test_the_keywords_an_update_takes_are_declared_once():
    # The package registry's ``takes`` (read by the demo) and the test cases' ``needs``
    # agree; SAM's grad_fn belongs to its opaque mode, a case setting, not the optimizer.
    for case in REGISTRY:
        declared = set(OPTIMIZERS[case.name].takes)
        assert set(case.needs) - {"grad_fn"} == declared, (case.id, case.needs, declared)
