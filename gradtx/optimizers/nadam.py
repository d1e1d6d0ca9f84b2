"""NAdam: Adam with Dozat's Nesterov momentum, L2 or decoupled weight decay."""

from __future__ import annotations

from typing import Any

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_dtype, check_flag, check_hyperparam, is_zero
from gradtx.optimizers.adam import check_adam_args
from gradtx.transforms import decay as _decay
from gradtx.transforms.momentum import add_nesterov_momentum
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.scaling import scale_by_learning_rate


def nadam(
    learning_rate: Any = 2e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    momentum_decay: Any = 4e-3,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    eps_root: Any = 0.0,
    mask: Any = None,
    mask_fn: Any = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """NAdam (Dozat), as ``torch.optim.NAdam``.

    Update (``t`` from 1, ``ψ`` = momentum_decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                  (L2, unless decoupled)
      μ_t = b1 (1 - ½ · 0.96^{t ψ}),   Π_t = Π_{s≤t} μ_s
      m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      n_t = (1 - μ_t)/(1 - Π_t) · g_t + μ_{t+1}/(1 - Π_t μ_{t+1}) · m_t
      θ_t = θ_{t-1} - η_t (n_t / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1} [decoupled])

    Chain: ``add_l2 → add_nesterov_momentum(b1, momentum_decay) →
    scale_by_rms(b2, eps, bias_correction=True) → decoupled_weight_decay →
    scale_by_learning_rate`` (one of the two decays, or neither).

    Differences:
      * PyTorch: equal, including ``decoupled_weight_decay=True`` (NAdamW,
        ``θ(1 - ηλ)``).  PyTorch keeps ``Π_t`` in float32 unless torch's default
        dtype is float64; here it is in the hyperparameters' precision.
      * optax: ``optax.nadam``/``optax.nadamw`` use a constant ``μ = b1``
        (``Π_t = b1^t``), which is ``momentum_decay=1e6`` here (the schedule
        underflows to b1); the defaults differ by ~1e-2 after a dozen steps.
      * Paper: Dozat's Alg. 2 schedule is the same ``0.96^{t/250}``; some
        transcriptions also multiply ``v̂`` by b2, which no implementation does.

    Args:
      learning_rate: η, a number or schedule.
      b1: the momentum EMA rate and the schedule's ceiling, in [0, 1).
      b2: second-moment decay in [0, 1).
      eps: added to the root.  eps_root: added inside it (optax's).
      momentum_decay: ψ ≥ 0 (4e-3 = 1/250).
      weight_decay: λ; L2 unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay outside the adaptive step (NAdamW).
      mask, mask_fn: which leaves are decayed (decoupled decay only).
      mu_dtype, nu_dtype: storage dtypes of the moments.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.nadam(2e-3, weight_decay=1e-2, decoupled_weight_decay=True)
      >>> params = {"w": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    call = "gradtx.nadam"
    check_adam_args(call, learning_rate, b1, b2, eps, eps_root, weight_decay)
    check_hyperparam(call, "momentum_decay", momentum_decay, low=0.0)
    check_flag(call, "decoupled_weight_decay", decoupled_weight_decay, bool)
    check_dtype(call, "mu_dtype", mu_dtype)
    check_dtype(call, "nu_dtype", nu_dtype)
    if (mask is not None or mask_fn is not None) and not decoupled_weight_decay:
        raise ValueError(f"{call}: mask and mask_fn need decoupled_weight_decay=True")
    _decay.check_mask(call, mask, mask_fn)

    def build(learning_rate, b1, b2, eps, eps_root, momentum_decay, weight_decay=None):
        head, tail = [], []
        if weight_decay is not None and decoupled_weight_decay:
            tail = [_decay.decoupled_weight_decay(weight_decay, mask=mask, mask_fn=mask_fn)]
        elif weight_decay is not None:
            head = [_decay.add_l2(weight_decay)]
        return chain(
            *head,
            add_nesterov_momentum(b1, momentum_decay, dtype=mu_dtype),
            scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True, dtype=nu_dtype),
            *tail,
            scale_by_learning_rate(learning_rate),
        )

    values = dict(
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        momentum_decay=momentum_decay,
    )
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values, call)
