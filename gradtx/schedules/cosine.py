"""Cosine schedules: cosine decay, warmup + cosine, and SGDR's warm restarts."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx._checks import check_choice
from gradtx.schedules._common import Schedule
from gradtx.schedules._common import check_number
from gradtx.schedules._common import check_rate
from gradtx.schedules._common import check_steps
from gradtx.schedules._common import half_cosine
from gradtx.schedules._common import is_number
from gradtx.schedules._common import lerp
from gradtx.schedules._common import safe_div
from gradtx.schedules._common import safe_pow
from gradtx.schedules._common import schedule_class
from gradtx.schedules._counts import as_count
from gradtx.schedules._counts import ceil_to
from gradtx.schedules._counts import count_array
from gradtx.schedules._counts import count_ge
from gradtx.schedules._counts import count_periods
from gradtx.schedules._counts import count_shift
from gradtx.schedules._counts import is_integer
from gradtx.schedules._counts import periods
from gradtx.schedules._counts import steps_left
from gradtx.schedules._counts import steps_since
from gradtx.schedules._counts import whole
from gradtx.schedules._spellings import torch_names

_PAST_END = ("hold", "cycle")


@schedule_class
class CosineDecay(Schedule):
    """``init · ((1 − alpha) · [½(1 + cos(π t/T))]^exponent + alpha)`` with
    ``t = min(k, T)``, or ``t = k`` when ``cycle`` is 1 (torch past ``T``)."""

    _flags = ("cycle",)

    init_value: Any
    decay_steps: Any
    alpha: Any
    exponent: Any
    cycle: Any = 0

    def __call__(self, count):
        init, steps, alpha, exponent, cycle = self._floats()
        # past the end the cosine repeats every 2T: reduced first (on the integer
        # count), so it keeps its digits; before it T - t is formed on the count too
        cycled = steps - count_periods(count, 2 * steps)[1]
        cosine = half_cosine(jnp.where(cycle != 0, cycled, steps_left(count, steps, 0)), steps)
        return init * ((1 - alpha) * safe_pow(cosine, exponent) + alpha)


def _check_past_end(call, past_end):
    check_choice(call, "past_end", past_end, _PAST_END)
    return int(past_end == "cycle")


@torch_names(
    T_max="decay_steps=T_max",
    eta_min="alpha=eta_min / init_value, a fraction of the initial value; "
    'past_end="cycle" for torch\'s cosine past T_max',
)
def cosine_decay(
    init_value: float,
    decay_steps: int,
    alpha: float = 0.0,
    exponent: float = 1.0,
    *,
    past_end: str = "hold",
) -> CosineDecay:
    """Cosine decay from ``init_value`` to ``alpha · init_value`` over ``decay_steps``.

    ``η_k = η_0 ((1 − α) c_k^p + α)``, ``c_k = ½(1 + cos(π t/T))``, where
    ``t = min(k, T)`` (``past_end="hold"``, the default) or ``t = k``
    (``past_end="cycle"``).

    **Past ``decay_steps`` the default holds ``alpha · init_value``, as optax
    does; torch's ``CosineAnnealingLR`` instead follows the cosine back up to
    ``init_value`` at ``2T``, down again at ``3T``, and so on.**  A torch port that
    runs past ``T_max`` needs ``past_end="cycle"`` (equal to torch's stepped
    values at every step, tested over several periods); ``sgdr`` restarts
    instead of rising.

    Args:
      init_value: η_0, the value at step 0 (torch: the optimizer's lr).
      decay_steps: T > 0 (torch ``T_max``).
      alpha: the final value as a fraction of ``init_value``, in [0, 1] (torch:
        ``eta_min = alpha · lr``).
      exponent: p ≥ 0, applied to the cosine factor (optax; torch has none: 1).
      past_end: "hold" (optax) or "cycle" (torch) after ``decay_steps``.

    Equals optax ``cosine_decay_schedule(init_value, decay_steps, alpha, exponent)``
    (with "hold") and torch ``CosineAnnealingLR(T_max=decay_steps, eta_min=alpha·lr)``
    (with "cycle"; with "hold" up to ``decay_steps``).
    """
    call = "gradtx.schedules.cosine_decay"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    decay_steps = check_steps(call, "decay_steps", decay_steps)
    # A fraction of init_value (optax; torch's eta_min = alpha · init_value): alpha < 0
    # would decay below zero, into gradient ascent.
    alpha = check_number(call, "alpha", alpha, low=0.0, high=1.0)
    exponent = check_number(call, "exponent", exponent, low=0.0)
    cycle = _check_past_end(call, past_end)
    return CosineDecay(init_value, decay_steps, alpha, exponent, cycle)


@schedule_class
class WarmupCosineDecay(Schedule):
    """Linear warmup ``init → peak`` over ``warmup_steps``, then cosine ``peak → end``
    until ``decay_steps`` (which counts the warmup), then held at ``end`` (or, when
    ``cycle`` is 1, following the cosine on)."""

    _flags = ("cycle",)

    init_value: Any
    peak_value: Any
    warmup_steps: Any
    decay_steps: Any
    end_value: Any
    exponent: Any
    cycle: Any = 0

    def __call__(self, count):
        init, peak, warmup, decay, end, exponent, cycle = self._floats()
        t = as_count(count)
        # optax's arithmetic: a linear polynomial, then a cosine with alpha = end/peak.
        ramp = jnp.clip(t, 0, warmup)
        warm = lerp(init, peak, safe_div(ramp, warmup), safe_div(warmup - ramp, warmup))
        length = decay - warmup
        s = steps_since(count, warmup)
        cycled = periods(s, 2 * length)[1]
        if is_integer(count):
            # A whole warmup: the steps past it counted and reduced as integers,
            # exact at every count (the last term is 0, there for d/d warmup_steps).
            exact = count_periods(count_shift(count, warmup), 2 * length)[1]
            exact = exact + (s - jax.lax.stop_gradient(s))
            cycled = jnp.where(whole(warmup), exact, cycled)
        # T - t as decay - count (the warmup's own value is taken before it ends): length
        # = decay - warmup, rounded in float32 past 2^24, would send steps_left to the
        # float count
        rest = jnp.where(cycle != 0, length - cycled, steps_left(count, decay, 0))
        cosine = half_cosine(rest, length)
        alpha = jnp.where(peak == 0, 0.0, safe_div(end, peak))
        decayed = peak * ((1 - alpha) * safe_pow(cosine, exponent) + alpha)
        return jnp.where(count_ge(count, warmup), decayed, warm)


@torch_names()  # no torch keywords: names the call in its errors
def warmup_cosine_decay(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    *,
    exponent: float = 1.0,
    past_end: str = "hold",
) -> WarmupCosineDecay:
    """Linear warmup then cosine decay (optax ``warmup_cosine_decay_schedule``).

    ``η_k = init + (peak − init) k/W`` for ``k < W``, then ``cosine_decay(peak,
    D − W, alpha=end/peak, exponent)`` at ``k − W``.  ``decay_steps`` counts the
    warmup, as in optax.  Past ``decay_steps`` the value holds ``end_value``
    (``past_end="hold"``, optax) or follows the cosine back up
    (``past_end="cycle"``, torch).

    Args:
      init_value: the value at step 0.
      peak_value: the value at the end of the warmup.
      warmup_steps: W ≥ 0.
      decay_steps: D > W, the step where the cosine reaches ``end_value``.
      end_value: the final value.
      exponent: applied to the cosine factor (optax).
      past_end: "hold" (optax) or "cycle" (torch) after ``decay_steps``.

    torch: ``SequentialLR([LinearLR(init/peak, 1, W), CosineAnnealingLR(D − W,
    end)], [W])`` with lr = peak (``init > 0``), equal with ``past_end="cycle"``
    at every step and with "hold" up to ``D``.
    """
    call = "gradtx.schedules.warmup_cosine_decay"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    peak_value = check_number(call, "peak_value", peak_value, low=0.0)
    end_value = check_number(call, "end_value", end_value, low=0.0)
    exponent = check_number(call, "exponent", exponent, low=0.0)
    warmup_steps = check_steps(call, "warmup_steps", warmup_steps, positive=False)
    decay_steps = check_steps(call, "decay_steps", decay_steps)
    if is_number(decay_steps) and is_number(warmup_steps):
        if decay_steps <= warmup_steps:
            raise ValueError(
                f"{call}(warmup_steps={warmup_steps}, decay_steps={decay_steps}): "
                "decay_steps counts the warmup and must exceed warmup_steps"
            )
    cycle = _check_past_end(call, past_end)
    return WarmupCosineDecay(
        init_value, peak_value, warmup_steps, decay_steps, end_value, exponent, cycle
    )


@schedule_class
class SGDR(Schedule):
    """Cosine from ``peak_value`` to ``min_value`` over periods ``T_0 · m^i``, restarting forever."""

    _rates = ("period_mult",)

    peak_value: Any
    first_period: Any
    period_mult: Any
    min_value: Any

    def __call__(self, count):
        peak, period0, mult, low = self._floats()
        t = as_count(count)
        flat = mult == 1
        m = jnp.where(flat, 2.0, mult)  # keeps the geometric branches finite
        counted_since, counted_period, found = _counted_restart(count, period0, m)
        closed_start, closed_period = _closed_form_restart(t, period0, m)
        t_cur = jnp.where(found, counted_since, t - closed_start)
        period = jnp.where(found, counted_period, closed_period)
        # At m = 1 the periods' first-order dependence on m, as zero-valued terms for
        # d/d period_mult: restart n starts at T_0 (n + n(n − 1)/2 · dm), lasts T_0 (1 + n dm).
        n, into = count_periods(count, period0)
        dm = mult - jax.lax.stop_gradient(mult)
        t_cur = jnp.where(flat, into - dm * period0 * n * (n - 1) / 2, t_cur)
        period = jnp.where(flat, period0 * (1 + dm * n), period)
        return low + (peak - low) * half_cosine(period - t_cur, period)


# Restart 64 of a period_mult >= 2 starts at (2^64 − 1) · T_0 or later, beyond any count;
# only an m close to 1 (thousands of restarts) leaves a count to the closed form.
_MAX_RESTARTS = 64


def _counted_restart(count, period0, m):
    """Steps since the start of the period holding ``count``, its length, and whether
    it is among the first ``_MAX_RESTARTS``.

    Restart ``n`` starts at ``T_0 · G_n`` with ``G_{n+1} = m · G_n + 1``.  For a
    whole ``m`` every ``G_n`` is a whole number, exact while below 2^24 (float32),
    so restarts land on torch's steps; for any ``m`` the first ones are exact
    (``G_1 = 1``).  The closed form ``T_0 (m^n − 1)/(m − 1)`` rounded before it
    divided (``5 · (4^11 − 1)`` exceeds 2^24, which put restart 11 of
    ``sgdr(1, 5, period_mult=4)`` one step late), and a jitted ``m ** 1.0`` is not
    always ``m`` (``sgdr(1, 7, period_mult=1.01)`` gave its low at restart 1, step 7).

    An integer count with a whole ``T_0`` and a whole ``m`` is counted in the
    count's integer dtype (``G_n ≤ ⌊k/T_0⌋``), so restarts and the steps since
    the last one are exact at every count; the float ``G_n`` follows the same
    restarts and carries the gradient with respect to ``T_0`` and ``m``.
    """
    t = as_count(count)
    integer = is_integer(count)
    exact = jnp.zeros((), bool)
    if integer:
        count = count_array(count)
        p0_int, p0_above = ceil_to(period0, count.dtype)
        m_int, _ = ceil_to(m, count.dtype)  # an m beyond the dtype: no second restart
        exact = whole(period0) & whole(m) & ~p0_above & (p0_int >= 1) & (m_int >= 1)
        periods0 = jnp.floor_divide(count, jnp.where(exact, p0_int, jnp.ones_like(p0_int)))
        # g · m + 1 <= k / T_0 without forming g · m (it could overflow)
        limit = jnp.floor_divide(periods0 - 1, jnp.where(exact, m_int, jnp.ones_like(m_int)))

    zero = jnp.zeros_like(t * period0 * m)
    zero_int = jnp.zeros(zero.shape, count_array(count).dtype) if integer else zero
    whole_counts = (exact, limit, m_int) if integer else None
    (g, power, g_int), _ = jax.lax.fori_loop(
        0, _MAX_RESTARTS, _next_restart, ((zero, zero + 1, zero_int), (t, period0, m, whole_counts))
    )
    start = period0 * g
    since = t - start
    found = period0 * (g * m + 1) > t
    if integer:
        # count - T_0 · G_n is in [0, k]: no overflow.  The last term is 0 (gradient).
        since_int = (count - p0_int * g_int).astype(t.dtype)
        since = jnp.where(exact, since_int - (start - jax.lax.stop_gradient(start)), since)
        # a whole m >= 2 needs more than 2^64 steps for _MAX_RESTARTS restarts
        found = found | exact
    return since, period0 * power, found


def _next_restart(_: Any, carry: tuple) -> tuple:
    """One restart of ``_restart``'s count, if it has begun by ``t``.  A module-level body
    with the numbers as operands: ``fori_loop`` finds its compiled loop again by the
    body's identity, so an eager schedule call (a printed rate) compiles it once."""
    (g, power, g_int), numbers = carry
    t, period0, m, whole_counts = numbers
    g_next = g * m + 1
    # Only restarts that have begun are taken, so g stays below t / T_0 (finite).
    begun = period0 * g_next <= t
    if whole_counts is not None:
        exact, limit, m_int = whole_counts
        begun = jnp.where(exact, g_int <= limit, begun)
        g_int = jnp.where(begun & exact, g_int * m_int + 1, g_int)
    return (jnp.where(begun, g_next, g), jnp.where(begun, power * m, power), g_int), numbers


def _closed_form_restart(t, period0, m):
    """Start and length of the period holding ``t`` (``m > 1``), in closed form: past
    ``_MAX_RESTARTS``, where counting restarts one by one would take too long."""

    def start(n):
        # The geometric sum before T_0, so the product is rounded once.
        return period0 * ((m**n - 1) / (m - 1))

    # A first guess from the logarithm, then one step either way where it rounded
    # across a restart.
    n = jnp.floor(jnp.log1p(t * (m - 1) / period0) / jnp.log1p(m - 1))
    n = jnp.where(t < start(n), n - 1, n)
    n = jnp.where(t >= start(n + 1), n + 1, n)
    return start(n), period0 * m**n


@torch_names(T_0="first_period=T_0", T_mult="period_mult=T_mult", eta_min="min_value=eta_min")
def sgdr(
    peak_value: float, first_period: int, *, period_mult: float = 1, min_value: float = 0.0
) -> SGDR:
    """Cosine annealing with warm restarts (Loshchilov & Hutter, SGDR), forever.

    ``η_k = η_min + ½(η_max − η_min)(1 + cos(π T_cur/T_i))`` where period ``i``
    lasts ``T_i = first_period · period_mult^i`` steps and ``T_cur`` counts the
    steps since its start (restart ``n`` at ``T_0 (m^n − 1)/(m − 1)``, closed form).
    With a whole ``first_period`` and ``period_mult`` (torch's case) the restarts
    and ``T_cur`` are integer arithmetic on the count, exact at every count; a
    fractional one is float arithmetic on the count (exact to 2^24 in float32),
    from ``period_mult`` as stored: a value float32 cannot hold (1.2, 1.01;
    1.5 and 1.25 it can) moves the restarts by its rounding compounded over
    them (one step late at step 15,474 for ``sgdr(1, 100, period_mult=1.2)``,
    and for m near 1 the closed form's ``m − 1`` magnifies it: 0.04 of the
    peak off at 1.001); under x64 it is a double.

    Args:
      peak_value: η_max ≥ 0, at each restart.
      first_period: T_0 > 0 (a real number).
      period_mult: m ≥ 1, each period's length over the previous one's.
      min_value: η_min ≥ 0, approached at the end of each period.

    Equals torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``, where
    ``T_mult`` must be an integer (here any real ≥ 1).  optax ``sgdr_schedule``
    needs an explicit finite list of cycles (equal over those).
    """
    call = "gradtx.schedules.sgdr"
    peak_value = check_number(call, "peak_value", peak_value, low=0.0)
    first_period = check_number(call, "first_period", first_period, low=0.0, low_open=True)
    period_mult = check_rate(
        call, "period_mult", check_number(call, "period_mult", period_mult, low=1.0)
    )
    min_value = check_number(call, "min_value", min_value, low=0.0)
    return SGDR(peak_value, first_period, period_mult, min_value)
