"""Combining schedules: end to end (``join``) and multiplied (``product``)."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import is_schedule
from gradtx.schedules._common import Schedule
from gradtx.schedules._common import as_float
from gradtx.schedules._common import check_steps
from gradtx.schedules._common import concrete
from gradtx.schedules._common import float_vector
from gradtx.schedules._common import schedule_class
from gradtx.schedules._counts import as_count
from gradtx.schedules._counts import count_ge
from gradtx.schedules._counts import count_shift
from gradtx.schedules._counts import is_integer
from gradtx.schedules._counts import whole
from gradtx.schedules._spellings import torch_names


def _members(call: str, schedules: Any, example: str) -> tuple:
    """The member schedules as a non-empty tuple of callables."""
    if callable(schedules) or isinstance(schedules, (str, bytes)):
        raise TypeError(
            f"{call}(schedules={schedules!r}): schedules must be a list of schedules, "
            f"e.g. {example}"
        )
    try:
        schedules = tuple(schedules)
    except TypeError:
        raise TypeError(
            f"{call}(schedules={schedules!r}): schedules must be a list of schedules, "
            f"e.g. {example}"
        ) from None
    if not schedules:
        raise ValueError(f"{call}(schedules=()): need at least one schedule")
    for s in schedules:
        if not callable(s):
            raise TypeError(f"{call}(schedules=...): {s!r} is not a schedule")
    return schedules


def _join(schedules, boundaries, count, as_boundary):
    value = schedules[0](count)
    for i, schedule in enumerate(schedules[1:]):
        b = as_boundary(boundaries, i)
        # Later schedules restart their own count at their boundary, as in optax.
        # Clamped at 0: before the boundary the value is discarded, and a negative
        # count could make a NaN there, which jnp.where would still pass to the
        # gradient (jax.grad(schedule) would be NaN).
        if not is_integer(count):
            after = schedule(jnp.maximum(as_count(count) - as_float(b), 0))
        elif _whole_number(b):
            after = schedule(count_shift(count, b))
        else:
            # A float array (stored in state, or traced).  Fractional, it gives the
            # member the float count k − b, as optax does.  Whole, the integer count
            # k − b, exact at every count, plus a term that is 0 but has the
            # gradient w.r.t. b of the float count's value (slope · d(k − b)/db).
            shift = jnp.maximum(as_count(count) - as_float(b), 0)
            shifted, slope = jax.jvp(schedule, (shift,), (jnp.ones_like(shift),))
            slope = jnp.where(jnp.isfinite(slope), slope, jnp.zeros_like(slope))
            exact = schedule(count_shift(count, b))
            exact = exact + slope * (shift - jax.lax.stop_gradient(shift))
            after = jnp.where(whole(as_float(b)), exact, shifted)
        value = jnp.where(count_ge(count, b), after, value)
    return value


def _whole_number(b: Any) -> bool:
    """A boundary known (without tracing) to be a whole number.  A concrete float array
    (an eager step reading the state) is one too: nothing differentiates with respect
    to it, so it needs no jvp (which costs an eager step more than the rest)."""
    if isinstance(b, jax.Array):
        if jnp.issubdtype(b.dtype, jnp.integer):
            return True
        if isinstance(b, jax.core.Tracer):
            return False
        return bool(np.all(np.mod(np.asarray(b), 1) == 0))  # one per run when batched
    return float(b).is_integer()


@schedule_class
class Join(Schedule):
    """``schedules[i](k − boundaries[i−1])`` for ``boundaries[i−1] ≤ k < boundaries[i]``.

    ``schedules`` is a tuple of gradtx schedules (their numbers are leaves of
    this one); ``boundaries`` is a 1-D array.
    """

    _steps = ("boundaries",)

    schedules: tuple
    boundaries: Any

    def __call__(self, count):
        # the last axis: a state made under jax.vmap holds one row of boundaries per run
        return _join(self.schedules, self.boundaries, count, lambda b, i: b[..., i])


@torch_names(schedulers="schedules=schedulers", milestones="boundaries=milestones")
def join(schedules: Sequence[Callable], boundaries: Sequence[int]) -> Join | Callable:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` restarted
    at 0, and so on.

    ``η_k = schedules[i](k − boundaries[i−1])`` for ``boundaries[i−1] ≤ k <
    boundaries[i]``.

    Args:
      schedules: one or more schedules (gradtx schedules or plain callables).
      boundaries: ``len(schedules) − 1`` non-decreasing steps ≥ 0, a list (JAX
        arrays, traced too, are accepted; a fractional float array starts its
        member at the float count ``k − boundary``, as optax does).

    Returns:
      A ``Join`` when every member is a gradtx schedule (its members' numbers live
      in optimizer state, addressed as ``learning_rate.schedules.1.peak_value``);
      with a plain Python callable among them, a plain callable.

    Equals optax ``join_schedules`` and torch ``SequentialLR(schedulers,
    milestones)`` (whose members also restart at each milestone), but for a
    first member that is a ``SequentialLR`` or ``ChainedScheduler`` itself,
    which torch steps once more at construction (docs/porting_from_pytorch.md).
    """
    call = "gradtx.schedules.join"
    schedules = _members(call, schedules, "join([warmup, decay], [warmup_steps])")
    try:
        boundaries = [concrete(b) for b in boundaries]  # a known JAX array: check_steps
    except TypeError:
        n = max(len(schedules) - 1, 1)
        example = f"[{boundaries!r}]" if isinstance(boundaries, int) and n == 1 else "[100, 500]"
        raise TypeError(
            f"{call}(boundaries={boundaries!r}): boundaries must be a list of steps, one "
            f"per schedule after the first ({len(schedules) - 1} here): schedules[i + 1] "
            f"starts at step boundaries[i]; e.g. boundaries={example}"
        ) from None
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{call}(boundaries={boundaries}): need len(schedules) - 1 = "
            f"{len(schedules) - 1} boundaries, got {len(boundaries)}"
        )
    boundaries = [check_steps(call, "boundaries", b, positive=False) for b in boundaries]
    if any(
        isinstance(a, numbers.Number) and isinstance(b, numbers.Number) and b < a
        for a, b in zip(boundaries, boundaries[1:])
    ):
        raise ValueError(f"{call}(boundaries={boundaries}): boundaries must be non-decreasing")
    if all(is_schedule(s) for s in schedules):
        return Join(schedules, float_vector(call, "boundaries", boundaries))

    def joined(count):
        return _join(schedules, boundaries, count, lambda b, i: b[i])

    return joined


