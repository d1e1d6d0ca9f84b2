"""The registry of named optimizers: one entry per public optimizer.

``optimizer(references=..., **specs)`` is ``factory(counted=True, **specs)``
plus an entry here.  The demo's ``--optimizers`` list, the README's and
``docs/optimizers.md``'s tables (``python -m gradtx._registry``) and, through
``tests/registry.py``, the contract, error and Flax tests all read it, so a
new optimizer is covered everywhere by its decorator and one test case.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar

from gradtx._base import GradientTransformation
from gradtx._factory import Hyper, Option, factory

P = ParamSpec("P")
T = TypeVar("T")


class OptimizerInfo(NamedTuple):
    """A registered optimizer.

    Attributes:
      name: the public name (``gradtx.<name>``).
      factory: the factory.
      references: what it is tested against, step by step (the README's column).
    """

    name: str
    factory: Callable[..., Any]
    references: str

    @property
    def chain(self) -> str:
        """The docstring's ``Chain:`` paragraph, on one line."""
        doc = inspect.getdoc(self.factory) or ""
        if "Chain:" not in doc:
            return ""
        text = doc.split("Chain:", 1)[1].split("\n\n", 1)[0]
        return " ".join(text.split())

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.factory) or "").split("\n", 1)[0]


OPTIMIZERS: dict[str, OptimizerInfo] = {}


def optimizer(
    *,
    references: str,
    counted: bool = True,
    derive: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    **specs: Hyper | Option,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Declare a named optimizer: ``factory(counted=True, **specs)`` and a registry entry.

    ``counted=False`` is for wrappers of another optimizer (``lookahead``),
    whose inner optimizer keeps the step count.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        made = factory(kind=GradientTransformation, counted=counted, derive=derive, **specs)(fn)
        OPTIMIZERS[fn.__name__] = OptimizerInfo(fn.__name__, made, references)
        return made

    return decorate


def markdown_table() -> str:
    """The README's optimizer table, from the registry."""
    rows = ["| optimizer | chain of primitives | tested against |", "|---|---|---|"]
    for info in sorted(OPTIMIZERS.values(), key=lambda i: i.name):
        rows.append(f"| `{info.name}` | {info.chain} | {info.references} |")
    return "\n".join(rows)


if __name__ == "__main__":
    # Run as a script this file is __main__, a second copy of the module: read the
    # registry that importing gradtx filled, in gradtx._registry.
    import gradtx._registry

    print(gradtx._registry.markdown_table())
