"""Division by the root of a running *sum* of squared gradients (Adagrad)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam


class ScaleByRssState(NamedTuple):
    """``sum_of_squares``: ``S_t = S_0 + Σ_{s≤t} g_s²``."""

    sum_of_squares: Any


def _scale_by_rss(*, initial_accumulator_value, eps, eps_in_sqrt, dtype):
    def init(params):
        return ScaleByRssState(_tree.full_like(params, initial_accumulator_value, dtype))

    def update(updates, state, params=None, *, grads=None, **extra):
        grads = updates if grads is None else grads
        _tree.check_same_structure("gradtx.scale_by_rss.update", updates, state.sum_of_squares)
        total = jax.tree.map(
            lambda s, g: s + jnp.square(g.astype(s.dtype)), state.sum_of_squares, grads
        )

        def scale(u, s):
            e = _tree.scalar_like(eps, s)
            denom = jnp.sqrt(s + e) if eps_in_sqrt else jnp.sqrt(s) + e
            # Where nothing has accumulated (S = 0: zero start, zero gradients) the
            # step is 0, as in optax, instead of 0/0 when eps = 0.
            safe = jnp.where(s > 0, denom, jnp.ones_like(denom))
            return jnp.where(s > 0, u / safe.astype(u.dtype), jnp.zeros_like(u)).astype(u.dtype)

        return jax.tree.map(scale, updates, total), ScaleByRssState(total)

    return GradientTransformation(init, update)


def scale_by_rss(
    initial_accumulator_value: Any = 0.0,
    eps: Any = 1e-10,
    *,
    eps_in_sqrt: bool = False,
    dtype: Any = None,
) -> GradientTransformation:
    """Divide the updates by the root of the sum of all squared gradients so far.

    ``S_t = S_{t-1} + g_t²`` with ``S_0 = initial_accumulator_value``, and
    ``u <- u / (sqrt(S_t) + eps)`` (PyTorch's Adagrad and the paper's δ), or
    ``u / sqrt(S_t + eps)`` with ``eps_in_sqrt`` (optax's ``scale_by_rss``).
    Where ``S_t = 0`` the output is 0 (the input is then 0 too unless the
    chain fed this a different gradient), which only differs from PyTorch
    where PyTorch returns NaN (``eps = 0``).

    ``g`` is the chain's ``grads`` keyword when present, else the input, as in
    ``scale_by_rms``.

    Args:
      initial_accumulator_value: ``S_0`` (PyTorch 0, optax 0.1), non-negative.
      eps: added outside the root (inside with ``eps_in_sqrt``).  PyTorch 1e-10,
        optax 1e-7.
      eps_in_sqrt: put ``eps`` inside the root (optax's placement).
      dtype: storage dtype of ``S`` (``None``: the params' dtype).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_rss()
      >>> state = tx.init(jnp.zeros(2))
      >>> tx.update(jnp.array([3.0, -4.0]), state)[0]
      Array([ 1., -1.], dtype=float32)

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 2011.
    """
    call = "gradtx.scale_by_rss"
    check_hyperparam(call, "initial_accumulator_value", initial_accumulator_value, low=0.0)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_flag(call, "eps_in_sqrt", eps_in_sqrt, bool)
    build = functools.partial(_scale_by_rss, eps_in_sqrt=eps_in_sqrt, dtype=dtype)
    values = {"initial_accumulator_value": initial_accumulator_value, "eps": eps}
    return hyperparameterized(build, values)
