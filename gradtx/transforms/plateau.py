"""Reduce on plateau: a scale on the updates driven by the loss, as torch's
``ReduceLROnPlateau``."""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, float_dtype, hyperparameterized
from gradtx._checks import check_choice, check_hyperparam

_CALL = "gradtx.reduce_on_plateau"


class ReduceOnPlateauState(NamedTuple):
    """``best``: best metric so far (±inf before the first); ``num_bad_steps``:
    consecutive non-improving steps; ``cooldown_count``: steps of cooldown
    left; ``scale``: the factor on the updates (1 at the start)."""

    best: jax.Array
    num_bad_steps: jax.Array
    cooldown_count: jax.Array
    scale: jax.Array


def _improved(value, best, threshold, mode, threshold_mode):
    # torch's _is_better, term for term, so float64 decisions agree exactly.
    if mode == "min":
        return value < (best * (1.0 - threshold) if threshold_mode == "rel" else best - threshold)
    return value > (best * (threshold + 1.0) if threshold_mode == "rel" else best + threshold)


def _reduce_on_plateau(*, factor, threshold, min_scale, patience, cooldown, mode, threshold_mode):
    dtype = float_dtype()
    factor, threshold, min_scale, patience = (
        jnp.asarray(v).astype(dtype) for v in (factor, threshold, min_scale, patience)
    )
    cooldown = jnp.asarray(cooldown).astype(jnp.int32)

    def init(params):
        worst = jnp.inf if mode == "min" else -jnp.inf
        zero = jnp.zeros([], jnp.int32)
        return ReduceOnPlateauState(jnp.asarray(worst, dtype), zero, zero, jnp.ones([], dtype))

    def update(updates, state, params=None, **extra):
        value = extra.get("value")
        if value is None:
            raise TypeError(
                f"{_CALL}.update: needs the metric as a keyword, "
                "update(updates, state, params, value=loss)"
            )
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"{_CALL}.update: value must be a scalar, got shape {jnp.shape(value)}"
            )
        value = jnp.asarray(value).astype(dtype)
        better = _improved(value, state.best, threshold, mode, threshold_mode)
        best = jnp.where(better, value, state.best)
        bad = jnp.where(better, 0, _tree.safe_increment(state.num_bad_steps))
        in_cooldown = state.cooldown_count > 0
        cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad.astype(dtype) > patience
        # torch applies a reduction only when it lowers the rate (min_lr may stop it).
        reduced = jnp.minimum(state.scale, jnp.maximum(state.scale * factor, min_scale))
        scale = jnp.where(reduce, reduced, state.scale)
        cooldown_count = jnp.where(reduce, cooldown, cooldown_count).astype(jnp.int32)
        bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
        updates = jax.tree.map(lambda u: u * _tree.scalar_like(scale, u), updates)
        return updates, ReduceOnPlateauState(best, bad, cooldown_count, scale)

    return GradientTransformation(init, update)


def _check_count(name, value):
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        raise TypeError(f"{_CALL}({name}={value!r}): {name} must be an int")
    check_hyperparam(_CALL, name, value, low=0.0)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    *,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_scale: float = 0.0,
    mode: str = "min",
) -> GradientTransformation:
    """Scale the updates down when a metric stops improving (torch ``ReduceLROnPlateau``).

    Each ``update(updates, state, params, value=loss)`` first folds ``value``
    into the plateau statistics, then multiplies the updates by the resulting
    scale, so the scales equal torch's ``lr / base_lr`` after each
    ``scheduler.step(loss)``::

      better = value < best·(1 − threshold)   (min, rel)   | value < best − threshold (min, abs)
               value > best·(1 + threshold)   (max, rel)   | value > best + threshold (max, abs)
      best, bad = (value, 0) if better else (best, bad + 1)
      if cooldown_count > 0: cooldown_count −= 1; bad = 0
      if bad > patience: scale = max(scale·factor, min_scale); cooldown_count = cooldown; bad = 0

    So the first reduction comes after ``patience + 1`` non-improving steps.
    Place it last in a chain (after the learning rate): ``chain(adam(1e-3),
    reduce_on_plateau())``.  ``factor``, ``threshold``, ``min_scale``,
    ``patience`` and ``cooldown`` are all data in the state (``set_hyperparams``
    changes them without recompiling; the last two are compared as numbers).

    Differences: torch's ``min_lr`` is absolute, ``min_scale`` is relative to
    the base rate; torch skips reductions smaller than ``eps=1e-8`` in absolute
    learning rate, gradtx applies every reduction (torch with ``eps=0``).
    optax ``contrib.reduce_on_plateau`` counts patience differently (its
    ``patience = p + 1``), has no max mode and no relative threshold for it.

    Args:
      factor: multiplier of the scale at a reduction, in [0, 1).
      patience: non-improving steps tolerated before a reduction.
      threshold: the least improvement that counts.
      threshold_mode: "rel" (fraction of best) or "abs".
      cooldown: steps after a reduction during which bad steps are not counted.
      min_scale: lower bound of the scale.
      mode: "min" (loss) or "max" (accuracy).
    """
    check_hyperparam(_CALL, "factor", factor, low=0.0, high=1.0, high_open=True)
    _check_count("patience", patience)
    check_hyperparam(_CALL, "threshold", threshold, low=0.0)
    check_choice(_CALL, "threshold_mode", threshold_mode, ("rel", "abs"))
    _check_count("cooldown", cooldown)
    check_hyperparam(_CALL, "min_scale", min_scale, low=0.0)
    check_choice(_CALL, "mode", mode, ("min", "max"))
    build = functools.partial(_reduce_on_plateau, mode=mode, threshold_mode=threshold_mode)
    values = dict(
        factor=factor,
        threshold=threshold,
        min_scale=min_scale,
        patience=patience,
        cooldown=cooldown,
    )
    return hyperparameterized(build, values)
