"""Division by the root of an average of squared gradients (RMSProp, Adam)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._build import reads_count
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Flag


class ScaleByRmsState(NamedTuple):
    """``nu``: EMA of |g|²; ``nu_max``: its running max (AMSGrad with ``max_of="v"``,
    torch's, else ``None``); ``mean``: EMA of g (centered, else ``None``)."""

    nu: Updates
    nu_max: Updates
    mean: Updates


class ScaleByRmsCorrectedMaxState(NamedTuple):
    """State of ``scale_by_rms(amsgrad=True, max_of="v_hat")`` (optax's AMSGrad).

    ``nu``: EMA of |g|²; ``nu_hat_max``: the running max of the bias-corrected
    ``v̂``; ``mean``: EMA of g (centered, else ``None``).  A class of its own: the
    max of the raw ``v`` (``ScaleByRmsState.nu_max``) is another number, so a state
    of one rule is refused by the other instead of being corrected twice or not at
    all."""

    nu: Updates
    nu_hat_max: Updates
    mean: Updates


def corrected_moment(x: jax.Array, correction: jax.Array | None) -> jax.Array:
    """``x / correction`` in ``x``'s dtype (no-op for ``None``)."""
    return x if correction is None else x / correction.astype(x.dtype)


@factory(decay=DECAY_RATE, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE,
         initial_scale=INITIAL_VALUE,
         eps_in_sqrt=Flag(), bias_correction=Flag(), centered=Flag(), amsgrad=Flag(),
         max_of=Choice("v", "v_hat"), init_from_first=Flag(), dtype=DType())  # fmt: skip
def scale_by_rms(
    decay: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = False,
    bias_correction: bool = False,
    centered: bool = False,
    amsgrad: bool = False,
    max_of: str = "v",
    init_from_first: bool = False,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide the updates by the root of an EMA of squared gradients.

    ``v_t = decay * v_{t-1} + (1 - decay) * g_t**2`` (``v_0 = initial_scale``),
    ``v̂_t = v_t / (1 - decay**t)`` if ``bias_correction`` else ``v_t``, and
    ``u <- u / (sqrt(v̂_t + eps_root) + eps)`` (PyTorch's and Adam's E1 form), or
    ``u / sqrt(v̂_t + eps)`` with ``eps_in_sqrt`` (optax's RMSProp default).
    A coordinate whose denominator is 0 (a zero gradient so far, ``eps = 0``)
    takes no step instead of ``0 / 0``.  As in torch's Adam, the EMA weights g
    before squaring it and the bias correction divides the root, so neither
    overflows float32 before ``(1 - decay) g²`` does.

    ``g`` is the chain's ``grads`` keyword when present (the gradient that
    entered the chain, see ``gradtx.chain``), else the input updates: so the
    same transform is RMSProp's whole step and Adam's denominator.  The
    statistics are computed in at least float32 and stored in ``dtype``.

    Args:
      decay: EMA coefficient (RMSProp's alpha, Adam's b2), in [0, 1).
      eps: added outside the root (inside with ``eps_in_sqrt``).
      eps_root: added inside the root (optax's ``eps_root``).
      initial_scale: ``v_0`` (0 in PyTorch, 1 in TF1).
      eps_in_sqrt: put ``eps`` inside the root.
      bias_correction: divide ``v`` (and the centered mean) by ``1 - decay**t``
        (with ``centered`` only from ``initial_scale > 0``).
      centered: use ``v - ḡ²`` with ``ḡ`` the EMA of g (centered RMSProp),
        clamped at 0 (rounding can make it negative).
      amsgrad: divide by the running max of the second moment.
      max_of: ``"v"`` keeps the max of the raw ``v`` then bias-corrects it
        (PyTorch); ``"v_hat"`` keeps the max of the corrected ``v̂`` (optax), in a
        state of its own (``ScaleByRmsCorrectedMaxState``).
      init_from_first: ``v_1 = g_1**2`` instead of the EMA from ``v_0`` (the
        RMSProp variant in some lecture notes; not with ``centered``).
      dtype: storage dtype of the statistics (``None``: the params' dtype;
        float32 for 16-bit params, whose range cannot hold small squares).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_rms(0.5, eps=0.0, bias_correction=True)
      >>> tx.update(jnp.array([3.0, -4.0]), tx.init(jnp.zeros(2)))[0].round(5)  # ±1 to rounding
      Array([ 1., -1.], dtype=float32)
    """
    call = current_call("gradtx.scale_by_rms")
    if centered and init_from_first:
        # v_1 - m_1**2 = g**2 - g**2 = 0: the first step would be g / eps.
        raise ValueError(f"{call}(centered=True, init_from_first=True): the first variance is 0")
    if centered and bias_correction and _checks.is_zero(initial_scale):
        # From v_0 = 0, v̂_1 - ḡ̂_1² = g² - g² = 0 as well: the first step would be
        # g / eps (optax's: g / sqrt(eps), or NaN where rounding goes negative).
        raise ValueError(
            f"{call}(centered=True, bias_correction=True): the first variance is 0 "
            "unless initial_scale > 0"
        )
    if bias_correction or init_from_first:
        reads_count()

    corrected_max = amsgrad and max_of == "v_hat"  # the max of v̂, already corrected
    state_class = ScaleByRmsCorrectedMaxState if corrected_max else ScaleByRmsState

    def init(params):
        return state_class(
            _tree.squares_like(params, initial_scale, dtype),
            _tree.squares_like(params, 0.0, dtype) if amsgrad else None,
            _tree.zeros_like(params, dtype) if centered else None,
        )

    def update(updates, state, params=None, **extra):
        grads = gradient(updates, extra)
        correction = first = None
        if bias_correction or init_from_first:
            t = _numerics.safe_increment(step_count(extra, call))
            first = t == 1
            correction = _numerics.bias_correction(decay, t) if bias_correction else None

        # The statistics as computed (at least float32) make this step; the state keeps
        # them in its dtypes (``_tree.stored_like``).
        def second_moment(v, g):
            new = _numerics.ema_of_square(decay, v, g, wide=True)
            if not init_from_first:
                return new
            return jnp.where(first, _tree.squared(g, v).astype(new.dtype), new)

        nu = jax.tree.map(second_moment, state.nu, grads)
        mean = None if not centered else _numerics.ema(decay, state.mean, grads, wide=True)
        nu_max = state[1]  # nu_max or nu_hat_max
        if amsgrad and max_of == "v":
            nu_max = jax.tree.map(lambda m, v: jnp.maximum(m.astype(v.dtype), v), nu_max, nu)
        elif amsgrad:
            nu_max = jax.tree.map(
                lambda m, v: jnp.maximum(m.astype(v.dtype), corrected_moment(v, correction)),
                nu_max,
                nu,
            )

        def scale(u, v, m=None):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            real = _dtypes.real_dtype(wide)
            v = v.astype(real)
            e, e_root = _tree.scalar_like(eps, v), _tree.scalar_like(eps_root, v)
            root_first = not (correction is None or centered or eps_in_sqrt)
            if root_first and not corrected_max:
                # sqrt(v̂ + eps_root) as sqrt(v + eps_root c) / sqrt(c), c = 1 - decay^t:
                # v̂ = v / c overflows float32 from |g| ~ 1.8e19 where v stays finite
                # (to ~5.8e20 at decay 0.999), and torch's Adam, which divides the root,
                # keeps stepping there.
                c = correction.astype(real)
                denom = _numerics.safe_sqrt(v + e_root * c) / jnp.sqrt(c) + e
            else:
                v_hat = v if corrected_max else corrected_moment(v, correction)
                if centered:
                    mean_sq = _tree.abs_sq(corrected_moment(m.astype(wide), correction))
                    # an overflowed v (inf) stays inf, not inf - inf: the step is then 0
                    v_hat = jnp.where(jnp.isinf(v_hat), v_hat, jnp.maximum(v_hat - mean_sq, 0))
                if eps_in_sqrt:
                    denom = _numerics.safe_sqrt(v_hat + e + e_root)
                else:
                    denom = _numerics.safe_sqrt(v_hat + e_root) + e
            return _numerics.div0(u.astype(wide), denom.astype(wide)).astype(u.dtype)

        second = nu_max if amsgrad else nu
        out = jax.tree.map(scale, updates, second, *([mean] if centered else []))
        return out, state_class(
            _tree.stored_like(nu, state.nu),
            None if nu_max is None else _tree.stored_like(nu_max, state[1]),
            None if mean is None else _tree.stored_like(mean, state.mean),
        )

    return GradientTransformation(init, update)
