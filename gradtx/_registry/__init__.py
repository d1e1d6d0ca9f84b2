"""The registry of named optimizers: one entry per public optimizer.

``optimizer(references=..., **specs)`` is ``factory(counted=True, **specs)``
plus an entry here.  The demo's ``--optimizers`` list, the README's optimizer
table and ``docs/optimizers.md``'s catalogue (rendered from the docstrings by
``gradtx._catalogue``) and, through ``tests/registry.py``, the contract, error
and Flax tests all read it, so a new optimizer is covered everywhere by its
decorator and one test case.

``python -m gradtx._registry readme`` prints the README's table,
``python -m gradtx._registry catalogue`` the catalogue, and
``python -m gradtx._registry --write`` rewrites both in place, between the
marker comments of README.md and docs/optimizers.md, and the README's prose
numbers (``readme_prose``: how many optimizers, and which are neither torch's
nor optax's); ``tests/test_registry.py`` fails while any differs from what the
registry renders.
"""

from __future__ import annotations

import argparse
import inspect
import pathlib
import re
import sys
from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import ParamSpec
from typing import TypeVar

from gradtx import _catalogue
from gradtx._base import GradientTransformation
from gradtx._factory import factory
from gradtx._specs import Hyper
from gradtx._specs import Option

P = ParamSpec("P")
T = TypeVar("T")


class OptimizerInfo(NamedTuple):
    """A registered optimizer.

    Attributes:
      name: the public name (``gradtx.<name>``).
      factory: the factory.
      references: what it is tested against, step by step (the README's column).
      takes: the keywords its ``update`` needs besides grads, state and params
        (``"value"``: the loss at the params; ``"value_fn"``, ``"obj_fn"``: the
        loss as a function of the params).  The demo passes them.
      example_axis: ``update`` takes per-example gradients (DP-SGD).
    """

    name: str
    factory: Callable[..., Any]
    references: str
    takes: tuple[str, ...] = ()
    example_axis: bool = False

    @property
    def doc(self) -> _catalogue.Docstring:
        """The docstring, split along the template (summary, equations, sections)."""
        return _catalogue.parse(inspect.getdoc(self.factory) or "")


OPTIMIZERS: dict[str, OptimizerInfo] = {}


