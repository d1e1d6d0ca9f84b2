"""Cyclical schedules: Smith's cyclical learning rates and the one-cycle policy,
with the momentum companions that cycle the other way."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradtx._base import float_dtype
from gradtx._checks import check_choice
from gradtx._checks import check_flag
from gradtx.schedules._common import Schedule
from gradtx.schedules._common import check_number
from gradtx.schedules._common import check_rate
from gradtx.schedules._common import check_steps
from gradtx.schedules._common import half_cosine
from gradtx.schedules._common import is_number
from gradtx.schedules._common import lerp
from gradtx.schedules._common import safe_div
from gradtx.schedules._common import schedule_class
from gradtx.schedules._counts import as_count
from gradtx.schedules._counts import count_periods
from gradtx.schedules._spellings import torch_names

# mode -> the amplitude's per-cycle decay; exp_range's per-step decay is `gamma`
_MODES = {"triangular": 1.0, "triangular2": 0.5, "exp_range": 1.0}


@schedule_class
class Cyclical(Schedule):
    """Triangular waves between ``base_value`` and ``max_value``.

    The amplitude is multiplied by ``cycle_decay^(cycle − 1) · gamma^k``, which
    covers the three modes without branching: triangular (1, 1), triangular2
    (½, 1), exp_range (1, γ).
    """

    _rates = ("gamma",)

    base_value: Any
    max_value: Any
    step_size: Any
    step_size_down: Any
    cycle_decay: Any
    gamma: Any

    def __call__(self, count):
        base, high, up, down, cycle_decay, gamma = self._floats()
        t = as_count(count)
        # torch CyclicLR's rise, x/ratio up and (x − 1)/(ratio − 1) down, for asymmetric
        # halves too, written as into/up and (total − into)/down: the steps left are
        # formed exactly, so the falling end keeps float32's relative precision.
        total = up + down
        # Integer arithmetic on the count for whole step sizes: exact at every count.
        done, into = count_periods(count, total)
        cycle = 1 + done
        rise = jnp.where(into <= up, into / up, (total - into) / down)
        scale = cycle_decay ** (cycle - 1) * gamma**t
        return base + ((high - base) * rise) * scale


# torch's CyclicLR and OneCycleLR cycle the optimizer's momentum too, with these keywords
_MOMENTUM = ("cycle_momentum", "base_momentum", "max_momentum")
# ... and OneCycleLR's length may be given as epochs of steps
_EPOCHS = dict.fromkeys(("epochs", "steps_per_epoch"), "total_steps=epochs * steps_per_epoch")


@torch_names(
    base_lr="base_value=base_lr",
    max_lr="max_value=max_lr",
    step_size_up="step_size=step_size_up",
    scale_fn="no gradtx spelling: write the rate as a plain callable of the step count",
    scale_mode="no gradtx spelling: with scale_fn, write the rate as a plain callable",
    **dict.fromkeys(_MOMENTUM, "a schedule of its own: momentum=cyclical(max_momentum, ...)"),
)
def cyclical(
    base_value: float,
    max_value: float,
    step_size: int,
    *,
    mode: str = "triangular",
    gamma: float = 1.0,
    step_size_down: int | None = None,
) -> Cyclical:
    """Cyclical learning rates (Smith 2017), as torch ``CyclicLR``.

    ``cycle = ⌊1 + k/(2s)⌋``, ``x = |k/s − 2·cycle + 1|``,
    ``η_k = base + (max − base) · max(0, 1 − x) · scale`` with scale 1
    (``triangular``), ``1/2^(cycle−1)`` (``triangular2``) or ``γ^k``
    (``exp_range``).  ``step_size_down`` (default ``step_size``) makes the
    halves asymmetric, as in torch.  To cycle momentum inversely (torch's
    ``cycle_momentum``), swap the ends: ``cyclical(max_momentum, base_momentum, s)``.

    Args:
      base_value: value at the start of each cycle.
      max_value: value at the top of the first cycle.
      step_size: steps from base to max (half a cycle).
      mode: "triangular", "triangular2" or "exp_range".
      gamma: exp_range's per-step decay of the amplitude, in (0, 1] (must be 1
        for the other modes).  torch also takes gamma > 1, which overflows.
      step_size_down: steps from max back to base (``None``: ``step_size``,
        filled in here: setting ``learning_rate.step_size`` in a state later
        leaves it, so set both for a symmetric cycle).

    Equals torch ``CyclicLR(base_lr, max_lr, step_size_up, step_size_down, mode,
    gamma)``; optax has no equivalent.
    """
    call = "gradtx.schedules.cyclical"
    base_value = check_number(call, "base_value", base_value, low=0.0)
    max_value = check_number(call, "max_value", max_value, low=0.0)
    if step_size_down is None:
        step_size_down = step_size  # as given: a known array's fraction is data in both
    step_size = check_steps(call, "step_size", step_size)
    step_size_down = check_steps(call, "step_size_down", step_size_down)
    check_choice(call, "mode", mode, tuple(_MODES))
    # gamma > 1 grows the amplitude as gamma^k: inf after enough steps, then NaN (inf · 0).
    gamma = check_rate(
        call, "gamma", check_number(call, "gamma", gamma, low=0.0, low_open=True, high=1.0)
    )
    if mode != "exp_range" and gamma != 1.0:
        raise ValueError(f"{call}(gamma={gamma!r}): gamma only applies to mode='exp_range'")
    return Cyclical(base_value, max_value, step_size, step_size_down, _MODES[mode], gamma)


def _one_cycle(count, total, pct, start, peak, end, three_phase, cosine):
    """torch OneCycleLR's phases: start → peak on [0, pT − 1], then peak → end
    on [pT − 1, T − 1]; with three phases peak → start until 2pT − 2, then
    start → end.  Held at ``end`` after step T − 1."""
    t = jnp.minimum(as_count(count), total - 1)
    e1 = pct * total - 1
    e2 = 2 * pct * total - 2
    last = total - 1
    three = three_phase != 0
    in1 = t <= e1
    in2 = ~in1 & three & (t <= e2)
    lo = jnp.where(in1, 0.0, jnp.where(in2 | ~three, e1, e2))
    hi = jnp.where(in1, e1, jnp.where(in2, e2, last))
    a = jnp.where(in1, start, jnp.where(in2 | ~three, peak, start))
    b = jnp.where(in1, peak, jnp.where(in2, start, end))
    p, q = safe_div(t - lo, hi - lo), safe_div(hi - t, hi - lo)
    # the cosine's weights of b and of a: sin² and cos² of π p/2, from exact distances
    cos_value = lerp(a, b, half_cosine(t - lo, hi - lo), half_cosine(hi - t, hi - lo))
    return jnp.where(cosine != 0, cos_value, lerp(a, b, p, q))


@schedule_class
class OneCycle(Schedule):
    """One-cycle learning rate: ``peak/div_factor → peak → peak/(div_factor·final_div_factor)``.

    ``three_phase`` and ``cosine`` are 0/1 flags (numbers, so the schedule stays data).
    """

    _flags = ("three_phase", "cosine")

    total_steps: Any
    peak_value: Any
    pct_start: Any
    div_factor: Any
    final_div_factor: Any
    three_phase: Any
    cosine: Any

    def __call__(self, count):
        total, peak, pct, div, final_div, three, cosine = self._floats()
        initial = peak / div
        return _one_cycle(count, total, pct, initial, peak, initial / final_div, three, cosine)


@schedule_class
class OneCycleMomentum(Schedule):
    """One-cycle momentum: ``max → base → max`` on the phases of ``OneCycle``."""

    _flags = ("three_phase", "cosine")

    total_steps: Any
    base_momentum: Any
    max_momentum: Any
    pct_start: Any
    three_phase: Any
    cosine: Any

    def __call__(self, count):
        total, low, high, pct, three, cosine = self._floats()
        return _one_cycle(count, total, pct, high, low, high, three, cosine)


def _check_cycle(call, total_steps, pct_start, anneal, three_phase):
    """The shared arguments, returned as (total_steps, pct_start, three_phase) with
    NumPy numbers as Python numbers."""
    total_steps = check_steps(call, "total_steps", total_steps)
    pct_start = check_number(
        call, "pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True
    )
    check_choice(call, "anneal", anneal, ("cos", "linear"))
    check_flag(call, "three_phase", three_phase, bool)
    three_phase = bool(three_phase)
    if is_number(total_steps) and is_number(pct_start):
        # Every phase must have positive length (torch divides by zero at 0 and runs a
        # phase that ends before it starts below), also
        # with the phase ends as the schedule computes them, from the stored pct_start
        # (0.99999999 is 1.0 in float32: the last step would be the peak).
        warm = pct_start * total_steps
        dtype = np.dtype(float_dtype())
        pct, total = np.asarray(pct_start, dtype), np.asarray(total_steps, dtype)
        e1, e2, last = pct * total - 1, 2 * pct * total - 2, total - 1
        stored_ok = 0 < e1 and (e2 < last if three_phase else e1 < last)
        exact_ok = warm > 1 and not (three_phase and 2 * warm >= total_steps + 1)
        if not exact_ok or not stored_ok:
            raise ValueError(
                f"{call}(total_steps={total_steps}, pct_start={pct_start}): a phase would be "
                + (
                    "empty; need pct_start·total_steps > 1"
                    + (" and 2·pct_start·total_steps < total_steps + 1" if three_phase else "")
                    if not exact_ok
                    else f"empty once pct_start is stored in {dtype} (the schedules' "
                    "precision); enable jax_enable_x64 or move pct_start from that edge"
                )
            )
    return total_steps, pct_start, three_phase


@torch_names(
    max_lr="peak_value=max_lr",
    **_EPOCHS,
    anneal_strategy="anneal=anneal_strategy",
    **dict.fromkeys(_MOMENTUM, "a schedule of its own: momentum=one_cycle_momentum(...)"),
)
def one_cycle(
    total_steps: int,
    peak_value: float,
    *,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
    three_phase: bool = False,
) -> OneCycle:
    """The one-cycle policy (Smith & Topin 2017) with torch ``OneCycleLR`` semantics.

    ``η_0 = peak/div_factor`` rises to ``peak`` at step ``pct_start·T − 1``, then
    falls to ``η_0/final_div_factor`` at step ``T − 1`` (``anneal`` "cos" or
    "linear").  ``three_phase``: rise, fall back to ``η_0`` at ``2·pct_start·T − 2``,
    then anneal to ``η_0/final_div_factor``.  Held at the final value after
    ``T − 1`` (torch raises after ``T`` steps).  Pair with ``one_cycle_momentum``
    for torch's ``cycle_momentum=True``.  Between phase ends the value follows
    ``b + (a − b)(1 + cos πp)/2`` ("cos") or ``a + (b − a)p`` ("linear"), ``p`` the
    fraction of the phase done.

    Args:
      total_steps: T, with every phase non-empty (``pct_start·T > 1``).
      peak_value: the maximum, ≥ 0 (torch ``max_lr``).
      pct_start: the fraction of T spent rising, in (0, 1).
      div_factor: ``peak/η_0`` > 0.
      final_div_factor: ``η_0/η_final`` > 0.
      anneal: "cos" or "linear" (torch ``anneal_strategy``).
      three_phase: torch's three-phase variant.

    Equals torch ``OneCycleLR(max_lr, total_steps, pct_start, anneal_strategy,
    div_factor, final_div_factor, three_phase)`` for ``T`` steps.  optax's
    ``cosine_onecycle_schedule`` puts the peak one step later and its
    ``linear_onecycle_schedule`` has other phases.
    """
    call = "gradtx.schedules.one_cycle"
    total_steps, pct_start, three_phase = _check_cycle(
        call, total_steps, pct_start, anneal, three_phase
    )
    peak_value = check_number(call, "peak_value", peak_value, low=0.0)
    div_factor = check_number(call, "div_factor", div_factor, low=0.0, low_open=True)
    final_div_factor = check_number(
        call, "final_div_factor", final_div_factor, low=0.0, low_open=True
    )
    return OneCycle(
        total_steps,
        peak_value,
        pct_start,
        div_factor,
        final_div_factor,
        three_phase,
        anneal == "cos",
    )


@torch_names(anneal_strategy="anneal=anneal_strategy", **_EPOCHS)
def one_cycle_momentum(
    total_steps: int,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    *,
    pct_start: float = 0.3,
    anneal: str = "cos",
    three_phase: bool = False,
) -> OneCycleMomentum:
    """The momentum (or Adam ``b1``) that cycles against ``one_cycle``'s learning rate.

    ``max_momentum → base_momentum`` while the learning rate rises, back to
    ``max_momentum`` while it falls (and held there in a third phase): torch
    ``OneCycleLR(cycle_momentum=True)``, which writes it into ``momentum`` or
    ``betas[0]``.  Use the same ``total_steps``, ``pct_start``, ``anneal`` and
    ``three_phase`` as the ``one_cycle`` it accompanies::

      gradtx.sgd(one_cycle(1000, 0.1), momentum=one_cycle_momentum(1000))

    Args:
      total_steps: T, as for ``one_cycle``.
      base_momentum: the value at the learning rate's peak, in [0, 1].
      max_momentum: the value at the start and end, in [0, 1].
      pct_start, anneal, three_phase: as for ``one_cycle``.

    optax has no equivalent.
    """
    call = "gradtx.schedules.one_cycle_momentum"
    total_steps, pct_start, three_phase = _check_cycle(
        call, total_steps, pct_start, anneal, three_phase
    )
    base_momentum = check_number(call, "base_momentum", base_momentum, low=0.0, high=1.0)
    max_momentum = check_number(call, "max_momentum", max_momentum, low=0.0, high=1.0)
    return OneCycleMomentum(
        total_steps, base_momentum, max_momentum, pct_start, three_phase, anneal == "cos"
    )
