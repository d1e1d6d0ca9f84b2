"""Monotone schedules: constant, piecewise constant, exponential, inverse-time,
inverse square root, polynomial and linear.

Each schedule is a frozen dataclass of numbers registered as a pytree; see the
package docstring for why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradtx._checks import check_flag
from gradtx.schedules._common import Schedule
from gradtx.schedules._common import as_float
from gradtx.schedules._common import check_number
from gradtx.schedules._common import check_rate
from gradtx.schedules._common import check_steps
from gradtx.schedules._common import float_vector
from gradtx.schedules._common import is_number
from gradtx.schedules._common import lerp
from gradtx.schedules._common import safe_div
from gradtx.schedules._common import safe_pow
from gradtx.schedules._common import schedule_class
from gradtx.schedules._counts import as_count
from gradtx.schedules._counts import count_array
from gradtx.schedules._counts import count_ge
from gradtx.schedules._counts import count_periods
from gradtx.schedules._counts import count_shift
from gradtx.schedules._counts import is_integer
from gradtx.schedules._counts import steps_left
from gradtx.schedules._counts import steps_since
from gradtx.schedules._counts import whole
from gradtx.schedules._spellings import torch_names


@schedule_class
class Constant(Schedule):
    """``η_k = value``."""

    value: Any

    def __call__(self, count):
        t = as_count(count)
        return as_float(self.value) + jnp.zeros_like(t)


@torch_names()  # no torch keywords: names the call in its errors
def constant(value: float) -> Constant:
    """The schedule that always returns ``value``: ``η_k = value``.

    Args:
      value: the value, ≥ 0.

    Equals optax ``constant_schedule``; torch: no scheduler.
    """
    return Constant(check_number("gradtx.schedules.constant", "value", value, low=0.0))


@schedule_class
class PiecewiseConstant(Schedule):
    """``η_k = init_value · Π_{i: k ≥ boundaries[i]} scales[i]``."""

    _steps = ("boundaries",)

    init_value: Any
    boundaries: Any  # 1-D array
    scales: Any  # 1-D array

    def __call__(self, count):
        # Compared as integers (count >= ceil(boundary)): exact at every count.
        reached = count_ge(count_array(count)[..., None], self.boundaries)
        factors = jnp.where(reached, as_float(self.scales), 1.0)
        return as_float(self.init_value) * jnp.prod(factors, axis=-1)


@torch_names(
    milestones="boundaries_and_scales={milestone: gamma, ...}",
    gamma="boundaries_and_scales={milestone: gamma, ...}",
)
def piecewise_constant(
    init_value: float, boundaries_and_scales: Mapping[int, float] | None = None
) -> PiecewiseConstant:
    """Multiply by ``scale`` from step ``boundary`` on.

    ``η_k = η_0 · Π_{b ≤ k} scale_b``.

    Args:
      init_value: η_0 ≥ 0.
      boundaries_and_scales: a mapping ``{step: scale}`` (steps ≥ 0, scales ≥ 0);
        scales multiply, each from its step on (``count >= step``).

    Equals optax ``piecewise_constant_schedule`` and torch ``MultiStepLR(milestones,
    gamma)`` as ``{m: gamma for m in milestones}`` (a repeated milestone: multiply
    its gammas into one scale).
    """
    call = "gradtx.schedules.piecewise_constant"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    if boundaries_and_scales is None:
        boundaries_and_scales = {}
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"{call}(boundaries_and_scales={boundaries_and_scales!r}): boundaries_and_scales "
            "must be a mapping {step: scale}, e.g. {100: 0.1, 200: 0.1}"
        )
    items = sorted(
        (
            check_steps(call, "boundaries_and_scales", b, positive=False),
            check_number(call, "boundaries_and_scales", s, low=0.0),
        )
        for b, s in boundaries_and_scales.items()
    )
    return PiecewiseConstant(
        init_value,
        float_vector(call, "boundaries_and_scales", [b for b, _ in items]),
        float_vector(call, "boundaries_and_scales", [s for _, s in items]),
    )


@schedule_class
class ExponentialDecay(Schedule):
    """``η_k = init_value · decay_rate^((k − transition_begin)/transition_steps)``.

    ``staircase`` (0 or 1) floors the exponent; ``end_value`` NaN means unbounded.
    """

    _rates = ("decay_rate",)
    _flags = ("staircase",)

    init_value: Any
    transition_steps: Any
    decay_rate: Any
    transition_begin: Any
    staircase: Any
    end_value: Any

    def __call__(self, count):
        init, rate, end = map(as_float, (self.init_value, self.decay_rate, self.end_value))
        # Clamped at 0: before transition_begin rate^0 = 1 gives init_value, and no
        # rate^(negative p) can overflow (its inf would make jax.grad NaN).
        begin, steps = as_float(self.transition_begin), as_float(self.transition_steps)
        t = steps_since(count, self.transition_begin)
        p = t / steps
        stairs = jnp.floor(p)
        if is_integer(count):
            # Whole steps counted as integers: the stairs land on their steps at every count.
            exact = count_periods(count_shift(count, begin), steps)[0]
            stairs = jnp.where(whole(begin), exact, stairs)
        p = jnp.where(as_float(self.staircase) != 0, stairs, p)
        value = init * rate**p
        bounded = jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))
        return jnp.where(jnp.isnan(end), value, bounded)


@torch_names(
    gamma="decay_rate=gamma (ExponentialLR: transition_steps=1; StepLR: transition_steps=step_size, staircase=True)",
    step_size="transition_steps=step_size, staircase=True",
)
def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    *,
    staircase: bool = False,
    transition_begin: int = 0,
    end_value: float | None = None,
) -> ExponentialDecay:
    """Exponential decay (or growth) by ``decay_rate`` every ``transition_steps``.

    ``η_k = η_0 · r^(max(k − B, 0)/T)``; ``staircase`` floors the exponent.
    ``end_value`` bounds the value (below when ``r < 1``, above otherwise).

    Args:
      init_value: η_0 ≥ 0.
      transition_steps: T > 0.
      decay_rate: r > 0; r > 1 grows and then needs ``end_value`` and η_0 > 0.
      staircase: decay in steps of T (torch ``StepLR``).
      transition_begin: B ≥ 0, the steps held at η_0 first.
      end_value: the bound, ≥ 0 (None: unbounded).

    Equals optax ``exponential_decay`` and torch ``ExponentialLR(gamma)`` (T = 1),
    ``StepLR(step_size, gamma)`` (``staircase``, T = step_size) and
    ``MultiplicativeLR(lambda k: gamma)`` (T = 1).  Unlike optax, a non-positive
    ``transition_steps`` or a zero ``decay_rate`` is an error, not a silent
    constant, and so is growth without ``end_value`` (it reaches inf, then NaN
    updates) or from ``init_value=0`` (0, then ``0 · inf`` = NaN).
    """
    call = "gradtx.schedules.exponential_decay"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    transition_steps = check_steps(call, "transition_steps", transition_steps)
    decay_rate = check_number(call, "decay_rate", decay_rate, low=0.0, low_open=True)
    check_rate(call, "decay_rate", decay_rate)
    transition_begin = check_steps(call, "transition_begin", transition_begin, positive=False)
    check_flag(call, "staircase", staircase, bool)
    staircase = bool(staircase)  # a NumPy bool too, as every flag takes
    if end_value is not None:
        end_value = check_number(call, "end_value", end_value, low=0.0)
    if is_number(decay_rate) and decay_rate > 1:
        if end_value is None:
            raise ValueError(
                f"{call}(decay_rate={decay_rate!r}): decay_rate > 1 grows without bound "
                "(to inf, then NaN updates); pass end_value to cap it"
            )
        if is_number(init_value) and init_value == 0:
            raise ValueError(
                f"{call}(init_value={init_value!r}, decay_rate={decay_rate!r}): growing from "
                "init_value=0 stays 0 (and is NaN once decay_rate^k overflows); "
                "init_value must be > 0"
            )
    end = float("nan") if end_value is None else end_value
    return ExponentialDecay(
        init_value, transition_steps, decay_rate, transition_begin, staircase, end
    )


@schedule_class
class InverseTimeDecay(Schedule):
    """``η_k = init_value · (1 + k/decay_steps)^(−power)``."""

    init_value: Any
    decay_steps: Any
    power: Any

    def __call__(self, count):
        t = as_count(count)
        base = 1 + t / as_float(self.decay_steps)
        return as_float(self.init_value) * base ** (-as_float(self.power))


@torch_names()  # no torch keywords: names the call in its errors
def inverse_time_decay(
    init_value: float, decay_steps: float, power: float = 1.0
) -> InverseTimeDecay:
    """The reciprocal (1/t) schedule: ``η_k = η_0 (1 + k/decay_steps)^(−power)``.

    Args:
      init_value: η_0 ≥ 0.
      decay_steps: the steps to halve η (with ``power=1``), a real > 0.
      power: ≥ 0.

    With ``power=1`` this is TensorFlow's ``InverseTimeDecay``.  No torch or
    optax built-in; torch: ``LambdaLR(lambda k: (1 + k/decay_steps) ** -power)``.
    """
    call = "gradtx.schedules.inverse_time_decay"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    decay_steps = check_number(call, "decay_steps", decay_steps, low=0.0, low_open=True)
    power = check_number(call, "power", power, low=0.0)
    return InverseTimeDecay(init_value, decay_steps, power)


@schedule_class
class InverseSqrtDecay(Schedule):
    """``η_k = init_value / √(k + 1)``."""

    init_value: Any

    def __call__(self, count):
        return as_float(self.init_value) / jnp.sqrt(as_count(count) + 1)


@torch_names()  # no torch keywords: names the call in its errors
def inverse_sqrt_decay(init_value: float) -> InverseSqrtDecay:
    """Inverse square-root decay: ``η_k = η_0 / √(k + 1)``.

    Args:
      init_value: η_0 ≥ 0.

    No torch or optax built-in; torch: ``LambdaLR(lambda k: (k + 1) ** -0.5)``.
    """
    call = "gradtx.schedules.inverse_sqrt_decay"
    return InverseSqrtDecay(check_number(call, "init_value", init_value, low=0.0))


def _polynomial(init, end, power, steps, begin, count) -> jax.Array:
    rest = steps_left(count, steps, begin)
    steps = as_float(steps)
    t = jnp.minimum(steps_since(count, begin), steps)
    # (T - t)/T and not 1 - t/T: XLA may turn t/T into t·(1/T), an ulp off 1 at t = T,
    # and a small power makes that ulp a large value (0.1 → 0.025 of init in float64);
    # T - t is 0 exactly there.  The clamp keeps a fractional power's base nonnegative.
    frac = jnp.maximum(safe_div(rest, steps), 0.0)
    init, end, power = as_float(init), as_float(end), as_float(power)
    # A straight line from the end of smaller magnitude (lerp; T = 0, an array field:
    # the end); other powers as written.
    linear = lerp(init, end, jnp.where(steps == 0, 1.0, safe_div(t, steps)), frac)
    # d/d power at power = 1, as a zero-valued term (the line does not read the power)
    sg = jax.lax.stop_gradient
    linear = linear + sg(init - end) * (safe_pow(sg(frac), power) - sg(safe_pow(frac, power)))
    # Before the ramp (frac = 1) the value is init itself: (init - end) + end cancels
    # where init is far smaller than end (0 for 1e-8 and 1 in float32).
    curve = jnp.where(frac == 1, init, (init - end) * safe_pow(frac, power) + end)
    return jnp.where(power == 1, linear, curve)


@schedule_class
class Polynomial(Schedule):
    """``(init − end)(1 − min(k − begin, T)/T)^power + end`` for ``k ≥ begin``."""

    init_value: Any
    end_value: Any
    power: Any
    transition_steps: Any
    transition_begin: Any

    def __call__(self, count):
        return _polynomial(
            self.init_value,
            self.end_value,
            self.power,
            self.transition_steps,
            self.transition_begin,
            count,
        )


def _check_transition(call, init_value, end_value, transition_steps, transition_begin):
    """The four shared arguments, NumPy numbers returned as Python numbers."""
    return (
        check_number(call, "init_value", init_value, low=0.0),
        check_number(call, "end_value", end_value, low=0.0),
        check_steps(call, "transition_steps", transition_steps),
        check_steps(call, "transition_begin", transition_begin, positive=False),
    )


@torch_names(total_iters="transition_steps=total_iters")
def polynomial(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Polynomial:
    """Polynomial decay from ``init_value`` to ``end_value``.

    ``η_k = (η_0 − η_end)(1 − t/T)^power + η_end``, ``t = clip(k − B, 0, T)``: held
    at ``init_value`` before ``transition_begin`` and at ``end_value`` after
    ``transition_begin + transition_steps``.

    Args:
      init_value: η_0 ≥ 0.
      end_value: η_end ≥ 0.
      power: ≥ 0.
      transition_steps: T > 0.
      transition_begin: B ≥ 0.

    Equals optax ``polynomial_schedule`` and, with ``end_value=0`` and B = 0,
    torch ``PolynomialLR(total_iters=T, power)``.
    """
    call = "gradtx.schedules.polynomial"
    init_value, end_value, transition_steps, transition_begin = _check_transition(
        call, init_value, end_value, transition_steps, transition_begin
    )
    power = check_number(call, "power", power, low=0.0)
    return Polynomial(init_value, end_value, power, transition_steps, transition_begin)


@schedule_class
class Linear(Schedule):
    """``init + (end − init) · clip(k − begin, 0, T)/T``."""

    init_value: Any
    end_value: Any
    transition_steps: Any
    transition_begin: Any

    def __call__(self, count):
        return _polynomial(
            self.init_value,
            self.end_value,
            1.0,
            self.transition_steps,
            self.transition_begin,
            count,
        )


@torch_names(
    start_factor="init_value=start_factor * lr",
    end_factor="end_value=end_factor * lr",
    total_iters="transition_steps=total_iters",
)
def linear(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Linear:
    """Linear ramp (a warmup, or a linear decay) from ``init_value`` to ``end_value``.

    ``η_k = η_0 + (η_end − η_0) · clip(k − B, 0, T)/T``.

    Args:
      init_value: η_0 ≥ 0.
      end_value: η_end ≥ 0.
      transition_steps: T > 0.
      transition_begin: B ≥ 0, the steps held at η_0 first.

    Equals optax ``linear_schedule``; torch ``LinearLR(start_factor,
    end_factor, total_iters)`` with lr η is ``linear(η·start_factor,
    η·end_factor, total_iters)`` (torch's factors multiply the lr).
    """
    init_value, end_value, transition_steps, transition_begin = _check_transition(
        "gradtx.schedules.linear", init_value, end_value, transition_steps, transition_begin
    )
    return Linear(init_value, end_value, transition_steps, transition_begin)


@schedule_class
class ConstantWarmup(Schedule):
    """``η_k = value · factor`` for ``k < warmup_steps``, then ``value``."""

    value: Any
    factor: Any
    warmup_steps: Any

    def __call__(self, count):
        value, factor, warmup = self._floats()
        return jnp.where(count_ge(count, warmup), value, value * factor)


@torch_names(total_iters="warmup_steps=total_iters")
def constant_warmup(value: float, factor: float, warmup_steps: int) -> ConstantWarmup:
    """A constant warmup (Goyal et al. 2017): ``value · factor`` for the first
    ``warmup_steps`` steps, then ``value``.

    ``η_k = value · factor`` if ``k < warmup_steps`` else ``value``.

    Args:
      value: the value after the warmup (torch: the optimizer's lr).
      factor: the warmup's fraction of ``value``, in [0, 1].
      warmup_steps: how many steps use the reduced value, > 0.

    Equals torch ``ConstantLR(factor, total_iters=warmup_steps)``.  Differences:
    torch's stepped ``ConstantLR`` divides by ``factor`` at ``total_iters`` (a
    ``ZeroDivisionError`` for ``factor=0``, fine here) and with ``total_iters=0``
    keeps the factor forever (its closed form does not), so ``warmup_steps=0`` is
    an error here: use ``constant(value)``.  optax has no equivalent
    (``join([constant(value·factor), constant(value)], [warmup_steps])``).
    """
    call = "gradtx.schedules.constant_warmup"
    value = check_number(call, "value", value, low=0.0)
    factor = check_number(call, "factor", factor, low=0.0, high=1.0)
    warmup_steps = check_steps(call, "warmup_steps", warmup_steps)
    return ConstantWarmup(value, factor, warmup_steps)
