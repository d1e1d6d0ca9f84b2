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

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._specs import Hyper
from gradtx._specs import Option


class Alias(Option):
    """optax's name for the argument ``target``, checked by ``spec``.

    Attributes:
      target: the torch-named argument that stores the number.
      spec: the checks for a value given under this name.
      default: the shared default (this argument's signature default);
        ``to_target(default)`` is the target's.
      to_target: maps a value given here to the target's units (a sign flip).
    """

    target: str

    def __init__(
        self, target: str, spec: Hyper | Option, default: Any, to_target: Callable = lambda v: v
    ) -> None:
        self.target, self.spec, self.default, self.to_target = target, spec, default, to_target

    def check(self, call, name, value):
        return value if same(value, self.default) else self.spec.check(call, name, value)


def same(value: Any, default: Any) -> bool:
    """``value`` is concretely ``default``: a Python/NumPy number or a concrete 0-d JAX
    array (``optax.inject_hyperparams`` passes every number as one) equal to it."""
    if isinstance(value, (tuple, list)) and isinstance(default, (tuple, list)):
        return len(value) == len(default) and all(same(v, d) for v, d in zip(value, default))
    if isinstance(value, (tuple, list)) or isinstance(default, (tuple, list)):
        return False  # a number for a tuple's default (or the reverse) is given, not default
    if value is None or default is None:
        return value is default
    if isinstance(value, (bool, np.bool_)):
        return False
    concrete = isinstance(value, jax.Array) and not traced(value) and value.ndim == 0
    if not (concrete or isinstance(value, (int, float, np.generic))):
        return False  # traced arrays and other kinds count as given
    number = np.asarray(value)
    if np.issubdtype(number.dtype, np.complexfloating):
        return False  # given; the spec's check refuses it
    if not np.issubdtype(number.dtype, np.floating):
        return float(value) == float(default)  # an int is exact: 0 is not 0.95
    # a float in its own precision: float32(0.8) is the default 0.8
    return bool(number == np.asarray(default).astype(number.dtype))


def traced(value: Any) -> bool:
    """A value known only when the step runs (``optax.inject_hyperparams``'s update)."""
    return isinstance(value, jax.core.Tracer)


def fold(call: str, specs: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with every alias given a value moved onto its target (see the module)."""
    out = dict(arguments)
    for name, spec in specs.items():
        if not isinstance(spec, Alias) or same(out[name], spec.default):
            continue
        if traced(out[name]):
            # A traced alias beside a default target is the value.  Under
            # optax.inject_hyperparams both names are traced: off the shared default the
            # alias is the value; at it the target is, plus (while the target is at its
            # default) the alias's offset from the default, exactly 0, so that jax.grad
            # from the default flows to either name.  A target that is None (no such
            # stage) stays None: a stage cannot appear at run time.
            alias, target = out[name], out[spec.target]
            default = spec.to_target(spec.default)
            if target is not None and same(target, default):
                out[spec.target] = spec.to_target(alias)
            elif target is not None:
                offset = spec.to_target(alias) - default
                given = alias != spec.default
                offset = jnp.where(target == default, offset, 0)  # a set target: its own
                out[spec.target] = jnp.where(given, spec.to_target(alias), target + offset)
            out[name] = spec.default
            continue
        if not (traced(out[spec.target]) or same(out[spec.target], spec.to_target(spec.default))):
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
