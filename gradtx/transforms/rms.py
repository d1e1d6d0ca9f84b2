"""Division by the root of an average of squared gradients (RMSProp, Adam)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, hyperparameterized
from gradtx._checks import check_choice, check_dtype, check_flag, check_hyperparam


class ScaleByRmsState(NamedTuple):
    """``nu``: EMA of g²; ``nu_max``: running max for AMSGrad; ``mean``: EMA of g (centered)."""

    count: jax.Array
    nu: Any
    nu_max: Any
    mean: Any


def _scale_by_rms(
    *,
    decay,
    eps,
    eps_root,
    initial_scale,
    eps_in_sqrt,
    bias_correction,
    centered,
    amsgrad,
    max_of,
    init_from_first,
    dtype,
):
    def init(params):
        nu = _tree.full_like(params, initial_scale, dtype)
        empty = jax.tree.map(lambda _: None, params)
        return ScaleByRmsState(
            jnp.zeros([], jnp.int32),
            nu,
            _tree.zeros_like(params, dtype) if amsgrad else empty,
            _tree.zeros_like(params, dtype) if centered else empty,
        )

    def update(updates, state, params=None, *, grads=None, **extra):
        grads = updates if grads is None else grads
        count = _tree.safe_increment(state.count)
        first = count == 1

        def second_moment(v, g):
            sq = _tree.abs_sq(g)
            new = _tree.ema(decay, v, sq)
            return jnp.where(first, sq.astype(v.dtype), new) if init_from_first else new

        nu = jax.tree.map(second_moment, state.nu, grads)
        mean = state.mean
        if centered:
            mean = jax.tree.map(lambda m, g: _tree.ema(decay, m, g), state.mean, grads)
        correction = _tree.bias_correction(decay, count) if bias_correction else None

        def corrected(x):
            return x if correction is None else x / _tree.scalar_like(correction, x)

        nu_max = state.nu_max
        if amsgrad and max_of == "v":
            nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        elif amsgrad:
            nu_max = jax.tree.map(lambda m, v: jnp.maximum(m, corrected(v)), state.nu_max, nu)

        def scale(u, v, vmax, m):
            if u is None:
                return None
            # Low-precision statistics are read in the updates' precision.
            wide = _tree.wider(u.dtype, v.dtype)
            v, vmax, m = (None if x is None else x.astype(wide) for x in (v, vmax, m))
            if amsgrad:
                v_hat = vmax if max_of == "v_hat" else corrected(vmax)
            else:
                v_hat = corrected(v)
            if centered:
                v_hat = v_hat - _tree.abs_sq(corrected(m))
            e = _tree.scalar_like(eps, v_hat)
            if eps_in_sqrt:
                denom = jnp.sqrt(v_hat + e + _tree.scalar_like(eps_root, v_hat))
            else:
                denom = jnp.sqrt(v_hat + _tree.scalar_like(eps_root, v_hat)) + e
            return (u / denom.astype(u.dtype)).astype(u.dtype)

        nones = jax.tree.map(lambda _: None, nu)
        out = jax.tree.map(
            scale,
            updates,
            nu,
            nu_max if amsgrad else nones,
            mean if centered else nones,
            is_leaf=lambda x: x is None,
        )
        return out, ScaleByRmsState(count, nu, nu_max, mean)

    return GradientTransformation(init, update)


def scale_by_rms(
    decay: Any = 0.999,
    eps: Any = 1e-8,
    *,
    eps_root: Any = 0.0,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = False,
    bias_correction: bool = False,
    centered: bool = False,
    amsgrad: bool = False,
    max_of: str = "v",
    init_from_first: bool = False,
    dtype: Any = None,
) -> GradientTransformation:
    """Divide the updates by the root of an EMA of squared gradients.

    ``v_t = decay * v_{t-1} + (1 - decay) * g_t**2`` (``v_0 = initial_scale``),
    ``v̂_t = v_t / (1 - decay**t)`` if ``bias_correction`` else ``v_t``, and
    ``u <- u / (sqrt(v̂_t + eps_root) + eps)`` (PyTorch's and Adam's E1 form), or
    ``u / sqrt(v̂_t + eps)`` with ``eps_in_sqrt`` (optax's RMSProp default).

    ``g`` is the chain's ``grads`` keyword when present (the gradient that
    entered the chain, see ``gradtx.chain``), else the input updates: so the
    same transform is RMSProp's whole step and Adam's denominator.

    Args:
      decay: EMA coefficient (RMSProp's alpha, Adam's b2), in [0, 1).
      eps: added outside the root (inside with ``eps_in_sqrt``).
      eps_root: added inside the root (optax's ``eps_root``).
      initial_scale: ``v_0`` (0 in PyTorch, 1 in TF1).
      eps_in_sqrt: put ``eps`` inside the root.
      bias_correction: divide ``v`` (and the centered mean) by ``1 - decay**t``.
      centered: use ``v̂ - m̂²`` with ``m`` the EMA of g (centered RMSProp).
      amsgrad: divide by the running max of the second moment.
      max_of: ``"v"`` keeps the max of the raw ``v`` then bias-corrects it
        (PyTorch); ``"v_hat"`` keeps the max of the corrected ``v̂`` (optax).
      init_from_first: ``v_1 = g_1**2`` instead of the EMA from ``v_0`` (the
        RMSProp variant in some lecture notes; equals zero-init with bias
        correction at t=1 only).
      dtype: storage dtype of the statistics (``None``: the params' dtype).
    """
    call = "gradtx.scale_by_rms"
    check_hyperparam(call, "decay", decay, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "eps_root", eps_root, low=0.0)
    check_hyperparam(call, "initial_scale", initial_scale, low=0.0)
    for name, flag in [
        ("eps_in_sqrt", eps_in_sqrt),
        ("bias_correction", bias_correction),
        ("centered", centered),
        ("amsgrad", amsgrad),
        ("init_from_first", init_from_first),
    ]:
        check_flag(call, name, flag, bool)
    check_choice(call, "max_of", max_of, ("v", "v_hat"))
    check_dtype(call, "dtype", dtype)
    if centered and init_from_first:
        # v_1 - m_1**2 = g**2 - g**2 = 0: the first step would be g / eps.
        raise ValueError(f"{call}(centered=True, init_from_first=True): the first variance is 0")
    build = functools.partial(
        _scale_by_rms,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        centered=centered,
        amsgrad=amsgrad,
        max_of=max_of,
        init_from_first=init_from_first,
        dtype=dtype,
    )
    values = {"decay": decay, "eps": eps, "eps_root": eps_root, "initial_scale": initial_scale}
    return hyperparameterized(build, values)
