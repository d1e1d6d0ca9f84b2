"""AdaBound and AMSBound: Adam whose per-parameter step is clipped towards SGD."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam, is_zero
from gradtx.transforms.bounds import scale_by_bounded_rms
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate


def _initial_value(learning_rate):
    """The learning rate of the first update: the official code's ``base_lr``."""
    if callable(learning_rate) and not hasattr(learning_rate, "dtype"):
        value = learning_rate(jnp.zeros([], jnp.int32))
        # A concrete value is checked like a number; a traced one is data (see check_hyperparam).
        return value if isinstance(value, jax.core.Tracer) else float(value)
    return learning_rate


def _adabound(
    call, learning_rate, final_lr, b1, b2, gamma, eps, *, amsbound, weight_decay, decoupled, base_lr
):
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "final_lr", final_lr, low=0.0)
    check_hyperparam(call, "b1", b1, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "gamma", gamma, low=0.0)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    check_flag(call, "amsbound", amsbound, bool)
    check_flag(call, "decoupled_weight_decay", decoupled, bool)
    if base_lr is None:
        base_lr = _initial_value(learning_rate)
        if isinstance(base_lr, (int, float)) and not isinstance(base_lr, bool) and base_lr <= 0:
            raise ValueError(
                f"{call}(learning_rate={base_lr!r}): the bounds scale with learning_rate / base_lr, "
                "so the initial learning rate must be > 0 (or pass base_lr)"
            )
    check_hyperparam(call, "base_lr", base_lr, low=0.0, low_open=True)

    def build(learning_rate, final_lr, base_lr, b1, b2, gamma, eps, weight_decay=None):
        head, tail = [], []
        if weight_decay is not None:
            if decoupled:
                tail = [decoupled_weight_decay(weight_decay)]
            else:
                head = [add_l2(weight_decay)]
        return chain(
            *head,
            add_momentum(b1, ema=True),
            scale_by_bounded_rms(
                b1, b2, eps, final_lr=final_lr, base_lr=base_lr, gamma=gamma, amsbound=amsbound
            ),
            *tail,
            scale_by_learning_rate(learning_rate),
        )

    values = dict(
        learning_rate=learning_rate,
        final_lr=final_lr,
        base_lr=base_lr,
        b1=b1,
        b2=b2,
        gamma=gamma,
        eps=eps,
    )
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values, call)


def adabound(
    learning_rate: Any = 1e-3,
    final_lr: Any = 0.1,
    b1: Any = 0.9,
    b2: Any = 0.999,
    gamma: Any = 1e-3,
    eps: Any = 1e-8,
    *,
    amsbound: bool = False,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    base_lr: Any = None,
):
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
        initial learning rate).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adabound(1e-3, final_lr=0.1)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> params = gradtx.apply_updates(params, updates)

    References:
      Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of
      Learning Rate", ICLR 2019.  Code: github.com/Luolc/AdaBound.
    """
    return _adabound(
        "gradtx.adabound",
        learning_rate,
        final_lr,
        b1,
        b2,
        gamma,
        eps,
        amsbound=amsbound,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        base_lr=base_lr,
    )


def amsbound(
    learning_rate: Any = 1e-3,
    final_lr: Any = 0.1,
    b1: Any = 0.9,
    b2: Any = 0.999,
    gamma: Any = 1e-3,
    eps: Any = 1e-8,
    *,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    base_lr: Any = None,
):
    """AMSBound: ``adabound(..., amsbound=True)``.

    The second moment is ``max_{s≤t} v_s`` of the raw ``v`` (as the official
    code, ``torch_optimizer`` and ``torch.optim.Adam(amsgrad=True)``); the bias
    correction ``sqrt(1 - b2^t)`` then multiplies the clipped step size.

    References:
      Luo, Xiong, Liu & Sun, ICLR 2019, Alg. 3.
    """
    return _adabound(
        "gradtx.amsbound",
        learning_rate,
        final_lr,
        b1,
        b2,
        gamma,
        eps,
        amsbound=True,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        base_lr=base_lr,
    )
