"""The strong-Wolfe line search of ``torch.optim.LBFGS``, as a jittable function.

``strong_wolfe`` searches along a direction ``d`` for a step length ``t``
satisfying the strong Wolfe conditions (Nocedal & Wright, Algorithms 3.5 and
3.6): a bracketing phase that extrapolates by cubic interpolation, then a zoom
phase that shrinks the bracket.  It follows torch's ``_strong_wolfe`` (itself a
port of minFunc's and torch7's ``lswolfe``) decision for decision, so an
optimizer built on it takes torch's steps; every branch is data
(``lax.while_loop``, ``jnp.where``), so it runs inside ``jit`` and ``vmap``.

The vectors are 1-D arrays (a flattened pytree: ``gradtx.lbfgs`` flattens the
params in ``jax.tree.leaves`` order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class LineSearchResult(NamedTuple):
    """What ``strong_wolfe`` found.

    Attributes:
      value: the objective at the returned step.
      grad: its (flat) gradient there.
      step: the step length ``t`` (0 when no trial point was lower than the start).
      evals: how many times ``fn`` was evaluated (int32).
    """

    value: jax.Array
    grad: jax.Array
    step: jax.Array
    evals: jax.Array


def _first_max(a, b):
    """Python's ``max(a, b)``: ``a`` unless ``b > a`` (so NaNs resolve as in torch)."""
    return jnp.where(b > a, b, a)


def _first_min(a, b):
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return jnp.where(b < a, b, a)


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through two points with values and slopes.

    The cubic matches ``f(x1) = f1, f'(x1) = g1, f(x2) = f2, f'(x2) = g2``; its
    minimiser is clipped to ``bounds = (low, high)`` (default: the interval
    between ``x1`` and ``x2``).  Without a real minimiser (the discriminant is
    negative) the result is the middle of the bounds.  torch's
    ``_cubic_interpolate`` (Nocedal & Wright, eq. 3.59), evaluated in the same
    order of operations.
    """
    ordered = x1 <= x2
    if bounds is None:
        low, high = jnp.where(ordered, x1, x2), jnp.where(ordered, x2, x1)
    else:
        low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    real = d2_square >= 0
    d2 = jnp.sqrt(jnp.where(real, d2_square, jnp.zeros_like(d2_square)))
    from_x2 = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    from_x1 = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    min_pos = jnp.where(ordered, from_x2, from_x1)
    return jnp.where(real, _first_min(_first_max(min_pos, low), high), (low + high) / 2.0)


class _Point(NamedTuple):
    """A trial point on the line: step, value, gradient, slope ``g · d``."""

    t: jax.Array
    f: jax.Array
    g: jax.Array
    gtd: jax.Array


def _pick(points: _Point, i: Any) -> _Point:
    return jax.tree.map(lambda x: x[i], points)


def _put(points: _Point, i: Any, p: _Point) -> _Point:
    return jax.tree.map(lambda xs, x: xs.at[i].set(x), points, p)


def strong_wolfe(
    fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    d: jax.Array,
    t: Any,
    f: jax.Array,
    g: jax.Array,
    gtd: jax.Array,
    *,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: Any = 1e-9,
    max_ls: Any = 25,
) -> LineSearchResult:
    """Search along ``d`` for a step satisfying the strong Wolfe conditions, as torch does.

    With ``φ(t) = f(x + t d)``, accept ``t`` when ``φ(t) <= φ(0) + c1 t φ'(0)``
    (sufficient decrease) and ``|φ'(t)| <= -c2 φ'(0)`` (curvature).

    Bracketing: starting from the given ``t``, stop with a bracket
    ``[t_prev, t]`` as soon as the decrease fails (or, after two
    extrapolations, ``φ(t) >= φ(t_prev)``) or the slope turns non-negative;
    stop with ``t`` if it satisfies both conditions; otherwise extrapolate by
    ``cubic_interpolate`` within ``[t + 0.01 (t - t_prev), 10 t]``.  Zoom:
    interpolate inside the bracket (moved to 10% of its width from an end
    when it lands too close to one twice, or at one), replace its high or low
    end, until the conditions hold, the bracket is narrower than
    ``tolerance_change / max|d|``, or ``max_ls`` evaluations past the first
    are spent.  Returned is the bracket's lower end: possibly the starting
    point (step 0).  When the bracketing phase runs out of evaluations the
    bracket is ``[0, t]`` and the lower of the two is returned, unzoomed.

    Args:
      fn: ``t -> (φ(t), ∇f(x + t d))``: the objective and its flat gradient at
        ``x + t d``.
      d: the search direction (1-D).
      t: the first trial step.
      f, g, gtd: ``φ(0)``, ``∇f(x)`` and ``φ'(0) = g · d`` (negative).
      c1, c2: the Wolfe constants (torch's defaults).
      tolerance_change: the zoom stops when the bracket's width times
        ``max|d|`` falls below it.
      max_ls: evaluations allowed after the first (a traced int is fine:
        ``gradtx.lbfgs`` passes what is left of ``max_eval``).

    Returns:
      ``LineSearchResult(value, grad, step, evals)``; ``evals`` counts every
      call of ``fn`` (at least 1).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradtx.transforms.line_search import strong_wolfe
      >>> loss = lambda x: jnp.sum((x - 3.0) ** 2)
      >>> x = jnp.zeros(2)
      >>> g = jax.grad(loss)(x)
      >>> fn = lambda t: jax.value_and_grad(loss)(x + t * -g)
      >>> out = strong_wolfe(fn, -g, jnp.float32(1.0), loss(x), g, g @ -g)
      >>> float(out.step), int(out.evals)
      (0.5, 2)

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., §3.5 (Algorithms 3.5
      and 3.6, eq. 3.59).  torch's ``torch/optim/lbfgs.py`` (``_strong_wolfe``).
    """
    dtype = jnp.result_type(f)
    t = jnp.asarray(t).astype(dtype)
    tolerance_change = jnp.asarray(tolerance_change).astype(dtype)
    max_ls = jnp.asarray(max_ls).astype(jnp.int32)
    d_norm = jnp.max(jnp.abs(d), initial=0.0)
    zero = jnp.zeros([], jnp.int32)

    def evaluate(step):
        value, grad = fn(step)
        value = jnp.asarray(value).astype(dtype)
        return _Point(step, value, grad, grad @ d)

    def armijo_fails(new):
        return new.f > f + c1 * new.t * gtd

    def curvature_holds(new):
        return jnp.abs(new.gtd) <= -c2 * gtd

    # ---- bracketing: (previous point, newest point, extrapolations so far, evals)
    # torch's order: too high -> bracket; else curvature holds -> done; else
    # slope >= 0 -> bracket; else extrapolate.
    def too_high(prev, new, ls_iter):
        return armijo_fails(new) | (ls_iter > 1) & (new.f >= prev.f)

    def search_on(carry):
        prev, new, ls_iter, _ = carry
        found = too_high(prev, new, ls_iter) | curvature_holds(new) | (new.gtd >= 0)
        return jnp.logical_not(found) & (ls_iter < max_ls)

    def extrapolate(carry):
        prev, new, ls_iter, evals = carry
        low, high = new.t + 0.01 * (new.t - prev.t), new.t * 10
        step = cubic_interpolate(prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd, (low, high))
        return new, evaluate(step), ls_iter + 1, evals + 1

    start = _Point(jnp.zeros_like(t), f, g, gtd)
    prev, new, ls_iter, evals = lax.while_loop(
        search_on, extrapolate, (start, evaluate(t), zero, zero + 1)
    )
    # Out of evaluations before the conditions were checked: bracket [0, t].
    exhausted = ls_iter >= max_ls
    done = jnp.logical_not(exhausted | too_high(prev, new, ls_iter)) & curvature_holds(new)
    first = jax.tree.map(
        lambda s, n, p: jnp.where(exhausted, s, jnp.where(done, n, p)), start, new, prev
    )
    bracket = jax.tree.map(lambda a, b: jnp.stack([a, b]), first, new)
    low = jnp.where(bracket.f[0] <= bracket.f[1], 0, 1).astype(jnp.int32)

    # ---- zoom: (bracket, index of its low end, insufficient progress, done, ls_iter, evals)
    def zoom_on(carry):
        bracket, _, _, done, ls_iter, _ = carry
        wide = jnp.abs(bracket.t[1] - bracket.t[0]) * d_norm >= tolerance_change
        return jnp.logical_not(done) & (ls_iter < max_ls) & wide

    def zoom(carry):
        bracket, low, insuf, _, ls_iter, evals = carry
        step = cubic_interpolate(bracket.t[0], bracket.f[0], bracket.gtd[0],
                                 bracket.t[1], bracket.f[1], bracket.gtd[1])  # fmt: skip
        top = _first_max(bracket.t[0], bracket.t[1])
        bottom = _first_min(bracket.t[0], bracket.t[1])
        eps = 0.1 * (top - bottom)
        near_end = _first_min(top - step, step - bottom) < eps
        move = near_end & (insuf | (step >= top) | (step <= bottom))
        away = jnp.where(jnp.abs(step - top) < jnp.abs(step - bottom), top - eps, bottom + eps)
        step = jnp.where(move, away, step)
        insuf = near_end & jnp.logical_not(move)
        new = evaluate(step)
        high = 1 - low
        worse = armijo_fails(new) | (new.f >= bracket.f[low])
        done = jnp.logical_not(worse) & curvature_holds(new)
        # Not worse and the slope points away from the high end: the old low becomes high.
        flip = jnp.logical_not(worse | done)
        flip &= new.gtd * (bracket.t[high] - bracket.t[low]) >= 0
        flipped = _put(bracket, high, _pick(bracket, low))
        bracket = jax.tree.map(lambda a, b: jnp.where(flip, a, b), flipped, bracket)
        bracket = _put(bracket, jnp.where(worse, high, low), new)
        low = jnp.where(worse, jnp.where(bracket.f[0] <= bracket.f[1], 0, 1), low)
        return bracket, low.astype(jnp.int32), insuf, done, ls_iter + 1, evals + 1

    carry = (bracket, low, jnp.asarray(False), done, ls_iter, evals)
    bracket, low, _, _, _, evals = lax.while_loop(zoom_on, zoom, carry)
    best = _pick(bracket, low)
    return LineSearchResult(best.f, best.g, best.t, evals)
