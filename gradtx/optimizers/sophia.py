"""Sophia: clipped, diagonal-Hessian-preconditioned momentum."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Int
from gradtx._specs import Mask
from gradtx._specs import Transform
from gradtx.optimizers._stages import descent
from gradtx.transforms.clipping import clip
from gradtx.transforms.hessian import HUTCHINSON
from gradtx.transforms.hessian import scale_by_hessian_diagonal
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct


def _report_win_rate(threshold: Any, every: int) -> GradientTransformation:
    """Print the fraction of coordinates within ``±threshold`` every ``every`` steps."""

    def update(updates, state, params=None, **extra):
        leaves = jax.tree.leaves(updates)
        inside = sum(
            (jnp.sum(jnp.abs(u) < _tree.scalar_like(threshold, jnp.abs(u))) for u in leaves),
            jnp.zeros([], jnp.int32),
        )
        size = max(sum(u.size for u in leaves), 1)
        t = step_count(extra, current_call("gradtx.sophia")) + 1
        jax.lax.cond(
            t % every == 0,
            lambda: jax.debug.print("Sophia optimizer win rate: {}", inside / size),
            lambda: None,
        )
        return updates, state

    return GradientTransformation(lambda params: EmptyState(), update)


@optimizer(
    references="`optax.contrib.sophia` (Hutchinson estimator with `obj_fn`, mask)",
    takes=("obj_fn",),
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY._replace(schedule=False), weight_decay_mask=Mask(),
    gamma=NON_NEGATIVE, clip_threshold=Hyper(low=0.0, nullable=True),
    update_interval=Hyper(low=1.0, integer=True), hessian_diagonal_fn=Transform(),
    mu_dtype=DType(), verbose=Flag(), print_win_rate_every_n_steps=Int(0),
    weight_decay_mask_fn=Function(),
)  # fmt: skip
def sophia(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float | None = 1e-4,
    weight_decay_mask: MaskTree | None = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: optax.GradientTransformation = HUTCHINSON,
    mu_dtype: DTypeLike | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
    *,
    weight_decay_mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Sophia (Liu et al.), as ``optax.contrib.sophia``.

    ``update(grads, state, params, obj_fn=lambda p: loss(p, batch))`` with the
    default Hutchinson estimator (keywords go to ``hessian_diagonal_fn``).
    With ``k`` the 0-based step (``m_{-1} = 0``, ``h_0 = 0``)::

      m_k = b1 m_{k-1} + (1 - b1) g_k,    m̂_k = m_k / (1 - b1^{k+1})
      u_k = clip(m̂_k / max(γ h_k, eps), ±clip_threshold)
      θ_{k+1} = θ_k - η_k (u_k + λ θ_k)
      h_{k+1} = b2 h_k + (1 - b2) ĥ(θ_k)   if k % update_interval == 0, else h_k

    ``ĥ`` is ``hessian_diagonal_fn``'s estimate of the Hessian's diagonal
    (Hutchinson's ``r ⊙ ∇²f r`` by default: Sophia-H).  The step uses the
    estimate from before this step.

    Chain: ``add_momentum(b1, ema=True) → bias_correct(b1) →
    scale_by_hessian_diagonal(b2, γ, eps, update_interval,
    hessian_diagonal_fn) → clip(clip_threshold) → decoupled_weight_decay →
    scale_by_learning_rate``.

    Differences: optax's signature and defaults (λ = 1e-4; optax's
    ``weight_decay_mask`` also takes a function, here
    ``weight_decay_mask_fn``).  Rademacher probes, as optax (the paper's
    code draws Gaussian ones); with the same key the probes equal optax's.
    ``verbose`` prints the share of unclipped coordinates, as optax, and
    needs ``print_win_rate_every_n_steps ≥ 1`` here (optax takes a modulus
    by 0).  Under ``gradtx.flatten`` the default estimator refuses to run
    (``obj_fn`` takes the params' tree).

    Args:
      learning_rate: η, a number or schedule.
      b1: momentum decay in [0, 1).
      b2: decay of the Hessian estimate's EMA, in [0, 1) (per refresh; per
        step it is about ``1 - (1 - b2) / update_interval``).
      eps: floor of ``γ h``.
      weight_decay: λ of the decoupled decay (0: none).
      weight_decay_mask: which leaves are decayed (a pytree of bools, a
        prefix of the params).
      gamma: γ, scales the Hessian estimate (the paper's ρ).
      clip_threshold: bound of the preconditioned step (``None``: no clip).
      update_interval: steps between Hessian estimates (an integer ≥ 1).
      hessian_diagonal_fn: transform returning a diagonal Hessian estimate;
        default ``hutchinson_hessian_diagonal()`` (needs ``obj_fn``).
      mu_dtype: storage dtype of the momentum.
      verbose: print the win rate (share of unclipped coordinates).
      print_win_rate_every_n_steps: how often, in steps.
      weight_decay_mask_fn: a function of the params returning ``weight_decay_mask``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> f = lambda p: jnp.sum(p["w"] ** 2)  # Hessian diagonal 2: Hutchinson's ĥ is exact
      >>> opt = gradtx.sophia(1.0, b1=0.0, b2=0.0, gamma=1.0, weight_decay=0.0)
      >>> params = {"w": jnp.array([0.5, -3.0])}
      >>> state = opt.init(params)
      >>> for _ in range(2):
      ...     updates, state = opt.update(jax.grad(f)(params), state, params, obj_fn=f)
      ...     params = gradtx.apply_updates(params, updates)
      >>> # k = 0: h_0 = 0, so u_0 = clip(g / eps) = sign(g): w = (-0.5, -2), h_1 = 2
      >>> # k = 1: u_1 = clip(g / 2) = clip(w): the Newton step for -0.5, clipped to 1 for -2
      >>> params["w"]
      Array([ 0., -1.], dtype=float32)

    References:
      Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order
      Optimizer for Language Model Pre-training", ICLR 2024 (arXiv:2305.14342).
    """
    call = current_call("gradtx.sophia")
    if verbose and print_win_rate_every_n_steps < 1:
        raise ValueError(
            f"{call}(verbose=True, print_win_rate_every_n_steps={print_win_rate_every_n_steps}):"
            " print_win_rate_every_n_steps must be >= 1 to print"
        )
    stages = [
        add_momentum(b1, ema=True, dtype=mu_dtype),
        bias_correct(b1),
        scale_by_hessian_diagonal(b2, gamma, eps, update_interval, hessian_diagonal_fn),
    ]
    if clip_threshold is not None:
        if verbose:
            stages.append(_report_win_rate(clip_threshold, print_win_rate_every_n_steps))
        stages.append(clip(clip_threshold))
    return descent(
        *stages,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=weight_decay_mask,
        mask_fn=weight_decay_mask_fn,
    )