def _product(schedules, count):
    value = schedules[0](count)
    for schedule in schedules[1:]:
        value = value * schedule(count)
    return value


@schedule_class
class Product(Schedule):
    """``Π_i schedules[i](k)``; ``schedules`` is a tuple of gradtx schedules."""

    schedules: tuple

    def __call__(self, count):
        return _product(self.schedules, count)


@torch_names(schedulers="schedules=schedulers")
def product(schedules: Sequence[Callable]) -> Product | Callable:
    """The product of schedules' values at each step: torch ``ChainedScheduler``.

    ``η_k = Π_i schedules[i](k)``.  Give one member the learning rate and the
    others ``init_value=1`` (they are then factors), e.g. torch's
    ``ChainedScheduler([ConstantLR(opt, 0.1, 20), ExponentialLR(opt, 0.9)])``
    with lr 0.05 is ``product([constant_warmup(0.05, 0.1, 20),
    exponential_decay(1.0, 1, 0.9)])``.

    Args:
      schedules: one or more schedules (gradtx schedules or plain callables).

    Returns:
      A ``Product`` when every member is a gradtx schedule (its members' numbers
      live in optimizer state, as ``learning_rate.schedules.1.decay_rate``);
      with a plain Python callable among them, a plain callable.

    ``ChainedScheduler`` steps each member on the current lr in turn.  For
    members whose step multiplies the lr by a factor (``ConstantLR``,
    ``LinearLR``, ``ExponentialLR``, ``StepLR``, ``MultiStepLR``,
    ``MultiplicativeLR``, ``PolynomialLR``, and ``CosineAnnealingLR`` with
    ``eta_min=0`` up to ``T_max``) that is this product, tested.  Members that set
    the lr outright (``LambdaLR``, ``OneCycleLR``, ``CyclicLR``,
    ``CosineAnnealingWarmRestarts``) or add to it (``CosineAnnealingLR`` with
    ``eta_min > 0`` or past ``T_max``) do not compose as a product in torch;
    there the torch result depends on the members' order, here it does not.
    Named ``product`` (not ``chain``) because it multiplies: ``gradtx.chain``
    composes transforms in sequence, which for schedules is ``join``.
    optax has no equivalent.
    """
    schedules = _members(
        "gradtx.schedules.product", schedules, "product([constant_warmup(...), decay])"
    )
    if all(is_schedule(s) for s in schedules):
        return Product(schedules)

    def multiplied(count):
        return _product(schedules, count)

    return multiplied
