"""AdaBound and AMSBound: Adam whose per-parameter step is clipped towards SGD."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _checks
from gradtx import _stored
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import float_dtype
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.bounds import scale_by_bounded_rms
from gradtx.transforms.momentum import add_momentum


def _base_lr(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``base_lr`` defaults to the learning rate of the first update (the official ``base_lrs``)."""
    if arguments["base_lr"] is not None:
        return arguments
    lr = arguments["learning_rate"]
    if isinstance(lr, jax.Array):
        # optax.inject_hyperparams passes the current learning rate as an array, anew at
        # each update (a tracer under jit): taking it as base_lr would hold the bounds
        # still where torch's scheduler moves them.  Concrete or traced, an array is
        # refused alike, so that jit and eager agree.
        raise ValueError(
            f"{call}(learning_rate=<array>): base_lr defaults to the initial learning "
            "rate, which a learning rate given as a JAX array does not tell "
            "(optax.inject_hyperparams passes the current one at each update); pass "
            "base_lr (in a sweep over learning rates, base_lr=learning_rate)"
        )
    if callable(lr):
        # evaluated now, also where the factory is called under jit (a Flax
        # create_train_state): its value at step 0 is a number, not a tracer
        with jax.ensure_compile_time_eval():
            lr = _checks.callable_value(call, "learning_rate", lr, jnp.zeros([], jnp.int32))
    if float(lr) <= 0:
        raise ValueError(
            f"{call}(learning_rate={float(lr)!r}): the bounds scale with learning_rate / "
            "base_lr, so the initial learning rate must be > 0 (or pass base_lr)"
        )
    # stored as base_lr, a positive rate that the storage dtype flushes to 0 makes 0/0
    dtype = jnp.dtype(float_dtype())
    if float(_stored.as_stored(float(lr), dtype)[0]) <= 0:
        wider = ", or jax_enable_x64 for float64" if dtype == jnp.float32 else ""
        raise ValueError(
            f"{call}(learning_rate={float(lr)!r}): the bounds scale with learning_rate / "
            f"base_lr, and base_lr defaults to it, which {dtype} stores as 0 (too small, or "
            f"subnormal and flushed by XLA on CPU); pass base_lr{wider}"
        )
    return {**arguments, "base_lr": float(lr)}


BOUNDED: Specs = dict(
    learning_rate=LEARNING_RATE,
    final_lr=NON_NEGATIVE,
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    gamma=NON_NEGATIVE,
    eps=NON_NEGATIVE,
    amsbound=Flag(),
    weight_decay=WEIGHT_DECAY,
    decoupled_weight_decay=Flag(),
    base_lr=Hyper(low=0.0, low_open=True, nullable=True),
    mask=Mask(),
    mask_fn=Function(),
)


