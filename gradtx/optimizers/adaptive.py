"""Per-coordinate adaptive methods before Adam: Adagrad, RMSProp, AdaDelta."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam, is_zero
from gradtx.transforms.adadelta import scale_by_adadelta
from gradtx.transforms.decay import add_l2
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.rss import scale_by_rss
from gradtx.transforms.scaling import scale_by_learning_rate


def _l2(weight_decay):
    return [] if weight_decay is None else [add_l2(weight_decay)]


def adagrad(
    learning_rate: Any = 1e-2,
    *,
    lr_decay: Any = 0.0,
    initial_accumulator_value: Any = 0.0,
    eps: Any = 1e-10,
    weight_decay: Any = 0.0,
    eps_in_sqrt: bool = False,
):
    """Adagrad (Duchi et al.), as ``torch.optim.Adagrad``.

    Update (``t`` from 1, ``k = t - 1``)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                       (L2, if weight_decay)
      S_t = S_{t-1} + g_t²,   S_0 = initial_accumulator_value
      θ_t = θ_{t-1} - η_k / (1 + k · lr_decay) · g_t / (sqrt(S_t) + eps)

    Chain: ``add_l2 → scale_by_rss(initial_accumulator_value, eps) →
    scale_by_learning_rate(k ↦ η_k / (1 + k · lr_decay))``.  ``lr_decay`` is a
    hyperparameter in state like the others (``set_hyperparams`` changes it).

    Differences: equals ``torch.optim.Adagrad`` (eps outside the root, S_0 = 0,
    eps 1e-10).  ``optax.adagrad`` puts eps inside the root
    (``eps_in_sqrt=True`` here) and defaults to S_0 = 0.1, eps = 1e-7; it has
    no ``lr_decay`` (an inverse-time schedule) or weight decay.  With eps = 0 and
    equal S_0 the two agree.  Where S_t = 0 the step is 0 (optax), not NaN.

    Args:
      learning_rate: η, a number or schedule (of the 0-based step k).
      lr_decay: PyTorch's inverse-time decay of the learning rate, ≥ 0.
      initial_accumulator_value: S_0 ≥ 0.
      eps: added to the root (inside it with ``eps_in_sqrt``).
      weight_decay: λ of the L2 term.
      eps_in_sqrt: optax's eps placement.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adagrad(0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jnp.array([0.5, -0.5]), state, params)
      >>> updates
      Array([-0.1,  0.1], dtype=float32)

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 2011.
    """
    call = "gradtx.adagrad"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "lr_decay", lr_decay, low=0.0)
    check_hyperparam(call, "initial_accumulator_value", initial_accumulator_value, low=0.0)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    check_flag(call, "eps_in_sqrt", eps_in_sqrt, bool)

    def build(learning_rate, lr_decay, initial_accumulator_value, eps, weight_decay=None):
        def decayed(k):
            decay = jnp.asarray(lr_decay)
            return learning_rate / (1 + k.astype(decay.dtype) * decay)

        return chain(
            *_l2(weight_decay),
            scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
            scale_by_learning_rate(decayed),
        )

    values = dict(
        learning_rate=learning_rate,
        lr_decay=lr_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values)


def rmsprop(
    learning_rate: Any = 1e-2,
    decay: Any = 0.99,
    eps: Any = 1e-8,
    *,
    momentum: Any = 0.0,
    centered: bool = False,
    weight_decay: Any = 0.0,
    nesterov: bool = False,
    lr_in_momentum: bool = False,
    eps_in_sqrt: bool = False,
    initial_scale: Any = 0.0,
    init_from_first: bool = False,
    bias_correction: bool = False,
):
    """RMSProp (Tieleman & Hinton), as ``torch.optim.RMSprop``.

    Update (``t`` from 1, ``μ`` = momentum, ``ρ`` = decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                       (L2, if weight_decay)
      v_t = ρ v_{t-1} + (1 - ρ) g_t²                      (v_0 = initial_scale)
      ḡ_t = ρ ḡ_{t-1} + (1 - ρ) g_t                       (centered only)
      d_t = sqrt(v_t - ḡ_t²) + eps   (centered)   else   sqrt(v_t) + eps
      b_t = μ b_{t-1} + g_t / d_t                         (b_0 = 0; if momentum)
      θ_t = θ_{t-1} - η_t b_t              (without momentum: - η_t g_t / d_t)

    Chain: ``add_l2 → scale_by_rms(decay, eps, centered) → add_momentum(μ) →
    scale_by_learning_rate``; with ``lr_in_momentum`` the last two swap.

    Differences:
      * PyTorch: equal (decay 0.99, eps outside the root, momentum buffer of
        ``g/d`` multiplied by the current η, convention (A)).
      * optax: ``optax.rmsprop`` defaults to decay 0.9 and eps inside the root
        (``eps_in_sqrt=True`` here), and keeps η inside the momentum buffer,
        ``b_t = μ b_{t-1} + η_t g_t/d_t`` (convention (B),
        ``lr_in_momentum=True`` here, as Graves 2013).  (A) and (B) agree for a
        constant learning rate and differ under a schedule.  optax's Nesterov
        option is ``nesterov`` here and its ``bias_correction`` is
        ``bias_correction`` (PyTorch has neither).
      * The lecture's variant starting from ``v_1 = g_1²`` instead of the EMA
        from 0 is ``init_from_first=True`` (not with ``centered``: its first
        variance estimate would be exactly 0).

    Args:
      learning_rate: η, a number or schedule.
      decay: ρ (PyTorch's ``alpha``) in [0, 1).
      eps: added to the root (inside it with ``eps_in_sqrt``).
      momentum: μ in [0, 1]; 0 leaves the buffer out.
      centered: divide by the estimated standard deviation instead of the RMS.
      weight_decay: λ of the L2 term.
      nesterov: Nesterov look-ahead ``g/d + μ b_t`` (needs momentum > 0).
      lr_in_momentum: convention (B), optax's placement of η.
      eps_in_sqrt: optax's placement of eps.
      initial_scale: v_0 (0 in PyTorch, 1 in TF1).
      init_from_first: ``v_1 = g_1²`` (uncentered only).
      bias_correction: divide ``v`` (and ``ḡ``) by ``1 - ρ^t`` (optax's option).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.rmsprop(0.01, momentum=0.9, centered=True)
      >>> params = {"w": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)

    References:
      Tieleman & Hinton, Coursera "Neural Networks for Machine Learning",
      lecture 6e, 2012; Graves, "Generating Sequences With Recurrent Neural
      Networks", arXiv:1308.0850, 2013 (centered, with momentum).
    """
    call = "gradtx.rmsprop"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "decay", decay, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "momentum", momentum, low=0.0, high=1.0, schedule=True)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)
    check_hyperparam(call, "initial_scale", initial_scale, low=0.0)
    for name, flag in [
        ("centered", centered),
        ("nesterov", nesterov),
        ("lr_in_momentum", lr_in_momentum),
        ("eps_in_sqrt", eps_in_sqrt),
        ("init_from_first", init_from_first),
        ("bias_correction", bias_correction),
    ]:
        check_flag(call, name, flag, bool)
    if nesterov and is_zero(momentum):
        raise ValueError(f"{call}(nesterov=True): Nesterov needs momentum > 0")
    if centered and init_from_first:
        # v_1 = g_1² and ḡ_1 = g_1 make the first variance estimate exactly 0
        # (or a rounding residual of either sign): a step of g/eps or NaN.
        raise ValueError(f"{call}(centered=True, init_from_first=True): the first variance is 0")

    def build(learning_rate, decay, eps, initial_scale, momentum=None, weight_decay=None):
        rms = scale_by_rms(
            decay,
            eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            centered=centered,
            init_from_first=init_from_first,
            bias_correction=bias_correction,
        )
        lr = scale_by_learning_rate(learning_rate)
        if momentum is None:
            return chain(*_l2(weight_decay), rms, lr)
        buffer = add_momentum(momentum, nesterov=nesterov)
        tail = [lr, buffer] if lr_in_momentum else [buffer, lr]
        return chain(*_l2(weight_decay), rms, *tail)

    values = dict(learning_rate=learning_rate, decay=decay, eps=eps, initial_scale=initial_scale)
    for name, value in [("momentum", momentum), ("weight_decay", weight_decay)]:
        if not is_zero(value):
            values[name] = value
    return hyperparameterized(build, values)


def adadelta(
    learning_rate: Any = 1.0,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    *,
    weight_decay: Any = 0.0,
):
    """AdaDelta (Zeiler), as ``torch.optim.Adadelta``.

    Update (``t`` from 1, ``RMS[y]_t = sqrt(E[y²]_t + eps)``)::

      g_t      = ∇f(θ_{t-1}) + λ θ_{t-1}                   (L2, if weight_decay)
      E[g²]_t  = ρ E[g²]_{t-1} + (1 - ρ) g_t²
      δ_t      = RMS[Δx]_{t-1} / RMS[g]_t · g_t
      E[Δx²]_t = ρ E[Δx²]_{t-1} + (1 - ρ) δ_t²
      θ_t      = θ_{t-1} - η_t δ_t

    Chain: ``add_l2 → scale_by_adadelta(rho, eps) → scale_by_learning_rate``.

    Differences: equals ``torch.optim.Adadelta`` (the step accumulator holds δ
    before the learning rate) and ``optax.adadelta(1.0)``.  The default
    learning rate is 1.0, the paper's (which has none); optax defaults to
    ``None``, which skips the sign flip so the parameters *ascend* — here the
    learning rate is always a number.  The paper's experiments used ρ = 0.95.

    Args:
      learning_rate: η, a number or schedule (1.0: the paper).
      rho: decay of both averages in [0, 1).
      eps: inside both roots.
      weight_decay: λ of the L2 term.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adadelta()
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jnp.array([0.5, -0.5]), state, params)

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """
    call = "gradtx.adadelta"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "rho", rho, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)

    def build(learning_rate, rho, eps, weight_decay=None):
        return chain(
            *_l2(weight_decay), scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate)
        )

    values = dict(learning_rate=learning_rate, rho=rho, eps=eps)
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values)
