"""Stochastic gradient descent: plain, heavy-ball, Nesterov; L2 or decoupled decay."""

from __future__ import annotations

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._build import current_call
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import LEARNING_RATE
from gradtx._specs import MOMENTUM
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.momentum import add_momentum

SGD: Specs = dict(
    learning_rate=LEARNING_RATE,
    momentum=MOMENTUM._replace(optional=True),
    nesterov=Flag(),
    dampening=Hyper(0.0, 1.0, optional=True),
    weight_decay=WEIGHT_DECAY,
    decoupled_weight_decay=Flag(),
    mask=Mask(),
    mask_fn=Function(),
    accumulator_dtype=DType(),
    maximize=Flag(),
    convention=CONVENTION,
)


@optimizer(
    references="`torch.optim.SGD` (momentum, dampening, Nesterov, L2, maximize); `optax.sgd`",
    **SGD,
)
def sgd(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule | None = None,
    *,
    nesterov: bool = False,
    dampening: float | None = None,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    accumulator_dtype: DTypeLike | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Update (``t`` from 1, ``λ`` = weight_decay, ``μ`` = momentum, ``τ`` = dampening)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                      (L2)
      b_1 = g_1,   b_t = μ b_{t-1} + (1 - τ) g_t          (heavy ball)
      d_t = g_t + μ b_t  if nesterov  else  b_t
      θ_t = θ_{t-1} - η_t d_t        (decoupled: θ_{t-1} - η_t (d_t + λ θ_{t-1}))

    Chain: ``add_l2 → add_momentum → scale_by_learning_rate``.  A ``None`` or
    zero ``momentum`` (the default), ``dampening`` or ``weight_decay`` leaves
    its stage (and its state) out.

    Differences: equals ``torch.optim.SGD`` and ``optax.sgd`` (both multiply
    the whole buffer by the learning rate, convention (A)).  They differ only
    where a momentum schedule or a value set in state is 0 at a step: torch
    skips its buffer then (kept for later steps, the step undamped), optax's
    recurrence makes it ``(1 - τ) g_t``; ``convention`` picks which (with
    dampening, torch fills the buffer undamped at its first step with momentum
    != 0, a flag in the state).  To keep each gradient's own
    learning rate in the buffer (convention (B), Sutskever et al.), chain
    ``scale_by_learning_rate`` before ``add_momentum``.  As in PyTorch, the first
    step ignores ``dampening`` and Nesterov returns the look-ahead point
    (Bengio et al.'s form), not Sutskever's θ.  ``maximize`` ascends (torch's).

    Args:
      learning_rate: η, a number or schedule.
      momentum: μ in [0, 1]; ``None`` or 0 means plain SGD.
      nesterov: Nesterov momentum (needs momentum > 0 and no dampening).
      dampening: τ in [0, 1], PyTorch's dampening.
      weight_decay: λ; L2 unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay the weights directly (SGDW).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      accumulator_dtype: storage dtype of the momentum buffer (optax's name).
      maximize: ascend the objective instead (torch's ``maximize``).
      convention: ``"torch"`` or ``"optax"``: the buffer at a step whose momentum is 0.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.sgd(0.1, momentum=0.9)
      >>> params = {"w": jnp.ones(2)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.ones(2)}, state, params)
      >>> updates["w"]
      Array([-0.1, -0.1], dtype=float32)

    References:
      Polyak 1964; Sutskever et al., ICML 2013.
    """
    call = current_call("gradtx.sgd")
    if nesterov and momentum is None:
        raise ValueError(f"{call}(nesterov=True): Nesterov needs momentum > 0")
    if nesterov and dampening is not None:
        raise ValueError(
            f"{call}(nesterov=True, dampening={dampening!r}): Nesterov needs dampening=0"
        )
    core = []
    if momentum is not None:
        core = [
            add_momentum(
                momentum,
                nesterov=nesterov,
                dampening=dampening,
                pause_at_zero=convention == "torch",
                dtype=accumulator_dtype,
            )
        ]
    return descent(
        *core,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )


@optimizer(
    references="`pytorch_optimizer.SGDW` (momentum, Nesterov, dampening, weight decay)",
    **{k: v for k, v in SGD.items() if k not in ("decoupled_weight_decay", "convention")},
)
def sgdw(
    learning_rate: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule | None = None,
    weight_decay: ScalarOrSchedule | None = 1e-2,
    *,
    nesterov: bool = False,
    dampening: float | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    accumulator_dtype: DTypeLike | None = None,
    maximize: bool = False,
) -> GradientTransformation:
    """SGD with momentum and decoupled weight decay (Loshchilov & Hutter's SGDW).

    ``sgd(..., decoupled_weight_decay=True)`` with the decay as third argument.
    Update::

      b_1 = g_1,   b_t = μ b_{t-1} + (1 - τ) g_t;   d_t = g_t + μ b_t if nesterov else b_t
      θ_t = θ_{t-1} - η_t (d_t + λ θ_{t-1})   ≡   θ_{t-1}(1 - η_t λ) - η_t d_t

    Chain: ``add_momentum → decoupled_weight_decay → scale_by_learning_rate``.

    Differences: equals ``pytorch_optimizer.SGDW`` (decay times the full
    learning rate).  The paper multiplies λ by the schedule multiplier only and
    keeps the learning rate inside the buffer (convention (B)).
    ``torch_optimizer.SGDW`` subtracts the constant η·λ from every element (a bug).

    Args:
      learning_rate: η, a number or schedule.
      momentum: μ in [0, 1].
      weight_decay: λ (default 1e-2).
      nesterov: Nesterov momentum.
      dampening: τ.
      mask, mask_fn: which leaves are decayed.
      accumulator_dtype: storage dtype of the momentum buffer.
      maximize: ascend the objective instead.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.sgdw(0.1, momentum=0.9, weight_decay=0.5)
      >>> params = {"w": jnp.array([2.0])}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, state, params)
      >>> updates["w"]  # -0.1 · (b_1 + 0.5 · 2), b_1 = g_1 = 1
      Array([-0.2], dtype=float32)
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, state, params)
      >>> updates["w"]  # b_2 = 0.9 · 1 + 1: -0.1 · (1.9 + 1)
      Array([-0.29000002], dtype=float32)

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return sgd(
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        dampening=dampening,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        mask=mask,
        mask_fn=mask_fn,
        accumulator_dtype=accumulator_dtype,
        maximize=maximize,
    )
