"""Adam and its direct variants: AMSGrad and AdamW."""

from __future__ import annotations

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rms import scale_by_rms

ADAM: Specs = dict(
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE.schedulable(),
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY,
    decoupled_weight_decay=Flag(),
    amsgrad=Flag(),
    max_of=Choice("v", "v_hat", optional=True),
    mask=Mask(),
    mask_fn=Function(),
    mu_dtype=DType(),
    nu_dtype=DType(),
    maximize=Flag(),
    convention=CONVENTION,
)


@optimizer(
    references="`torch.optim.Adam` (L2, decoupled, AMSGrad, maximize); `optax.adam` (`eps_root`)",
    **ADAM,
)
def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    amsgrad: bool = False,
    max_of: str | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """Adam (Kingma & Ba), as ``torch.optim.Adam``.

    Update (``t`` from 1)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                         (L2, if weight_decay)
      m_t = b1 m_{t-1} + (1 - b1) g_t,    m̂_t = m_t / (1 - b1^t)
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      θ_t = θ_{t-1} - η_t m̂_t / (sqrt(v̂_t + eps_root) + eps)

    With ``amsgrad`` the denominator uses ``max_{s≤t} v_s / (1 - b2^t)``
    (PyTorch, ``max_of="v"``) or ``max_{s≤t} v̂_s`` (optax, ``max_of="v_hat"``).
    With ``decoupled_weight_decay`` the decay is AdamW's (see ``adamw``).

    Chain: ``add_l2 → add_momentum(b1, ema=True) → bias_correct(b1) →
    scale_by_rms(b2, eps, bias_correction=True) → scale_by_learning_rate``; the
    chain hands the gradient to ``scale_by_rms`` as ``grads``.

    Differences: equals ``torch.optim.Adam`` (eps outside the root, form E1)
    and ``optax.adam``; they differ only in AMSGrad's maximum, which
    ``convention="optax"`` (or ``max_of``) selects.  The paper's "efficient"
    form puts eps on the uncorrected root (E2), which differs for the same
    eps.  optax has no L2 argument; ``eps_root`` is optax's.  Moments are
    computed in at least float32 and stored in the params' dtype, float32 for
    16-bit params (or ``mu_dtype``/``nu_dtype``).  For complex params
    torch treats each as two real ones; here the second moment holds
    ``|g|²`` per element, as in optax.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1), a number or schedule.
      b2: second-moment decay in [0, 1).
      eps: added to the root.
      eps_root: added inside the root.
      weight_decay: λ; L2 unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay the weights directly (AdamW).
      amsgrad: keep the running max of the second moment.
      max_of: which second moment AMSGrad maximises (``"v"``, ``"v_hat"``;
        ``None``: the convention's).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      mu_dtype, nu_dtype: storage dtypes of the moments (e.g. ``jnp.bfloat16``).
      maximize: ascend the objective instead (torch's ``maximize``).
      convention: ``"torch"`` or ``"optax"``: whose rule, never whose defaults.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adam(learning_rate=0.1)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)  # 2w = (2, -4)
      >>> updates, state = opt.update(grads, state, params)
      >>> updates["w"]  # t = 1: m̂_1 = g, v̂_1 = g², so the step is -η g / |g| = -η sign(g)
      Array([-0.1,  0.1], dtype=float32)
      >>> params = gradtx.apply_updates(params, updates)
      >>> params["w"]
      Array([ 0.9, -1.9], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    if max_of is None:
        max_of = "v_hat" if convention == "optax" else "v"
    second = scale_by_rms(
        b2, eps, eps_root=eps_root, bias_correction=True, amsgrad=amsgrad, max_of=max_of,
        dtype=nu_dtype,
    )  # fmt: skip
    return descent(
        add_momentum(b1, ema=True, dtype=mu_dtype),
        bias_correct(b1),
        second,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )


_VARIANT: Specs = {k: v for k, v in ADAM.items() if k not in ("amsgrad", "decoupled_weight_decay")}


@optimizer(
    references='`torch.optim.Adam(amsgrad=True)`; `optax.amsgrad` (`convention="optax"`)',
    **_VARIANT,
)
def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule | None = None,
    max_of: str | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """AMSGrad (Reddi et al.): Adam with the running max of the second moment.

    ``adam(..., amsgrad=True)``.  Update (``t`` from 1)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                         (L2, if weight_decay)
      m_t = b1 m_{t-1} + (1 - b1) g_t,    m̂_t = m_t / (1 - b1^t)
      v_t = b2 v_{t-1} + (1 - b2) g_t²
      v̂_t = max_{s≤t} v_s / (1 - b2^t)                      (max_of="v")
      v̂_t = max_{s≤t} (v_s / (1 - b2^s))                    (max_of="v_hat")
      θ_t = θ_{t-1} - η_t m̂_t / (sqrt(v̂_t + eps_root) + eps)

    Chain: Adam's, with ``scale_by_rms(..., amsgrad=True)``.

    Differences: the default ``max_of="v"`` takes the max of the raw ``v``
    and bias-corrects it afterwards, as ``torch.optim.Adam(amsgrad=True)``;
    ``convention="optax"`` (or ``max_of="v_hat"``) takes the max of the
    bias-corrected ``v̂``, as ``optax.amsgrad``.  The paper has neither bias
    correction nor eps.  Complex params as in ``adam``.

    Args:
      learning_rate: η, a number or schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root.
      eps_root: added inside the root.
      weight_decay: λ of the L2 term.
      max_of: ``"v"`` (torch) or ``"v_hat"`` (optax); ``None``: the convention's.
      mask, mask_fn: which leaves are decayed.
      mu_dtype, nu_dtype: storage dtypes of the moments.
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.amsgrad(0.1, b2=0.5)
      >>> params = {"w": jnp.array([1.0])}
      >>> state = opt.init(params)
      >>> _, state = opt.update({"w": jnp.array([2.0])}, state, params)
      >>> updates, state = opt.update({"w": jnp.array([0.0])}, state, params)
      >>> updates["w"]  # v̂_2 = max(v_1, v_2) / 0.75 = 2 / 0.75 (Adam: 1 / 0.75, a step of -0.082)
      Array([-0.05801422], dtype=float32)

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
    """
    return adam(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        weight_decay=weight_decay, amsgrad=True, max_of=max_of, mask=mask, mask_fn=mask_fn,
        mu_dtype=mu_dtype, nu_dtype=nu_dtype, maximize=maximize, convention=convention,
    )  # fmt: skip


@optimizer(
    references="`torch.optim.AdamW` (AMSGrad, maximize); `optax.adamw`",
    **{k: v for k, v in ADAM.items() if k != "decoupled_weight_decay"},
)
def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = 1e-2,
    *,
    eps_root: float = 0.0,
    amsgrad: bool = False,
    max_of: str | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    mu_dtype: DTypeLike | None = None,
    nu_dtype: DTypeLike | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    ``adam(..., decoupled_weight_decay=True)`` with the decay as fifth argument.
    Update::

      m̂_t, v̂_t as in Adam, from the raw gradient (no λθ term)
      θ_t = θ_{t-1} - η_t (m̂_t / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1})

    Chain: Adam's chain with ``decoupled_weight_decay`` before
    ``scale_by_learning_rate``.

    Differences: equals ``torch.optim.AdamW`` and ``optax.adamw`` (default λ is
    PyTorch's 1e-2; optax's is 1e-4).  Both multiply λ by the full learning
    rate; the paper multiplies it by the schedule multiplier only, which is
    ``weight_decay = λ_paper / base_lr`` here.  ``mask``/``mask_fn`` pick the
    decayed leaves (e.g. not biases), as optax's ``mask``.  Complex params
    as in ``adam``.  The fifth positional argument is λ, torch's order; optax's
    is ``eps_root`` (λ its seventh): give those two by keyword when porting.

    Args:
      learning_rate: η, a number or schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root.
      weight_decay: λ (default 1e-2); ``None`` or 0: no decay.
      eps_root: added inside the root.
      amsgrad: keep the running max of the second moment.
      max_of: AMSGrad's maximum (``None``: the convention's).
      mask, mask_fn: which leaves are decayed.
      mu_dtype, nu_dtype: storage dtypes of the moments.
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adamw(0.1, weight_decay=0.5, mask={"w": True, "b": False})
      >>> params = {"w": jnp.array([2.0]), "b": jnp.array([2.0])}
      >>> grads = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> updates["w"], updates["b"]  # Adam's first step is -η sign(g); w also decays by η λ θ
      (Array([-0.2], dtype=float32), Array([-0.1], dtype=float32))

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return adam(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        weight_decay=weight_decay, decoupled_weight_decay=True, amsgrad=amsgrad, max_of=max_of,
        mask=mask, mask_fn=mask_fn, mu_dtype=mu_dtype, nu_dtype=nu_dtype, maximize=maximize,
        convention=convention,
    )  # fmt: skip
