"""Adam and its direct variants: AMSGrad and AdamW."""

from __future__ import annotations

from typing import Any

from gradtx._base import chain, hyperparameterized
from gradtx._checks import check_choice, check_dtype, check_flag, check_hyperparam, is_zero
from gradtx.transforms.decay import add_l2, check_mask, decoupled_weight_decay
from gradtx.transforms.momentum import add_momentum, bias_correct
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.scaling import scale_by_learning_rate


def check_adam_args(call, learning_rate, b1, b2, eps, eps_root, weight_decay):
    """The argument checks shared by the Adam family."""
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_hyperparam(call, "b1", b1, low=0.0, high=1.0, high_open=True, schedule=True)
    check_hyperparam(call, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "eps_root", eps_root, low=0.0)
    check_hyperparam(call, "weight_decay", weight_decay, low=0.0, schedule=True)


def _adam(
    call,
    learning_rate,
    b1,
    b2,
    eps,
    eps_root,
    weight_decay,
    *,
    decoupled,
    amsgrad,
    max_of,
    mask=None,
    mask_fn=None,
    mu_dtype=None,
    nu_dtype=None,
):
    check_adam_args(call, learning_rate, b1, b2, eps, eps_root, weight_decay)
    check_flag(call, "amsgrad", amsgrad, bool)
    check_choice(call, "max_of", max_of, ("v", "v_hat"))
    check_dtype(call, "mu_dtype", mu_dtype)
    check_dtype(call, "nu_dtype", nu_dtype)
    check_mask(call, mask, mask_fn)

    def build(learning_rate, b1, b2, eps, eps_root, weight_decay=None):
        decay = []
        if weight_decay is not None and not decoupled:
            decay = [add_l2(weight_decay, mask=mask, mask_fn=mask_fn)]
        tail = []
        if weight_decay is not None and decoupled:
            tail = [decoupled_weight_decay(weight_decay, mask=mask, mask_fn=mask_fn)]
        return chain(
            *decay,
            add_momentum(b1, ema=True, dtype=mu_dtype),
            bias_correct(b1),
            scale_by_rms(
                b2,
                eps,
                eps_root=eps_root,
                bias_correction=True,
                amsgrad=amsgrad,
                max_of=max_of,
                dtype=nu_dtype,
            ),
            *tail,
            scale_by_learning_rate(learning_rate),
        )

    values = dict(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    if not is_zero(weight_decay):
        values["weight_decay"] = weight_decay
    return hyperparameterized(build, values, call)


def adam(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    amsgrad: bool = False,
    max_of: str = "v",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``.

    Update (``t`` from 1)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                         (L2, if weight_decay)
      m_t = b1 m_{t-1} + (1 - b1) g_t,    m̂_t = m_t / (1 - b1^t)
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      θ_t = θ_{t-1} - η_t m̂_t / (sqrt(v̂_t + eps_root) + eps)

    With ``amsgrad`` the denominator uses ``max_{s≤t} v_s / (1 - b2^t)``
    (PyTorch, ``max_of="v"``) or ``max_{s≤t} v̂_s`` (optax, ``max_of="v_hat"``).

    Chain: ``add_l2 → add_momentum(b1, ema=True) → bias_correct(b1) →
    scale_by_rms(b2, eps, bias_correction=True) → scale_by_learning_rate``; the
    chain hands the gradient to ``scale_by_rms`` as ``grads``.

    Differences: equals ``torch.optim.Adam`` (eps outside the root, form E1)
    and ``optax.adam``.  The paper's "efficient" form puts eps on the
    uncorrected root (E2), which differs for the same eps.  optax has no L2
    argument; ``eps_root`` is optax's.

    Args:
      learning_rate: η, a number or schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root.  eps_root: added inside the root.
      weight_decay: λ of the L2 term (use ``adamw`` for decoupled decay).
      amsgrad: keep the running max of the second moment.
      max_of: which second moment AMSGrad maximises (``"v"`` or ``"v_hat"``).
      mu_dtype, nu_dtype: storage dtypes of the moments (e.g. ``jnp.bfloat16``).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adam(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> params = gradtx.apply_updates(params, updates)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    return _adam(
        "gradtx.adam",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        weight_decay,
        decoupled=False,
        amsgrad=amsgrad,
        max_of=max_of,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def amsgrad(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    max_of: str = "v",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """AMSGrad (Reddi et al.): Adam with the running max of the second moment.

    ``adam(..., amsgrad=True)``.  Default ``max_of="v"``: the max of the raw
    ``v``, bias-corrected afterwards, as ``torch.optim.Adam(amsgrad=True)``.
    ``max_of="v_hat"`` takes the max of the bias-corrected ``v̂``, as
    ``optax.amsgrad``; no optax setting reproduces PyTorch.  The paper has
    neither bias correction nor eps.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    return _adam(
        "gradtx.amsgrad",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        weight_decay,
        decoupled=False,
        amsgrad=True,
        max_of=max_of,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


def adamw(
    learning_rate: Any = 1e-3,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 1e-2,
    *,
    eps_root: Any = 0.0,
    amsgrad: bool = False,
    max_of: str = "v",
    mask: Any = None,
    mask_fn: Any = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
):
    """AdamW: Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Update::

      m̂_t, v̂_t as in Adam, from the raw gradient (no λθ term)
      θ_t = θ_{t-1} - η_t (m̂_t / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1})

    Chain: Adam's chain with ``decoupled_weight_decay`` before
    ``scale_by_learning_rate``.

    Differences: equals ``torch.optim.AdamW`` and ``optax.adamw`` (default λ is
    PyTorch's 1e-2; optax's is 1e-4).  Both multiply λ by the full learning
    rate; the paper multiplies it by the schedule multiplier only, which is
    ``weight_decay = λ_paper / base_lr`` here.  ``mask``/``mask_fn`` pick the
    decayed leaves (e.g. not biases), as optax's ``mask``.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return _adam(
        "gradtx.adamw",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        weight_decay,
        decoupled=True,
        amsgrad=amsgrad,
        max_of=max_of,
        mask=mask,
        mask_fn=mask_fn,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
