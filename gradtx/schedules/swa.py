"""The learning rate of stochastic weight averaging: anneal to a constant."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._checks import check_choice
from gradtx.schedules._common import Schedule
from gradtx.schedules._common import check_number
from gradtx.schedules._common import check_steps
from gradtx.schedules._common import half_cosine
from gradtx.schedules._common import lerp
from gradtx.schedules._common import safe_div
from gradtx.schedules._common import schedule_class
from gradtx.schedules._counts import as_count
from gradtx.schedules._spellings import torch_names


@schedule_class
class SWALR(Schedule):
    """``swa_value · a_k + init_value · (1 − a_k)`` with ``a_k = f(min(k/A, 1))``,
    ``f(x) = ½(1 − cos πx)`` (``cosine`` 1) or ``x`` (``cosine`` 0); ``a_k = 1``
    when ``A = 0``."""

    _flags = ("cosine",)

    init_value: Any
    swa_value: Any
    anneal_steps: Any
    cosine: Any

    def __call__(self, count):
        init, swa, steps, cosine = self._floats()
        # a and 1 − a each from its own end (k and A − k, formed exactly), and the
        # blend written from the smaller value: near the end of an anneal towards 0
        # ``1 − a`` cancelled to 21% off in float32.
        done = jnp.clip(as_count(count), 0, steps)
        rest = steps - done
        a = jnp.where(cosine != 0, half_cosine(done, steps), safe_div(done, steps))
        q = jnp.where(cosine != 0, half_cosine(rest, steps), safe_div(rest, steps))
        a, q = jnp.where(steps == 0, 1.0, a), jnp.where(steps == 0, 0.0, q)
        return lerp(init, swa, a, q)


@torch_names(
    swa_lr="swa_value=swa_lr",
    anneal_epochs="anneal_steps=anneal_epochs",
    anneal_strategy="anneal=anneal_strategy",
)
def swa_lr(
    init_value: float, swa_value: float, anneal_steps: int = 10, *, anneal: str = "cos"
) -> SWALR:
    """Anneal from ``init_value`` to ``swa_value`` over ``anneal_steps``, then hold
    it: torch ``torch.optim.swa_utils.SWALR``.

    ``η_k = σ a_k + η_0 (1 − a_k)``, ``a_k = f(min(k/A, 1))`` with
    ``f(x) = ½(1 − cos πx)`` ("cos") or ``f(x) = x`` ("linear"); with ``A = 0``,
    ``η_k = σ`` from step 0.

    Args:
      init_value: η_0, the learning rate when the annealing starts (torch: the
        optimizer's lr at the first ``SWALR.step()``).
      swa_value: σ, the constant rate SWA then runs at (torch ``swa_lr``).
      anneal_steps: A ≥ 0 (torch ``anneal_epochs``).
      anneal: "cos" or "linear" (torch ``anneal_strategy``).

    torch's ``SWALR.get_lr`` is recursive: each step recovers η_0 from the
    current lr and the previous ``a`` (``(lr − a σ)/(1 − a)``), then applies the
    new ``a``; that recursion holds ``σ a_k + η_0 (1 − a_k)`` invariant, so this
    closed form equals it (tested to 1e-10 relative over 300+ steps, both
    strategies, ``A`` in {0, 1, 10, 400}).  Switching to SWA mid-run, as torch's
    example does after ``swa_start`` epochs of another scheduler, is a ``join``
    whose SWA member starts from the other schedule's value at the switch::

      decay = exponential_decay(0.1, 1, 0.99)
      lr = join([decay, swa_lr(float(decay(B)), 0.05, 20)], [B])   # B = swa_start + 1

    optax has no equivalent.
    """
    call = "gradtx.schedules.swa_lr"
    init_value = check_number(call, "init_value", init_value, low=0.0)
    swa_value = check_number(call, "swa_value", swa_value, low=0.0)
    anneal_steps = check_steps(call, "anneal_steps", anneal_steps, positive=False)
    check_choice(call, "anneal", anneal, ("cos", "linear"))
    return SWALR(init_value, swa_value, anneal_steps, int(anneal == "cos"))
