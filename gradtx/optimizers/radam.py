"""RAdam: Adam with the variance of its adaptive rate rectified."""

from __future__ import annotations

from typing import Any

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_choice, check_flag, check_hyperparam, is_zero
from gradtx.optimizers.adam import check_adam_args
from gradtx.transforms.decay import add_l2, decoupled_weight_decay
from gradtx.transforms.momentum import add_momentum, bias_correct
from gradtx.transforms.rectify import rectify, when_rectified
from gradtx.transforms.scaling import scale_by_learning_rate


def check_radam_options(call, threshold, compare, untractable, eps_on):
    """The checks of the rectification options shared by RAdam and Ranger."""
    check_hyperparam(call, "threshold", threshold)
    check_choice(call, "compare", compare, (">", ">="))
    check_choice(call, "untractable", untractable, ("sgd", "skip"))
    check_choice(call, "eps_on", eps_on, ("v", "v_hat"))


def radam_chain(
    learning_rate,
    b1,
    b2,
    eps,
    threshold,
    weight_decay,
    *,
    decoupled,
    compare,
    untractable,
    eps_on,
    head=(),
):
    """RAdam's chain from plain values (called inside a build; ``head`` goes first)."""
    l2 = weight_decay is not None and not decoupled
    tail = []
    if weight_decay is not None and decoupled:
        tail = [decoupled_weight_decay(weight_decay)]
        if untractable == "skip":  # no step, no decay (the authors' code)
            tail = [when_rectified(tail[0], b2, threshold, compare=compare)]
    return chain(
        *head,
        *([add_l2(weight_decay)] if l2 else []),
        add_momentum(b1, ema=True),
        bias_correct(b1),
        rectify(b2, eps, threshold, compare=compare, untractable=untractable, eps_on=eps_on),
        *tail,
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    threshold: Any = 5.0,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    compare: str = ">",
    untractable: str = "sgd",
    eps_on: str = "v",
):
    """RAdam (Liu et al.), as ``torch.optim.RAdam``.

    Update (``t`` from 1, ``λ`` = weight_decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                          (L2, the default)
      m_t = b1 m_{t-1} + (1 - b1) g_t,     m̂_t = m_t / (1 - b1^t)
      v_t = b2 v_{t-1} + (1 - b2) g_t²
      ρ_∞ = 2 / (1 - b2) - 1,              ρ_t = ρ_∞ - 2 t b2^t / (1 - b2^t)
      ρ_t > threshold:  d_t = r_t m̂_t sqrt(1 - b2^t) / (sqrt(v_t) + eps)
                        r_t = sqrt((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t))
      otherwise:        d_t = m̂_t                          (SGD with momentum)
      θ_t = θ_{t-1} - η_t (d_t + λ θ_{t-1})                 (decoupled: λθ here instead)

    Chain: ``add_l2 → add_momentum(b1, ema=True) → bias_correct(b1) →
    rectify(b2, eps, threshold) → decoupled_weight_decay → scale_by_learning_rate``
    (the decay stages only when ``weight_decay`` is not zero).

    Differences: the defaults equal ``torch.optim.RAdam`` (eps on the
    uncorrected root, strict ``>``, SGD steps before the threshold, L2 decay
    or, with ``decoupled_weight_decay``, ``θ(1 - ηλ)`` on every step).  The
    authors' code and ``pytorch_optimizer.RAdam`` skip the first steps, decay
    included: ``untractable="skip", compare=">=", decoupled_weight_decay=True``.
    ``optax.radam`` puts eps on the corrected root and compares with ``>=``:
    ``compare=">=", eps_on="v_hat"``.  The paper's threshold is 4 and it has no
    eps.  For ``b2=0.999``, ρ_t first exceeds 5 at t = 6.

    Args:
      learning_rate: η, a number or schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root of the second moment.
      threshold: ρ_t must pass it for the adaptive step.
      weight_decay: λ.
      decoupled_weight_decay: decay the weights directly instead of the L2 term.
      compare: ``">"`` or ``">="`` against ``threshold``.
      untractable: ``"sgd"`` (momentum step) or ``"skip"`` (no step, no decay)
        while ρ_t does not pass the threshold.
      eps_on: ``"v"`` (E2, PyTorch) or ``"v_hat"`` (E1, optax).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.radam(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> params = gradtx.apply_updates(params, updates)

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
      ICLR 2020 (arXiv:1908.03265).
    """
    call = "gradtx.radam"
    check_adam_args(call, learning_rate, b1, b2, eps, 0.0, weight_decay)
    check_flag(call, "decoupled_weight_decay", decoupled_weight_decay, bool)
    check_radam_options(call, threshold, compare, untractable, eps_on)

    def build(learning_rate, b1, b2, eps, threshold, weight_decay=None):
        return radam_chain(
            learning_rate,
            b1,
            b2,
            eps,
            threshold,
            weight_decay,
            decoupled=decoupled_weight_decay,
            compare=compare,
            untractable=untractable,
            eps_on=eps_on,
        )

    values = dict(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, threshold=threshold)
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values)
