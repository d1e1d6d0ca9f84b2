"""Stochastic gradient descent: plain, heavy-ball, Nesterov, L2 or decoupled decay."""

from __future__ import annotations

from typing import Any

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam, is_zero
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate


def _present(*transforms):
    return [t for t in transforms if t is not None]


def _check_momentum(call, momentum, nesterov, dampening):
    check_hyperparam(call, "momentum", momentum, low=0.0, high=1.0, schedule=True)
    check_flag(call, "nesterov", nesterov, bool)
    check_hyperparam(call, "dampening", dampening, low=0.0, high=1.0)
    if nesterov and is_zero(momentum):
        raise ValueError(f"{call}(nesterov=True): Nesterov needs momentum > 0")
    if nesterov and not is_zero(dampening):
        raise ValueError(
            f"{call}(nesterov=True, dampening={dampening!r}): Nesterov needs dampening=0"
        )


def _values(**values):
    """Hyperparameters to store: a zero weight leaves its stage out entirely."""
    return {k: v for k, v in values.items() if k == "learning_rate" or not is_zero(v)}


def sgd(
    learning_rate: Any = 1e-3,
    momentum: Any = 0.0,
    *,
    nesterov: bool = False,
    dampening: Any = 0.0,
    weight_decay: Any = 0.0,
):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Update (``t`` from 1, ``λ`` = weight_decay, ``μ`` = momentum, ``τ`` = dampening)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                      (L2)
      b_1 = g_1,   b_t = μ b_{t-1} + (1 - τ) g_t          (heavy ball)
      d_t = g_t + μ b_t  if nesterov  else  b_t
      θ_t = θ_{t-1} - η_t d_t

    Chain: ``add_l2 → add_momentum → scale_by_learning_rate``.  A zero
    ``momentum`` or ``weight_decay`` leaves its stage (and its state) out.

    Differences: equals ``torch.optim.SGD`` and ``optax.sgd`` (the learning rate
    multiplies the whole buffer, convention (A)).  To keep each gradient's own
    learning rate in the buffer (convention (B), Sutskever et al.), chain
    ``scale_by_learning_rate`` before ``add_momentum``.  As in PyTorch, the first
    step ignores ``dampening`` and Nesterov returns the look-ahead point
    (Bengio et al.'s form), not Sutskever's θ.

    Args:
      learning_rate: η, a number or schedule.
      momentum: μ in [0, 1]; 0 means plain SGD.
      nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0).
      dampening: τ, PyTorch's dampening.
      weight_decay: λ of the L2 term.

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
    call = "gradtx.sgd"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    _check_momentum(call, momentum, nesterov, dampening)

    def build(learning_rate, momentum=None, dampening=0.0, weight_decay=None):
        return chain(
            *_present(
                None if weight_decay is None else add_l2(weight_decay),
                None
                if momentum is None
                else add_momentum(momentum, nesterov=nesterov, dampening=dampening),
                scale_by_learning_rate(learning_rate),
            )
        )

    values = _values(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if "momentum" in values and not is_zero(dampening):
        values["dampening"] = dampening
    return hyperparameterized(build, values, call)


def sgdw(
    learning_rate: Any = 1e-3,
    momentum: Any = 0.0,
    weight_decay: Any = 1e-2,
    *,
    nesterov: bool = False,
    dampening: Any = 0.0,
):
    """SGD with momentum and decoupled weight decay (Loshchilov & Hutter's SGDW).

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

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    call = "gradtx.sgdw"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    _check_momentum(call, momentum, nesterov, dampening)

    def build(learning_rate, momentum=None, dampening=0.0, weight_decay=None):
        return chain(
            *_present(
                None
                if momentum is None
                else add_momentum(momentum, nesterov=nesterov, dampening=dampening),
                None if weight_decay is None else decoupled_weight_decay(weight_decay),
                scale_by_learning_rate(learning_rate),
            )
        )

    values = _values(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if "momentum" in values and not is_zero(dampening):
        values["dampening"] = dampening
    return hyperparameterized(build, values, call)