@optimizer(
    references="`adabound.AdaBound` (the authors') and `torch_optimizer.AdaBound` (L2, LambdaLR, "
    "ExponentialLR); `pytorch_optimizer.AdaBound` (rel 1e-9: its 1e-15 inside the root)",
    derive=_base_lr,
    **BOUNDED,
)
def adabound(
    learning_rate: ScalarOrSchedule = 1e-3,
    final_lr: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    gamma: float = 1e-3,
    eps: float = 1e-8,
    *,
    amsbound: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    base_lr: float | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """AdaBound (Luo et al.), as the authors' ``adabound.AdaBound``.

    Update (``t`` from 1; ``η_t`` the current learning rate, ``η_0 = base_lr``)::

      g_t  = ∇f(θ_{t-1}) + λ θ_{t-1}                        (L2, if weight_decay)
      m_t  = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t²
      η*_t = final_lr · η_t / η_0
      s_t  = η_t sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v_t) + eps)
      θ_t  = θ_{t-1} - clip(s_t, η*_t (1 - 1/(γt + 1)), η*_t (1 + 1/(γt))) ⊙ m_t

    The step starts Adam-like (the upper bound is ``1001 η*`` at t = 1 with the
    default γ) and ends as SGD with learning rate ``η*``.  AMSBound
    (``amsbound=True``) uses ``max_{s≤t} v_s`` of the raw ``v``.

    Chain: ``add_l2 → add_momentum(b1, ema=True) →
    scale_by_bounded_rms(b1, b2, eps, final_lr, base_lr, gamma) →
    scale_by_learning_rate``.  ``η_t ≥ 0`` scales the clipped value and both
    bounds alike, so it is factored out of the clip into the usual last stage.

    Differences:
      * Equals ``adabound.AdaBound`` and ``torch_optimizer.AdaBound`` (tested to
        1e-10 relative in float64, with L2 decay, AMSBound and an LR schedule).
      * The paper (Alg. 2) scales the clipped step by ``1/sqrt(t)``, has no bias
        corrections and no eps, and writes fixed bound functions
        ``0.1 ∓ 0.1/((1 - b2) t + 1)``; the code (and this) drops ``1/sqrt(t)``,
        puts both bias corrections inside the clip (E2 eps placement) and makes
        the bounds follow the current learning rate.
      * With a schedule, the bounds follow it: ``base_lr`` defaults to the
        schedule's value at step 0.  Under a torch ``LambdaLR`` whose
        ``λ(0) ≠ 1`` pass the optimizer's constructor lr as ``base_lr``.
      * ``pytorch_optimizer.AdaBound`` adds 1e-15 inside the root and decays
        decoupled by default; ``decoupled_weight_decay=True`` is that default
        (``θ ← θ(1 - η_t λ)``).  The authors' ``AdaBoundW`` decays without the lr.

    Args:
      learning_rate: η, a number or schedule (the Adam-like phase's rate).
      final_lr: the SGD learning rate the bounds converge to (relative to ``base_lr``).
      b1, b2: moment decay rates in [0, 1).
      gamma: convergence speed of the bounds.
      eps: added to ``sqrt(v_t)``.
      amsbound: use the running max of the second moment.
      weight_decay: λ (L2, as the official code, unless ``decoupled_weight_decay``).
      decoupled_weight_decay: decay ``θ ← θ(1 - η_t λ)`` outside the adaptive step.
      base_lr: the learning rate the bounds are relative to (default: the
        initial learning rate; required where the learning rate is a JAX array,
        as ``optax.inject_hyperparams`` passes it: pass it there too).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adabound(1e-3, final_lr=0.1, gamma=1.0)  # at t = 1: s in [0.05, 0.2]
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> grads = {"w": jnp.array([0.1, -4.0])}
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> # m_1 = 0.1 g and s_1 = η / (0.1 |g|): 0.1 for g = 0.1, inside the bounds, so
      >>> # Adam's step -η sign(g); 0.0025 for g = -4, raised to 0.05: SGD's -0.05 m_1
      >>> updates["w"].round(6)
      Array([-0.001,  0.02 ], dtype=float32)

    References:
      Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of
      Learning Rate", ICLR 2019.  Code: github.com/Luolc/AdaBound.
    """
    bounded = scale_by_bounded_rms(
        b1, b2, eps, final_lr=final_lr, base_lr=base_lr, gamma=gamma, amsbound=amsbound
    )
    return descent(
        add_momentum(b1, ema=True),
        bounded,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
    )


@optimizer(
    references="the same three (`amsbound=True`)",
    derive=_base_lr,
    **{k: v for k, v in BOUNDED.items() if k != "amsbound"},
)
def amsbound(
    learning_rate: ScalarOrSchedule = 1e-3,
    final_lr: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    gamma: float = 1e-3,
    eps: float = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    base_lr: float | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """AMSBound (Luo et al.): AdaBound with the running max of the second moment.

    ``adabound(..., amsbound=True)``.  Update (``t`` from 1; ``η_t`` the
    current learning rate, ``η_0 = base_lr``)::

      g_t  = ∇f(θ_{t-1}) + λ θ_{t-1}                        (L2, if weight_decay)
      m_t  = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t²
      v̄_t  = max(v̄_{t-1}, v_t)                             (v̄_0 = 0)
      η*_t = final_lr · η_t / η_0
      s_t  = η_t sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v̄_t) + eps)
      θ_t  = θ_{t-1} - clip(s_t, η*_t (1 - 1/(γt + 1)), η*_t (1 + 1/(γt))) ⊙ m_t

    The maximum is of the raw ``v`` (as the official code, ``torch_optimizer``
    and ``torch.optim.Adam(amsgrad=True)``); the bias correction
    ``sqrt(1 - b2^t)`` multiplies the step size before it is clipped.

    Chain: AdaBound's, with ``scale_by_bounded_rms(..., amsbound=True)``.

    Differences: those of ``adabound``: equals ``adabound.AdaBound`` and
    ``torch_optimizer.AdaBound`` with ``amsbound=True``, and
    ``pytorch_optimizer.AdaBound`` with ``ams_bound=True`` (rel 1e-9: its
    1e-15 inside the root).  The paper's Algorithm 3 scales the clipped step
    by ``1/sqrt(t)`` and has no bias corrections and no eps.

    Args:
      learning_rate: η, a number or schedule.
      final_lr: the SGD learning rate the bounds converge to.
      b1, b2: moment decay rates in [0, 1).
      gamma: convergence speed of the bounds.
      eps: added to ``sqrt(v_t)``.
      weight_decay: λ (L2 unless ``decoupled_weight_decay``).
      decoupled_weight_decay: decay outside the adaptive step.
      base_lr: the learning rate the bounds are relative to (default and
        ``optax.inject_hyperparams`` as in ``adabound``).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.amsbound(0.1, b1=0.0, b2=0.5)  # the bounds stay wide: [2e-4, 50.1]
      >>> params = {"w": jnp.array([1.0])}
      >>> _, state = opt.update({"w": jnp.array([2.0])}, opt.init(params), params)
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, state, params)
      >>> # v_1 = 2, v_2 = 1.5 < v̄_2 = 2; b1 = 0: m_2 = g_2 = 1
      >>> updates["w"]  # -0.1 sqrt(0.75 / 2) (adabound's sqrt(0.75 / 1.5): -0.0707)
      Array([-0.06123725], dtype=float32)

    References:
      Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of
      Learning Rate", ICLR 2019, Algorithm 3.
    """
    return adabound(
        learning_rate=learning_rate, final_lr=final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
        amsbound=True, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
        base_lr=base_lr, mask=mask, mask_fn=mask_fn,
    )  # fmt: skip
