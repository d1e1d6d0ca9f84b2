"""Per-coordinate adaptive methods before Adam: Adagrad, RMSProp, AdaDelta."""

from __future__ import annotations

from gradtx import _dtypes
from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import CONVENTION
from gradtx._specs import DECAY_RATE
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import MOMENTUM
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx._specs import OptionalFlag
from gradtx.optimizers._stages import descent
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.adadelta import scale_by_adadelta
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.rss import scale_by_rss
from gradtx.transforms.scaling import scale_by_learning_rate


@optimizer(
    references="`torch.optim.Adagrad` (lr_decay, initial accumulator, weight decay, maximize, "
    "LambdaLR); `optax.adagrad` (`convention=\"optax\"`)",
    learning_rate=LEARNING_RATE, lr_decay=NON_NEGATIVE, initial_accumulator_value=INITIAL_VALUE,
    eps=NON_NEGATIVE, weight_decay=WEIGHT_DECAY, eps_in_sqrt=OptionalFlag(), mask=Mask(),
    mask_fn=Function(), maximize=Flag(), convention=CONVENTION,
)  # fmt: skip
def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    *,
    lr_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    weight_decay: ScalarOrSchedule | None = None,
    eps_in_sqrt: bool | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
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
    (``convention="optax"``, or ``eps_in_sqrt=True``) and defaults to S_0 =
    0.1, eps = 1e-7; it has no ``lr_decay`` (an inverse-time schedule) or
    weight decay.  Where S_t = 0 the step is 0 (optax), not NaN; a NaN
    gradient stays NaN (torch).  For complex params torch treats each as two
    real ones; here S holds ``|g|²`` per element, as in optax.

    Args:
      learning_rate: η, a number or schedule (of the 0-based step k).
      lr_decay: PyTorch's inverse-time decay of the learning rate, ≥ 0.
      initial_accumulator_value: S_0 ≥ 0.
      eps: added to the root (inside it with ``eps_in_sqrt``).
      weight_decay: λ of the L2 term.
      eps_in_sqrt: optax's eps placement (``None``: the convention's).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

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
    if eps_in_sqrt is None:
        eps_in_sqrt = convention == "optax"

    def decayed(k):
        lr, decay = _dtypes.as_float(learning_rate), _dtypes.as_float(lr_decay)
        dtype = _dtypes.wider(lr.dtype, decay.dtype)
        return lr.astype(dtype) / (1 + k.astype(dtype) * decay.astype(dtype))

    return descent(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        learning_rate=decayed,
        weight_decay=weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )


