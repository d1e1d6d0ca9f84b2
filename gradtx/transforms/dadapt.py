"""D-Adaptation's distance estimate inside Adam: D-Adapt Adam and Prodigy.

Both keep one scalar d, an under-estimate of the distance to the solution,
that only grows, and run Adam at the step size ``d · η · bias correction``.
The estimate and the moments are coupled within a step (the moments are of
``d·g``, or accumulate the step size; the estimate reads them), so each
method is one primitive.  Sums run over the whole tree in the state's scalar
dtype (JAX's default float).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx.transforms._sums import tree_dot
from gradtx.transforms._sums import tree_l1_norm
from gradtx.transforms.distance import copy_params
from gradtx.transforms.distance import needs_params

ESTIM_LR0 = Hyper(low=0.0, low_open=True, init_only=True)
"""d_0: ``init`` starts the distance estimate there (and Prodigy's ``init`` keeps it in
the state, as the unit of its sums), so it is bound, not a hyperparameter: setting it
later would change nothing."""


def adam_correction(b1, b2, t, dtype):
    """Adam's bias correction of the step, ``sqrt(1 - b2^t) / (1 - b1^t)``, with the
    decays cast to ``dtype`` (the result is in the wider of ``dtype`` and JAX's default
    float, as ``bias_correction`` forms it)."""
    b1, b2 = jnp.asarray(b1).astype(dtype), jnp.asarray(b2).astype(dtype)
    return jnp.sqrt(_numerics.bias_correction(b2, t)) / _numerics.bias_correction(b1, t)


def _leaves(treedef, *trees):
    return zip(*(treedef.flatten_up_to(t) for t in trees))


def _estimate(numerator: jax.Array, total: jax.Array) -> jax.Array:
    """``numerator / ‖s‖₁`` where the sum is not 0, else 0 (no estimate: d stays; a NaN
    sum still reaches d).
    A zero sum with a non-zero numerator comes from ``s`` underflowing in the leaves'
    dtype while the numerator, summed in the state's wider one, did not (tiny
    gradients with x64 on), or from an exact cancellation in ``s``; optax's d then
    becomes infinite and the params NaN."""
    some = total != 0
    return jnp.where(some, numerator / jnp.where(some, total, 1), 0)


def _start(call: str, params: Params, estim_lr0: Any) -> dict[str, Any]:
    """The fields both states start with: zero moments and gradient sum, d_0 and a zero
    numerator."""
    _update_checks.check_real(call, params, "its distance estimate is real arithmetic")
    dtype = float_dtype()
    return dict(
        mu=_tree.zeros_like(params),
        nu=_tree.squares_like(params),
        gradient_sum=_tree.zeros_like(params),
        distance=jnp.asarray(estim_lr0).astype(dtype),
        numerator=jnp.zeros([], dtype),
    )


class ScaleByProdigyState(NamedTuple):
    """State of ``scale_by_prodigy``.

    Attributes:
      mu: m_t, EMA (b1) of d_s g_s.
      nu: v_t, EMA (b2) of (d_s g_s)².
      gradient_sum: s_t = b3 s_{t-1} + (d_t η_t c_t / d_0) d_t g_t.
      initial_params: x_0, the params ``init`` was given.
      distance: d_t, the distance estimate (non-decreasing, from ``estim_lr0``).
      numerator: r_t = b3 r_{t-1} + (d_t / d_0) d_t η_t c_t ⟨g_t, x_0 - x_t⟩.
      initial_distance: d_0, ``estim_lr0`` as ``init`` took it.  s and r are in units
        of 1 / d_0, so a run continues with the d_0 it started with, whatever the
        optimizer that takes its state was built with.
    """

    mu: Updates
    nu: Updates
    gradient_sum: Updates
    initial_params: Params
    distance: jax.Array
    numerator: jax.Array
    initial_distance: jax.Array


@factory(counted=True, learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE,
         b3=Hyper(0.0, 1.0, high_open=True, nullable=True), eps=NON_NEGATIVE,
         estim_lr0=ESTIM_LR0, estim_lr_coef=NON_NEGATIVE,
         weight_decay=Hyper(low=0.0, optional=True), safeguard_warmup=Flag())  # fmt: skip
def scale_by_prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float | None = None,
    *,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    """Prodigy's D-adapted AdamW direction (Mishchenko & Defazio), before ``-η``.

    With g_t the gradient, x_t the params at update t (from 1), d_t the
    estimate before the update, η_t = ``learning_rate`` and
    c_t = sqrt(1 - b2^t) / (1 - b1^t)::

      m_t = b1 m_{t-1} + (1 - b1) d_t g_t,      v_t = b2 v_{t-1} + (1 - b2) d_t² g_t²
      s_t = b3 s_{t-1} + (d_t η_t c_t / d_0) d_t g_t     (safeguard_warmup: d_t / d_0 · d_t g_t)
      r_t = b3 r_{t-1} + (d_t / d_0) d_t η_t c_t ⟨g_t, x_0 - x_t⟩
      d_{t+1} = max(d_t, estim_lr_coef · r_t / ||s_t||₁)
      out = d_t c_t (m_t / (sqrt(v_t) + d_{t+1} eps) + λ x_t)

    (b3 defaults to sqrt(b2); d_0 = ``estim_lr0``; 0/0 in the estimate is 0).
    Follow it with ``scale_by_learning_rate(η)`` for Prodigy's step.  ``init``
    copies the params as x_0: give it the real initial params.

    Differences: with ``eps = 0`` a coordinate whose gradient has always been
    0 takes no step here (optax's ``0 / 0`` gives NaN).

    Args:
      learning_rate: η_t, the schedule value the estimate weighs steps by.
      b1, b2: moment decay rates in [0, 1).
      b3: decay of s and r (``None``: sqrt(b2)).
      eps: added to the root, in units of d.
      estim_lr0: d_0 > 0, the initial under-estimate.
      estim_lr_coef: multiplies each new estimate.
      weight_decay: λ, decoupled (``None``: none).
      safeguard_warmup: leave η_t c_t out of s (for warm-up schedules).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_prodigy(eps=0.0, estim_lr0=1e-3)
      >>> x = jnp.zeros(2)
      >>> tx.update(jnp.array([0.5, -2.0]), tx.init(x), x)[0]  # first step: d_0 · sign(g)
      Array([ 0.001, -0.001], dtype=float32)

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
      Parameter-Free Learner", ICML 2024 (arXiv:2306.06101).
    """
    call = current_call("gradtx.scale_by_prodigy")

    def init(params):
        start = _start(call, params, estim_lr0)
        return ScaleByProdigyState(
            initial_params=copy_params(params), initial_distance=start["distance"], **start
        )

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the distance from the initial params")
        grads = gradient(updates, extra)
        d = state.distance
        dt = d.dtype
        t = _numerics.safe_increment(step_count(extra, call))
        d0 = state.initial_distance
        beta3 = jnp.sqrt(jnp.asarray(b2).astype(dt)) if b3 is None else jnp.asarray(b3).astype(dt)
        correction = adam_correction(b1, b2, t, dt)
        dlr = d * jnp.asarray(learning_rate).astype(dt) * correction  # the step size d η c
        moved = jax.tree.map(lambda a, b: a.astype(dt) - b.astype(dt), state.initial_params, params)
        dot = tree_dot(grads, moved, dt)  # ⟨g_t, x_0 - x_t⟩
        weight = d if safeguard_warmup else dlr  # s's weight, before the division by d_0

        treedef = jax.tree.structure(updates)
        moments, mu, nu, s = [], [], [], []
        for g, m, v, sk in _leaves(treedef, grads, state.mu, state.nu, state.gradient_sum):
            wide = _dtypes.compute_dtype(g.dtype, m.dtype, v.dtype)
            dk, b1k, b2k = (jnp.asarray(c).astype(wide) for c in (d, b1, b2))
            dg = dk * g.astype(wide)
            m_new = b1k * m.astype(wide) + _numerics.one_minus(b1, wide) * dg
            v_new = b2k * v.astype(wide) + _numerics.one_minus(b2, wide) * (dg * dg)
            w, first = weight.astype(wide), d0.astype(wide)
            s_new = beta3.astype(wide) * sk.astype(wide) + w * dg / first
            moments.append((m_new, v_new))
            mu.append(m_new.astype(m.dtype))
            nu.append(v_new.astype(v.dtype))
            s.append(s_new.astype(sk.dtype))
        s = treedef.unflatten(s)
        numerator = beta3 * state.numerator + (d / d0) * dlr * dot
        estimate = _estimate(jnp.asarray(estim_lr_coef).astype(dt) * numerator, tree_l1_norm(s, dt))
        new_d = jnp.maximum(d, estimate)

        out = []
        for (m_new, v_new), (g, x) in zip(moments, _leaves(treedef, grads, params)):
            wide = m_new.dtype
            # eps is in units of the new estimate, the step size in the old one (as optax)
            denom = _numerics.safe_sqrt(v_new) + new_d.astype(wide) * jnp.asarray(eps).astype(wide)
            step = _numerics.div0(m_new, denom)  # eps = 0 and g always 0: no step
            if weight_decay is not None:
                step = step + jnp.asarray(weight_decay).astype(wide) * x.astype(wide)
            out.append(((d * correction).astype(wide) * step).astype(g.dtype))
        new_state = state._replace(  # x_0 and d_0 carry over
            mu=treedef.unflatten(mu),
            nu=treedef.unflatten(nu),
            gradient_sum=s,
            distance=new_d,
            numerator=numerator,
        )
        return treedef.unflatten(out), new_state

    return GradientTransformation(init, update)


class ScaleByDadaptAdamState(NamedTuple):
    """State of ``scale_by_dadapt_adam``.

    Attributes:
      mu: m_t, EMA (b1) of the steps' gradients d_s η_s c_s g_s.
      nu: v_t, EMA (b2) of g_s².
      gradient_sum: s_t = sqrt(b2) s_{t-1} + (1 - sqrt(b2)) d_t η_t c_t g_t.
      distance: d_t, the distance estimate (non-decreasing, from ``estim_lr0``).
      numerator: r_t = sqrt(b2) r_{t-1} + (1 - sqrt(b2)) d_t η_t c_t ⟨g_t, s_{t-1} / (sqrt(v_{t-1}) + eps)⟩.
    """

    mu: Updates
    nu: Updates
    gradient_sum: Updates
    distance: jax.Array
    numerator: jax.Array


@factory(counted=True, learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE,
         eps=NON_NEGATIVE, estim_lr0=ESTIM_LR0, weight_decay=Hyper(low=0.0, optional=True))  # fmt: skip
def scale_by_dadapt_adam(
    learning_rate: ScalarOrSchedule = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float | None = None,
) -> GradientTransformation:
    """D-Adapt AdamW's step (Defazio & Mishchenko), learning rate included, before the sign.

    With g_t the gradient, x_t the params at update t (from 1), d_t the
    estimate before the update, η_t = ``learning_rate``,
    c_t = sqrt(1 - b2^t) / (1 - b1^t), λ_t = d_t η_t c_t and β = sqrt(b2)::

      r_t = β r_{t-1} + (1 - β) λ_t ⟨g_t, s_{t-1} / (sqrt(v_{t-1}) + eps)⟩
      m_t = b1 m_{t-1} + (1 - b1) λ_t g_t,     v_t = b2 v_{t-1} + (1 - b2) g_t²
      s_t = β s_{t-1} + (1 - β) λ_t g_t
      d_{t+1} = max(d_t, r_t / ((1 - β) ||s_t||₁))
      out = m_t / (sqrt(v_t) + eps) + λ λ_t x_t

    (d_0 = ``estim_lr0``; 0/0 in the estimate is 0).  The step size sits in
    the momentum, so the output is the whole step: follow it with
    ``scale(-1)``.  The estimate reads no params (only the decay does).

    Differences: with ``eps = 0`` a coordinate whose gradient has always been
    0 takes no step and adds nothing to r_t here (optax's ``0 / 0`` gives NaN,
    and at the first step turns d NaN).  In r_t, an eps below the smallest
    normal number (0) counts as that number: this is what makes 0/0 a 0 there,
    and it changes nothing where v > 0 (sqrt(v) is far above it).  So a
    coordinate whose g² underflowed to 0 while g did not (|g| below about
    1e-18 in float32, with eps = 0) adds a large finite term to r_t where
    plain division gives inf.

    Args:
      learning_rate: η_t, the schedule value (usually peaking at 1).
      b1, b2: moment decay rates in [0, 1).
      eps: added to the root.
      estim_lr0: d_0 > 0, the initial under-estimate.
      weight_decay: λ, decoupled (``None``: none).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_dadapt_adam(0.5, eps=0.0, estim_lr0=1e-3)
      >>> x = jnp.zeros(2)
      >>> tx.update(jnp.array([0.5, -2.0]), tx.init(x), x)[0]  # first step: η d_0 · sign(g)
      Array([ 0.0005, -0.0005], dtype=float32)

    References:
      Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
      ICML 2023 (arXiv:2301.07733).
    """
    call = current_call("gradtx.scale_by_dadapt_adam")

    def init(params):
        return ScaleByDadaptAdamState(**_start(call, params, estim_lr0))

    def update(updates, state, params=None, **extra):
        if weight_decay is not None:
            needs_params(call, params, "the decay is weight_decay * params")
        grads = gradient(updates, extra)
        d = state.distance
        dt = d.dtype
        t = _numerics.safe_increment(step_count(extra, call))
        beta = jnp.sqrt(jnp.asarray(b2).astype(dt))
        dlr = d * jnp.asarray(learning_rate).astype(dt) * adam_correction(b1, b2, t, dt)

        treedef = jax.tree.structure(updates)
        xs = (
            treedef.flatten_up_to(params)
            if weight_decay is not None
            else [None] * treedef.num_leaves
        )
        weighted, mu, nu, s, out = [], [], [], [], []
        leaves = _leaves(treedef, grads, state.mu, state.nu, state.gradient_sum)
        for (g, m, v, sk), x in zip(leaves, xs):
            wide, kind = _dtypes.compute_dtype(g.dtype, m.dtype, v.dtype), g.dtype
            g, e = g.astype(wide), jnp.asarray(eps).astype(wide)
            b1k, b2k, bk, lr = (jnp.asarray(c).astype(wide) for c in (b1, b2, beta, dlr))
            root = _numerics.safe_sqrt(v.astype(wide))
            # eps floored: with eps = 0, s and v are both 0 until a coordinate's first
            # non-zero gradient, and the floor makes that 0/0 a 0.  div0's select does
            # the same, but XLA on CPU does not fuse it into the reduction of
            # ⟨g, s / root⟩: the quotient was written out per leaf, and the step took
            # 1.1-1.23x optax's.
            weighted.append(_numerics.quotient(sk.astype(wide), root + _numerics.at_least_tiny(e)))
            m_new = b1k * m.astype(wide) + (_numerics.one_minus(b1, wide) * lr) * g
            v_new = b2k * v.astype(wide) + _numerics.one_minus(b2, wide) * (g * g)
            s_new = bk * sk.astype(wide) + (_numerics.one_minus(beta, wide) * lr) * g
            step = _numerics.div0(m_new, _numerics.safe_sqrt(v_new) + e)
            if weight_decay is not None:
                decay = jnp.asarray(weight_decay).astype(wide) * lr
                step = step + decay * x.astype(wide)
            mu.append(m_new.astype(m.dtype))
            nu.append(v_new.astype(v.dtype))
            s.append(s_new.astype(sk.dtype))
            out.append(step.astype(kind))
        dot = tree_dot(grads, treedef.unflatten(weighted), dt)
        s = treedef.unflatten(s)
        numerator = beta * state.numerator + (1 - beta) * dlr * dot
        estimate = _estimate(numerator, (1 - beta) * tree_l1_norm(s, dt))
        new_state = ScaleByDadaptAdamState(
            treedef.unflatten(mu), treedef.unflatten(nu), s, jnp.maximum(d, estimate), numerator
        )
        return treedef.unflatten(out), new_state

    return GradientTransformation(init, update)