def optimizer(
    *,
    references: str,
    counted: bool = True,
    takes: tuple[str, ...] = (),
    derive: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    example_axis: bool = False,
    **specs: Hyper | Option,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Declare a named optimizer: ``factory(counted=True, own_gradient=True, **specs)`` and a
    registry entry.

    ``counted=False`` is for wrappers of another optimizer (``lookahead``),
    whose inner optimizer keeps the step count.  ``takes`` names the keywords
    its ``update`` needs (``OptimizerInfo.takes``); ``example_axis``: it takes
    per-example gradients (DP-SGD).
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        made = factory(
            kind=GradientTransformation, counted=counted, derive=derive, own_gradient=True,
            example_axis=example_axis, **specs,
        )(fn)  # fmt: skip
        if fn.__name__ in OPTIMIZERS:  # a copied file left unrenamed would replace a row
            raise ValueError(f"gradtx._registry.optimizer: {fn.__name__!r} is already registered")
        OPTIMIZERS[fn.__name__] = OptimizerInfo(fn.__name__, made, references, takes, example_axis)
        return made

    return decorate


ROOT = pathlib.Path(__file__).resolve().parents[2]
"""The checkout: README.md and docs/ are there."""


def readme_table() -> str:
    """The README's optimizer table: name, summary, what it is tested against."""
    return _catalogue.table(OPTIMIZERS.values())


def catalogue() -> str:
    """``docs/optimizers.md``'s catalogue: every optimizer's docstring, by family file."""
    return _catalogue.catalogue(OPTIMIZERS.values())


GENERATED: dict[str, Callable[[], str]] = {
    "README.md": readme_table,
    "docs/optimizers.md": catalogue,
}
"""The files with a generated block, and what renders it."""


def others() -> list[str]:
    """The registered optimizers whose references are neither torch.optim nor optax."""
    refs = {name: entry.references for name, entry in OPTIMIZERS.items()}
    return sorted(n for n, r in refs.items() if "torch.optim." not in r and "optax." not in r)


def primitives() -> list[str]:
    """gradtx's public transforms from ``gradtx/transforms/``: the functions there that
    return a transform (not ``schedule_free_eval_params``, which returns params)."""
    import gradtx  # the package imports this module while it loads

    found = []
    for name in dir(gradtx):
        fn = getattr(gradtx, name)
        module = getattr(fn, "__module__", None) or ""
        if (
            name.startswith("_")
            or inspect.isclass(fn)
            or not module.startswith("gradtx.transforms")
        ):
            continue
        returns = str(inspect.signature(fn).return_annotation)
        if "GradientTransformation" in returns or "GradientMap" in returns:
            found.append(name)
    return found


def readme_prose(text: str) -> str:
    """README.md's ``text`` with the registry's numbers in its prose: the count of named
    optimizers (in the introduction and the comparison table), the list of those
    whose references are neither torch.optim nor optax (``plus `a`, `b` and `c```,
    the same two places) and the count of primitives.  A ``ValueError`` where a
    sentence is not there as often."""
    names = [f"`{n}`" for n in others()]
    if not names:
        raise ValueError("README.md: no optimizer to list after 'plus'; reword the sentences")
    listed = f"{', '.join(names[:-1])} and {names[-1]}" if names[1:] else names[0]
    n = len(OPTIMIZERS)
    names_list = r"`\w+`(?:,\s+`\w+`)*(?:,?\s+and\s+`\w+`)?"
    rules = (  # (pattern, replacement, how many times README.md says it)
        (r"gradtx has\s+\d+\s+named optimizers", f"gradtx has {n} named optimizers", 1),
        (r"\| optimizers \| \d+:", f"| optimizers | {n}:", 1),
        # after the introduction's list of what gradtx has, and in the comparison table
        (rf"(?<=\),\s)plus\s+{names_list}(?=\s+\(Lookahead)", f"plus {listed}", 1),
        (rf"(?<=catalogue, )plus\s+{names_list}(?=\s+\|)", f"plus {listed}", 1),
        (
            r"\*\*Primitives\*\* \(\d+ transforms",
            f"**Primitives** ({len(primitives())} transforms",
            1,
        ),
    )
    for pattern, replacement, times in rules:
        # a function, so the replacement is taken as literal text (no escapes)
        text, found = re.subn(pattern, lambda _: replacement, text)
        if found != times:
            raise ValueError(f"README.md: expected {pattern!r} {times} time(s), found {found}")
    return text


def write_readme_prose(root: pathlib.Path) -> bool:
    """Rewrite ``root / "README.md"``'s prose numbers (``readme_prose``); whether they changed."""
    path = root / "README.md"
    text = path.read_text(encoding="utf-8")
    new = readme_prose(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """``python -m gradtx._registry [readme | catalogue | --write]``."""
    parser = argparse.ArgumentParser(
        prog="python -m gradtx._registry",
        description="Print the README's optimizer table (readme, the default) or "
        "docs/optimizers.md's catalogue (catalogue), rendered from the registry.",
    )
    parser.add_argument("what", nargs="?", choices=("readme", "catalogue"), default="readme")
    parser.add_argument(
        "--write",
        action="store_true",
        help="rewrite the generated blocks of " + ", ".join(GENERATED) + " and README.md's counts",
    )
    args = parser.parse_args(argv)
    if args.write:
        try:
            changed = _catalogue.write(ROOT, GENERATED)
            if write_readme_prose(ROOT) and "README.md" not in changed:
                changed.insert(0, "README.md")
        except (OSError, ValueError) as e:  # no checkout, or its markers are missing
            print(f"python -m gradtx._registry --write: {e}", file=sys.stderr)
            return 1
        # the checkout gradtx is imported from, which an editable install may place
        # elsewhere than the working directory
        done = f"rewrote {', '.join(changed)}" if changed else "up to date: " + ", ".join(GENERATED)
        print(f"{done} (in {ROOT})")
    else:
        print(GENERATED["README.md" if args.what == "readme" else "docs/optimizers.md"]())
    return 0
