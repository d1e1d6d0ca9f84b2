"""optax's names for numbers torch also has: accepted, stored once under torch's name.

Where torch and optax name one quantity differently (Adafactor's ``d`` and
``clipping_threshold``, Muon's ``momentum`` and ``beta``), the optimizer takes
both.  The two share a default (the same number in both libraries), so the
rule needs no sentinel: an alias given a value other than that default
replaces the torch-named argument, which must then keep its own default.
The value is stored once, under torch's name, so ``set_hyperparams`` has one
entry to change.  ``fold`` applies the rule: the optimizer's ``derive`` runs
it on the user's call (before anything is stored), and its body runs it again
for a call made inside another factory's body, where ``derive`` does not run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradtx._specs import Hyper, Option


class Alias(Option):
    """optax's name for the argument ``target``, checked by ``spec``.

    Attributes:
      target: the torch-named argument that stores the number.
      spec: the checks for a value given under this name.
      default: the shared default (this argument's signature default);
        ``to_target(default)`` is the target's.
      to_target: maps a value given here to the target's units (a sign flip).
    """

    def __init__(
        self, target: str, spec: Hyper | Option, default: Any, to_target: Callable = lambda v: v
    ) -> None:
        self.target, self.spec, self.default, self.to_target = target, spec, default, to_target

    def check(self, call, name, value):
        return value if same(value, self.default) else self.spec.check(call, name, value)


def same(value: Any, default: Any) -> bool:
    """``value`` is concretely ``default``: a Python/NumPy value equal to it."""
    if isinstance(value, (tuple, list)) and isinstance(default, (tuple, list)):
        return len(value) == len(default) and all(same(v, d) for v, d in zip(value, default))
    if value is None or default is None:
        return value is default
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.generic)):
        return False  # arrays (possibly traced) and other kinds count as given
    return float(value) == float(default)


def fold(call: str, specs: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with every alias given a value moved onto its target (see the module)."""
    out = dict(arguments)
    for name, spec in specs.items():
        if not isinstance(spec, Alias) or same(out[name], spec.default):
            continue
        if not same(out[spec.target], spec.to_target(spec.default)):
            raise ValueError(
                f"{call}({name}=..., {spec.target}=...): {name} is optax's name for "
                f"{spec.target}; give one of them"
            )
        out[spec.target] = spec.to_target(out[name])
        out[name] = spec.default
    return out


def folding(specs: dict[str, Any], then: Callable | None = None) -> Callable:
    """A factory ``derive`` that folds the aliases of ``specs``, then runs ``then``."""

    def derive(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
        arguments = fold(call, specs, arguments)
        return arguments if then is None else then(call, arguments)

    return derive
