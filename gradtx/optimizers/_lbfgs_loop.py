"""torch's L-BFGS step: the loop of iterations and evaluations inside one update.

``gradtx.lbfgs`` (``convention="torch"``) is this one transform; its rule and
differences are stated there.  The params are flattened into one vector, as
torch's ``_gather_flat_grad`` views them, and the memory is a ring buffer of
fixed size, so the whole step is one ``lax.while_loop``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import gradient
from gradtx.transforms.line_search import strong_wolfe
from gradtx.transforms.zoom import UPDATE_KEYWORDS
from gradtx.transforms.zoom import parameter_names

CURVATURE_EPS = 1e-10
"""A pair (s, y) enters the memory only when ``y · s`` exceeds this (torch's constant)."""


class LbfgsState(NamedTuple):
    """L-BFGS's memory between steps, over the flat params (torch's names in brackets).

    Attributes:
      d: the last search direction [``d``].
      t: the last step length [``t``].
      s: ``(history_size, n)`` ring buffer of steps ``s_k = t d`` [``old_stps``].
      y: ``(history_size, n)`` ring buffer of gradient changes ``y_k`` [``old_dirs``].
      rho: ``(history_size,)``: ``1 / (y_k · s_k)`` [``ro``].
      num_pairs: how many slots of the ring hold a pair (int32) [``len(old_dirs)``].
      head: the slot the next pair goes to; the newest pair is at ``head - 1``.
      gamma: the initial inverse Hessian ``γ I``, ``γ = y · s / y · y`` [``H_diag``].
      prev_grad: the gradient at the start of the last iteration [``prev_flat_grad``].
      prev_loss: the loss there [``prev_loss``].
      n_iter: iterations over all steps (int32) [``n_iter``].
      func_evals: evaluations over all steps, each step's given ``value`` included
        [``func_evals``].
      evals: evaluations in the last step, its given ``value`` included
        (torch's local ``current_evals``).
    """

    d: jax.Array
    t: jax.Array
    s: jax.Array
    y: jax.Array
    rho: jax.Array
    num_pairs: jax.Array
    head: jax.Array
    gamma: jax.Array
    prev_grad: jax.Array
    prev_loss: jax.Array
    n_iter: jax.Array
    func_evals: jax.Array
    evals: jax.Array


class _Carry(NamedTuple):
    """One step's loop state: the point, the memory, the counters."""

    x: jax.Array
    loss: jax.Array
    g: jax.Array
    mem: LbfgsState
    n_local: jax.Array
    done: jax.Array


def _two_loop(g: jax.Array, mem: LbfgsState) -> jax.Array:
    """``-H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), torch's order."""
    m = mem.rho.shape[0]

    def newest_first(i, carry):
        q, alpha = carry
        k = (mem.head - 1 - i + m) % m
        a = (mem.s[k] @ q) * mem.rho[k]
        return q + (-a) * mem.y[k], alpha.at[k].set(a)

    q, alpha = lax.fori_loop(0, mem.num_pairs, newest_first, (-g, jnp.zeros_like(mem.rho)))

    def oldest_first(i, r):
        k = (mem.head - mem.num_pairs + i + m) % m
        b = (mem.y[k] @ r) * mem.rho[k]
        return r + (alpha[k] - b) * mem.s[k]

    return lax.fori_loop(0, mem.num_pairs, oldest_first, q * mem.gamma)


def _remember(mem: LbfgsState, g: jax.Array, first: jax.Array) -> LbfgsState:
    """Add the last iteration's pair when ``y · s > 1e-10``; reset the memory on the first."""
    m = mem.rho.shape[0]
    y, s = g - mem.prev_grad, mem.d * mem.t
    ys = y @ s
    keep = jnp.logical_not(first) & (ys > CURVATURE_EPS)

    def put(buf, row):  # the oldest pair is overwritten once the ring is full
        return buf.at[mem.head].set(jnp.where(keep, row, buf[mem.head]))

    num_pairs = jnp.where(keep, jnp.minimum(mem.num_pairs + 1, m), mem.num_pairs)
    head = jnp.where(keep, (mem.head + 1) % m, mem.head)
    # divisors kept away from 0 where the pair is not kept (the first iteration's ys is 0):
    # the quotient is thrown away there, but checkify's div checks would see it
    gamma = jnp.where(keep, ys / jnp.where(keep, y @ y, 1), mem.gamma)
    return mem._replace(
        s=put(mem.s, s),
        y=put(mem.y, y),
        rho=put(mem.rho, 1.0 / jnp.where(keep, ys, 1)),
        num_pairs=jnp.where(first, 0, num_pairs).astype(jnp.int32),
        head=jnp.where(first, 0, head).astype(jnp.int32),
        gamma=jnp.where(first, jnp.ones_like(gamma), gamma),
    )


def _add(count: jax.Array, n: Any) -> jax.Array:
    """``count + n`` for small ``n >= 0``, saturating at the int32 maximum."""
    return (jnp.minimum(count, _dtypes.INT32_MAX - n) + n).astype(jnp.int32)


def _flat(leaves: list, dtype: Any) -> jax.Array:
    """The leaves as one vector (``jax.tree.leaves`` order), in ``dtype``: torch's flat view."""
    parts = [jnp.ravel(_tree.replicated(jnp.asarray(x))).astype(dtype) for x in leaves]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), dtype)


def _unflat(x: jax.Array, like: tuple) -> list:
    """``x`` cut into leaves of the types ``like`` (shapes, dtypes, explicit shardings)."""
    out, start = [], 0
    for leaf in like:
        piece = x[start : start + leaf.size].reshape(leaf.shape).astype(leaf.dtype)
        out.append(_tree.sharded_like(piece, leaf))
        start += leaf.size
    return out


class _Numbers(NamedTuple):
    """The update's hyperparameters that are data, passed to the loop as operands."""

    lr: jax.Array
    tol_grad: jax.Array
    tol_change: jax.Array


def _not_done(operands: tuple) -> jax.Array:
    return jnp.logical_not(operands[0].done)


def _sup(v: jax.Array) -> jax.Array:
    return jnp.max(jnp.abs(v), initial=jnp.zeros([], v.dtype))


def _body(
    value_fn: Callable[[Any], Any],
    treedef: Any,
    avals: tuple,
    max_iter: int,
    max_eval: int,
    line_search_fn: str | None,
) -> Callable[[Any], Any]:
    """One iteration of torch's loop, over ``(carry, numbers)``.  Everything that may
    change between updates is an operand; what the closure holds is the configuration."""

    def evaluate(x, dtype):
        loss, grads = jax.value_and_grad(value_fn)(treedef.unflatten(_unflat(x, avals)))
        return jnp.asarray(loss).astype(dtype), _flat(jax.tree.leaves(grads), dtype)

    def iteration(operands):
        c, n = operands
        n_iter = _numerics.safe_increment(c.mem.n_iter)
        first = n_iter == 1
        mem = _remember(c.mem, c.g, first)
        d = _two_loop(c.g, mem)
        # torch's min(1, 1 / sum|g|) lr, without dividing by a zero sum
        total = jnp.sum(jnp.abs(c.g))
        ratio = 1.0 / jnp.where(total > 1.0, total, 1.0)
        t = jnp.where(first & (total > 1.0), ratio * n.lr, n.lr)
        mem = mem._replace(d=d, t=t, prev_grad=c.g, prev_loss=c.loss, n_iter=n_iter)
        c = c._replace(mem=mem, n_local=c.n_local + 1)
        gtd = c.g @ d
        return lax.cond(gtd > -n.tol_change, stop, advance, c, gtd, n), n

    def stop(c, gtd, n):  # no descent direction: torch breaks before moving
        return c._replace(done=jnp.asarray(True))

    def advance(c, gtd, n):
        mem, dtype = c.mem, c.x.dtype
        if line_search_fn == "strong_wolfe":
            found = strong_wolfe(
                lambda t: evaluate(c.x + t * mem.d, dtype), mem.d, mem.t, c.loss, c.g, gtd,
                max_ls=max_eval - mem.evals,
            )  # fmt: skip  # its own tolerance_change (1e-9): torch passes not the optimizer's
            t, loss, g, spent = found.step, found.value, found.grad, found.evals
            x = c.x + t * mem.d
        else:
            t, x = mem.t, c.x + mem.t * mem.d
            last = c.n_local == max_iter  # torch does not re-evaluate after the last one
            loss, g, spent = lax.cond(
                last,
                lambda: (c.loss, c.g, jnp.zeros([], jnp.int32)),
                lambda: (*evaluate(x, dtype), jnp.ones([], jnp.int32)),
            )
        evals = mem.evals + spent
        mem = mem._replace(t=t, evals=evals, func_evals=_add(mem.func_evals, spent))
        done = (c.n_local == max_iter) | (evals >= max_eval) | (_sup(g) <= n.tol_grad)
        done |= (_sup(mem.d * t) <= n.tol_change) | (jnp.abs(loss - mem.prev_loss) < n.tol_change)
        return _Carry(x, loss, g, mem, c.n_local, done)

    return iteration


def check_keywords(call: str, extra: dict[str, Any], *, data: bool) -> None:
    """A keyword meant as data that would not reach ``value_fn`` is an error, not dropped."""
    value_fn = extra.get("value_fn")
    names = parameter_names(value_fn) if data and value_fn is not None else set()
    unknown = sorted(k for k in extra if k not in UPDATE_KEYWORDS | names)
    if unknown:
        why = (
            "value_fn has no parameters of those names" if data
            else "torch's rule calls value_fn(params) alone: close over data (functools.partial)"
        )  # fmt: skip
        raise TypeError(f"{call}.update: unexpected keywords {unknown}; {why}")


def torch_lbfgs(
    call: str,
    learning_rate: ScalarOrSchedule,
    max_iter: int,
    max_eval: int | None,
    tolerance_grad: float,
    tolerance_change: float,
    history_size: int,
    line_search_fn: str | None,
) -> GradientTransformation:
    """``gradtx.lbfgs``'s torch rule, its arguments checked by the caller ``call``."""
    if max_eval is None:
        max_eval = max_iter * 5 // 4

    def init(params):
        leaves = [jnp.asarray(x) for x in jax.tree.leaves(params)]
        for x in leaves:
            if jnp.iscomplexobj(x):
                raise TypeError(
                    f"{call}: complex params are not supported under torch's rule (torch "
                    "views them as real pairs); convention='optax' takes them as optax does"
                )
        dtype = _dtypes.compute_dtype(*(x.dtype for x in leaves))
        n = sum(math.prod(x.shape) for x in leaves)
        vector, scalar = jnp.zeros(n, dtype), jnp.zeros([], dtype)
        history, count = jnp.zeros((history_size, n), dtype), jnp.zeros([], jnp.int32)
        return LbfgsState(
            d=vector, t=scalar, s=history, y=history, rho=jnp.zeros(history_size, dtype),
            num_pairs=count, head=count, gamma=jnp.ones([], dtype), prev_grad=vector,
            prev_loss=scalar, n_iter=count, func_evals=count, evals=count,
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        check_keywords(call, extra, data=False)
        value_fn, value = _tree.users_code(extra.get("value_fn")), extra.get("value")
        if params is None or value is None or value_fn is None:
            raise _update_checks.missing_keyword(
                f"{call}: update needs params, value= (the loss at params) and value_fn= "
                "(params -> loss), as torch's step needs its closure"
            )
        value = _update_checks.scalar_loss(call, value)
        _update_checks.loss_function(call, "value_fn", value_fn, params)
        leaves, treedef = jax.tree.flatten(params)
        leaves = [jnp.asarray(x) for x in leaves]
        grad_leaves = jax.tree.leaves(gradient(updates, extra))
        dtype = state.d.dtype
        given = (learning_rate, tolerance_grad, tolerance_change)
        numbers = _Numbers(*(jnp.asarray(v).astype(dtype) for v in given))
        g0 = _flat(grad_leaves, dtype)
        mem = state._replace(evals=jnp.ones([], jnp.int32), func_evals=_add(state.func_evals, 1))
        start = _Carry(
            _flat(leaves, dtype), jnp.asarray(value).astype(dtype), g0, mem,
            jnp.zeros([], jnp.int32), _sup(g0) <= numbers.tol_grad,
        )  # fmt: skip
        avals = tuple(jax.typeof(x) for x in leaves)
        config = (value_fn, treedef, avals, max_iter, max_eval, line_search_fn)
        probes = ((value_fn, (params,)),)  # the loop calls value_fn(params) alone
        body = _control.loop_body(_body, config, (start, numbers), probes)
        end, _ = lax.while_loop(_not_done, body, (start, numbers))
        out = [
            (new - old).astype(g.dtype)
            for new, old, g in zip(_unflat(end.x, avals), leaves, grad_leaves)
        ]
        return treedef.unflatten(out), end.mem

    return GradientTransformation(init, update)