@optimizer(
    references="`torch.optim.RMSprop` (centered, momentum, weight decay, maximize, LambdaLR); "
    "`optax.rmsprop` (`convention=\"optax\"`, Nesterov, bias correction); NumPy "
    "(`init_from_first`: v₁ = g₁²)",
    learning_rate=LEARNING_RATE, decay=DECAY_RATE, eps=NON_NEGATIVE,
    momentum=MOMENTUM._replace(optional=True), centered=Flag(), weight_decay=WEIGHT_DECAY,
    nesterov=Flag(), lr_in_momentum=OptionalFlag(), eps_in_sqrt=OptionalFlag(),
    initial_scale=INITIAL_VALUE, init_from_first=Flag(), bias_correction=Flag(), mask=Mask(),
    mask_fn=Function(), maximize=Flag(), convention=CONVENTION,
)  # fmt: skip
def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    decay: float = 0.99,
    eps: float = 1e-8,
    *,
    momentum: ScalarOrSchedule | None = None,
    centered: bool = False,
    weight_decay: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    lr_in_momentum: bool | None = None,
    eps_in_sqrt: bool | None = None,
    initial_scale: float = 0.0,
    init_from_first: bool = False,
    bias_correction: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """RMSProp (Tieleman & Hinton), as ``torch.optim.RMSprop``.

    Update (``t`` from 1, ``μ`` = momentum, ``ρ`` = decay)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                       (L2, if weight_decay)
      v_t = ρ v_{t-1} + (1 - ρ) g_t²                      (v_0 = initial_scale)
      ḡ_t = ρ ḡ_{t-1} + (1 - ρ) g_t                       (centered only)
      d_t = sqrt(max(v_t - ḡ_t², 0)) + eps   (centered)   else   sqrt(v_t) + eps
      b_t = μ b_{t-1} + g_t / d_t                         (b_0 = 0; if momentum)
      θ_t = θ_{t-1} - η_t b_t              (without momentum: - η_t g_t / d_t)

    Chain: ``add_l2 → scale_by_rms(decay, eps, centered) → add_momentum(μ) →
    scale_by_learning_rate``; with ``lr_in_momentum`` the last two swap.

    Differences:
      * PyTorch: equal (decay 0.99, eps outside the root, momentum buffer of
        ``g/d`` multiplied by the current η, convention (A)).  The centered
        variance is clamped at 0, where rounding can make torch's negative (NaN).
        A step whose momentum (a schedule, or a value set in state) is 0 leaves
        the buffer as it is, as torch skips it; under optax's rule the buffer
        becomes that step's input.
      * optax (``convention="optax"``): eps inside the root and η inside the
        momentum buffer, ``b_t = μ b_{t-1} + η_t g_t/d_t`` (convention (B),
        as Graves 2013); the fine-grained ``eps_in_sqrt`` and
        ``lr_in_momentum`` override it.  (A) and (B) agree for a constant
        learning rate and differ under a schedule.  optax's default decay is
        0.9; the default here stays torch's.  optax's ``nesterov`` and
        ``bias_correction`` are here too (``bias_correction`` with
        ``centered`` needs ``initial_scale > 0``: from 0 the first centred
        variance estimate would be exactly 0).
      * The lecture's variant starting from ``v_1 = g_1²`` instead of the EMA
        from 0 is ``init_from_first=True`` (uncentered only, for the same reason).
      * Complex params: torch treats each as two real ones; here v holds
        ``|g|²`` per element, as in optax.

    Args:
      learning_rate: η, a number or schedule.
      decay: ρ (PyTorch's ``alpha``) in [0, 1).
      eps: added to the root (inside it with ``eps_in_sqrt``).
      momentum: μ in [0, 1]; ``None`` or 0 leaves the buffer out.
      centered: divide by the estimated standard deviation instead of the RMS.
      weight_decay: λ of the L2 term.
      nesterov: Nesterov look-ahead ``g/d + μ b_t`` (needs momentum > 0).
      lr_in_momentum: convention (B), optax's placement of η (``None``: the convention's).
      eps_in_sqrt: optax's placement of eps (``None``: the convention's).
      initial_scale: v_0 (0 in PyTorch, 1 in TF1).
      init_from_first: ``v_1 = g_1²`` (uncentered only).
      bias_correction: divide ``v`` by ``1 - ρ^t`` (optax's option; uncentered only).
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``.

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
    call = current_call("gradtx.rmsprop")
    if nesterov and momentum is None:
        raise ValueError(f"{call}(nesterov=True): Nesterov needs momentum > 0")
    if lr_in_momentum is None:
        lr_in_momentum = convention == "optax"
    if eps_in_sqrt is None:
        eps_in_sqrt = convention == "optax"
    rms = scale_by_rms(
        decay, eps, initial_scale=initial_scale, eps_in_sqrt=eps_in_sqrt, centered=centered,
        init_from_first=init_from_first, bias_correction=bias_correction,
    )  # fmt: skip
    # descent's chain, [-g] [+λθ] rms [buffer] × -η, with the buffer after η under (B)
    head = gradient_stages(weight_decay, mask=mask, mask_fn=mask_fn, maximize=maximize)
    lr = scale_by_learning_rate(learning_rate)
    if momentum is None:
        return chain(*head, rms, lr)
    buffer = add_momentum(momentum, nesterov=nesterov, pause_at_zero=convention == "torch")
    return chain(*head, rms, *((lr, buffer) if lr_in_momentum else (buffer, lr)))


@optimizer(
    references="`torch.optim.Adadelta` (weight decay, maximize); `optax.adadelta(1.0)`",
    learning_rate=LEARNING_RATE, rho=DECAY_RATE, eps=NON_NEGATIVE, weight_decay=WEIGHT_DECAY,
    mask=Mask(), mask_fn=Function(), maximize=Flag(), convention=CONVENTION,
)  # fmt: skip
def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """AdaDelta (Zeiler), as ``torch.optim.Adadelta``.

    Update (``t`` from 1, ``RMS[y]_t = sqrt(E[y²]_t + eps)``)::

      g_t      = ∇f(θ_{t-1}) + λ θ_{t-1}                   (L2, if weight_decay)
      E[g²]_t  = ρ E[g²]_{t-1} + (1 - ρ) g_t²
      δ_t      = RMS[Δx]_{t-1} / RMS[g]_t · g_t
      E[Δx²]_t = ρ E[Δx²]_{t-1} + (1 - ρ) δ_t²
      θ_t      = θ_{t-1} - η_t δ_t

    Chain: ``add_l2 → scale_by_adadelta(rho, eps) → scale_by_learning_rate``.

    Differences: equals ``torch.optim.Adadelta`` (the step accumulator holds δ
    before the learning rate) and ``optax.adadelta(1.0)`` (so
    ``convention="optax"`` changes nothing).  The default learning rate is
    1.0, the paper's (which has none); optax defaults to ``None``, which
    skips the sign flip so the parameters *ascend*: here the learning rate is
    always a number.  The paper's experiments used ρ = 0.95.  For complex
    params both averages hold ``|g|²`` and ``|δ|²``; torch treats each
    complex param as two real ones, and optax squares ``g`` itself, which
    rotates its steps.

    Args:
      learning_rate: η, a number or schedule (1.0: the paper).
      rho: decay of both averages in [0, 1).
      eps: inside both roots.
      weight_decay: λ of the L2 term.
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).
      maximize: ascend the objective instead.
      convention: ``"torch"`` or ``"optax"``: the same rule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adadelta()
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(jnp.array([0.5, -0.5]), state, params)

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """
    return descent(
        scale_by_adadelta(rho, eps),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )
