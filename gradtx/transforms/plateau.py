"""Reduce on plateau: a scale on the updates driven by a metric, as torch's
``ReduceLROnPlateau``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics
from gradtx import _update_checks
from gradtx._base import REPORTED
from gradtx._base import GradientTransformation
from gradtx._base import float_dtype
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Hyper
from gradtx.transforms.scaling import scaled


class ReduceOnPlateauState(NamedTuple):
    """``best``: best metric so far (±inf before the first); ``num_bad_steps``:
    consecutive non-improving metric reports; ``cooldown_count``: reports of
    cooldown left; ``scale``: the factor on the updates (1 at the start).

    ``gradtx.get_hyperparams`` reports ``scale`` next to the hyperparameters,
    so the learning rate in effect is ``learning_rate * scale``.
    """

    best: jax.Array
    num_bad_steps: jax.Array
    cooldown_count: jax.Array
    scale: jax.Array


REPORTED[ReduceOnPlateauState] = ("scale",)


def _improved(value, best, threshold, mode, threshold_mode):
    # torch's _is_better, term for term, so float64 decisions agree exactly.
    rel = threshold_mode == "rel"
    if mode == "min":
        torchs = value < (best * (1.0 - threshold) if rel else best - threshold)
    else:
        torchs = value > (best * (threshold + 1.0) if rel else best + threshold)
    if value.dtype == jnp.float64:
        return torchs
    # In float32, rounding best·(1 − t) or best − t moves the boundary by an ulp of best,
    # a large part of the margin (6e-4 of it for a relative t = 1e-4).  The same test as
    # a gain against the margin is exact where the gain is, for a value within a factor
    # of 2 of best (Sterbenz), and best·t keeps its relative precision; elsewhere, and
    # before a first report (best infinite), torch's form decides.
    gain = best - value if mode == "min" else value - best
    exact = jnp.isfinite(best) & (jnp.abs(gain) <= jnp.minimum(jnp.abs(value), jnp.abs(best)))
    return jnp.where(exact, gain > (best * threshold if rel else threshold), torchs)


COUNT = Hyper(low=0.0, integer=True)


@factory(factor=Hyper(0.0, 1.0, high_open=True), patience=COUNT, threshold=NON_NEGATIVE,
         threshold_mode=Choice("rel", "abs"), cooldown=COUNT, min_scale=NON_NEGATIVE,
         mode=Choice("min", "max"))  # fmt: skip
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

    An ``update(updates, state, params, value=metric)`` is one scheduler step:
    it first folds ``value`` into the plateau statistics, then multiplies the
    updates by the resulting scale.  An update without ``value`` (or
    ``value=None``) leaves the statistics alone and applies the current scale.
    torch's habit of one ``scheduler.step(val_loss)`` per epoch, after that
    epoch's ``optimizer.step()`` calls, is therefore: pass ``value=val_loss``
    with the first update after the metric is known (the next epoch's first
    batch); every update then uses torch's learning rate (tested).  The scales
    equal torch's ``lr / base_lr`` after each ``scheduler.step``::

      better = value < best·(1 − threshold)   (min, rel)   | value < best − threshold (min, abs)
               value > best·(1 + threshold)   (max, rel)   | value > best + threshold (max, abs)
      best, bad = (value, 0) if better else (best, bad + 1)
      if cooldown_count > 0: cooldown_count −= 1; bad = 0
      if bad > patience: scale = max(scale·factor, min_scale); cooldown_count = cooldown; bad = 0

    So the first reduction comes after ``patience + 1`` non-improving reports.
    Place it last in a chain (after the learning rate): ``chain(adam(1e-3),
    reduce_on_plateau())``.  ``factor``, ``threshold``, ``min_scale``,
    ``patience`` and ``cooldown`` are data in the state (``set_hyperparams``
    changes them without recompiling); ``get_hyperparams`` also reports the
    current ``scale``.

    Differences: torch's ``min_lr`` is absolute, ``min_scale`` is relative to
    the base rate; torch skips reductions smaller than ``eps=1e-8`` in absolute
    learning rate, gradtx applies every reduction (torch with ``eps=0``).
    Scaling the updates is torch's lowered ``lr`` only for rules whose step
    is proportional to it (SGD, Adam, RMSprop, ...).  Adafactor, ASGD, Rprop
    and L-BFGS use the rate inside the rule; for them keep this transform
    apart (``plateau.update({}, watch, value=metric)``).  Adafactor and L-BFGS
    then take ``set_hyperparams(state, learning_rate=base * scale)`` after
    each report, ASGD one update later (torch computes the next step's
    ``eta`` at the end of a step, see ``asgd``), and Rprop not at all (torch
    reads its ``lr`` only at the first step).  Keep it apart too after an
    optimizer that takes the batch loss as ``value`` (``polyak_sgd``, ``momo``,
    ``momo_adam``, ``lbfgs``): in one chain every update's loss would reach the
    plateau as a metric report (optax's shares the keyword the same way).
    optax ``contrib.reduce_on_plateau`` counts patience differently (its
    ``patience = p + 1``), has no max mode and no relative threshold for it.

    Args:
      factor: multiplier of the scale at a reduction, in [0, 1).
      patience: non-improving reports tolerated before a reduction.
      threshold: the least improvement that counts.
      threshold_mode: "rel" (fraction of best) or "abs".
      cooldown: reports after a reduction during which bad ones are not counted.
      min_scale: lower bound of the scale.
      mode: "min" (loss) or "max" (accuracy).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(patience=0))
      >>> params = jnp.ones(2)
      >>> state = opt.init(params)
      >>> for loss in [1.0, 1.0]:  # one metric per epoch; the second does not improve
      ...     updates, state = opt.update(jnp.ones(2), state, params, value=loss)
      >>> round(float(gradtx.get_hyperparams(state)["scale"]), 6)
      0.1
    """
    call = current_call("gradtx.reduce_on_plateau")
    dtype = float_dtype()

    def init(params):
        worst = jnp.inf if mode == "min" else -jnp.inf
        zero = jnp.zeros([], jnp.int32)
        return ReduceOnPlateauState(jnp.asarray(worst, dtype), zero, zero, jnp.ones([], dtype))

    def report(state, value):
        f, th, low, pat = (
            jnp.asarray(v).astype(dtype) for v in (factor, threshold, min_scale, patience)
        )
        value = jnp.asarray(value).astype(dtype)
        better = _improved(value, state.best, th, mode, threshold_mode)
        best = jnp.where(better, value, state.best)
        bad = jnp.where(better, 0, _numerics.safe_increment(state.num_bad_steps))
        in_cooldown = state.cooldown_count > 0
        cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad.astype(dtype) > pat
        # torch applies a reduction only when it lowers the rate (min_lr may stop it).
        reduced = jnp.minimum(state.scale, jnp.maximum(state.scale * f, low))
        scale = jnp.where(reduce, reduced, state.scale)
        cool = jnp.asarray(cooldown).astype(jnp.int32)
        cooldown_count = jnp.where(reduce, cool, cooldown_count).astype(jnp.int32)
        bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
        return ReduceOnPlateauState(best, bad, cooldown_count, scale)

    def update(updates, state, params=None, **extra):
        value = extra.get("value")
        misnamed = [k for k in ("loss", "metric") if k in extra]
        if value is None and misnamed:  # torch's scheduler.step(metric): an easy slip
            raise TypeError(
                f"{call}.update: the metric goes in value= (got {misnamed[0]}=), "
                "update(grads, state, params, value=metric)"
            )
        if value is not None:
            state = report(state, _update_checks.scalar_loss(f"{call}.update", value))
        return scaled(updates, state.scale), state

    return GradientTransformation(init, update)
