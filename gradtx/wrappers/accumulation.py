"""Gradient accumulation over ``every_k`` micro-steps."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx import _checks
from gradtx import _control
from gradtx import _dtypes
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Updates
from gradtx._base import extras_for
from gradtx._base import float_dtype
from gradtx._base import kind_of
from gradtx._build import run_body
from gradtx._build import widened
from gradtx._factory_state import made_by
from gradtx._specs import Transform
from gradtx.wrappers._state import StateCheck


class AccumulateGradientsState(NamedTuple):
    """``micro_step``: micro-steps since the last inner step (0..every_k-1);
    ``grad_sum``: the sum of their gradients (the one extra buffer);
    ``inner_state``: the wrapped optimizer's state."""

    micro_step: jax.Array
    grad_sum: Updates
    inner_state: OptState


def accumulate_gradients(
    inner: optax.GradientTransformation, every_k: int, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Run ``inner`` once every ``every_k`` calls, on the mean gradient.

    Calls 1..k-1 of each cycle add the gradient to ``grad_sum`` and return
    zero updates (the params stay put, ``inner``'s state is untouched).  Call
    k hands ``grad_sum / k`` to ``inner``, returns its updates and resets the
    buffer.  So k micro-batches of equal size give exactly one step on the
    full batch's gradient; the memory cost is one buffer like the params.
    Integer gradient leaves (an optax inner may take them) are averaged in
    the default float dtype, and ``inner``'s updates for them returned in the
    dtype it gives, as ``inner`` alone would.

    The branch is a ``jax.lax.cond`` (no Python control flow), so the step
    jits once and ``vmap`` works (under ``vmap`` both branches run).

    Place it around the whole optimizer: it must see the gradient, and what
    follows must run on the k-th call only (a member after it in a chain runs
    every call, on the zeros in between: Adam's moments would decay).  Given
    the chain's ``grads`` keyword (i.e. placed after a
    non-map member) it raises, since averaging its input would not average
    the gradient.  Other extras reach ``inner`` on the k-th call only: a
    ``value=loss`` is then the last micro-batch's loss, and a plateau metric
    given on calls 1..k-1 is not seen (pass it with a k-th call).  An optimizer built
    inside a user's factory body reads the factory's count, one per call; it
    gets its own steps instead (calls less the pending micro-steps, over
    ``every_k``: shifted after a restore under another ``every_k``).

    Differences: ``optax.MultiSteps`` keeps a running mean instead of a sum
    and returns an extra state wrapper; torch users divide the loss by k and
    call ``optimizer.step()`` every k backward passes, which is the same step.

    Args:
      inner: the optimizer to run on the accumulated gradient.
      every_k: static int >= 1 (1: ``inner`` every call, still through the buffer).
      dtype: storage dtype of ``grad_sum`` (``None``: each parameter's dtype,
        float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.accumulate_gradients(gradtx.sgd(0.1), every_k=2)
      >>> state = opt.init({"w": jnp.zeros(1)})
      >>> u, state = opt.update({"w": jnp.ones(1)}, state)
      >>> u, state = opt.update({"w": 3 * jnp.ones(1)}, state)
      >>> u["w"]
      Array([-0.2], dtype=float32)
    """
    call = "gradtx.accumulate_gradients"
    inner = Transform().check(call, "inner", inner)
    _checks.check_int(call, "every_k", every_k, 1)
    _checks.check_dtype(call, "dtype", dtype)

    def init(params):
        # Only arrays (Python numbers become scalar ones); which dtypes make sense is the
        # inner optimizer's rule (an optax inner may take int leaves or other dtypes).
        params = jax.tree.map(jnp.asarray, params)
        checked.record(params)
        state = AccumulateGradientsState(
            jnp.zeros([], jnp.int32), _tree.zeros_like(params, dtype), inner.init(params)
        )
        return _tree.settled(state, params)

    checked = StateCheck(call, init)

    # The conditional's branches take every array as an operand, the non-array extras
    # (a value_fn) from their closure; an eager micro-step runs the branch taken.
    def branches(fixed):
        def step(grad_sum, inner_state, updates, params, arrays, buffer, count):
            leaves = jax.tree.leaves(updates)
            treedef = jax.tree.structure(updates)
            # Given the params, the mean of 16-bit gradients goes on to an optimizer a
            # gradtx factory made in its wider sum's dtype, as such an optimizer hands
            # its stages 16-bit updates: rounded to float16 first, a mean of 1e-7
            # gradients lost a fifth of its step.  Anything else (optax's, a chain, a
            # flatten) gets it rounded to the gradients' dtype, as before.
            keep = params is not None and made_by(inner) is not None
            sums = treedef.flatten_up_to(grad_sum)
            means = [mean_of(s, u, keep, count) for s, u in zip(sums, leaves)]

            def run(m):
                return inner.update(m, inner_state, params, **arrays, **dict(fixed))

            if keep:
                # an integer gradient's step stays in the float dtype of its mean
                like = treedef.unflatten(u if _inexact(u) else m for u, m in zip(leaves, means))
                means_tree = treedef.unflatten(means)
                out, inner_state = run_body(call, run, means_tree, params, inner_state, like)
            else:
                out, inner_state = run(treedef.unflatten(means))
            out = treedef.unflatten(
                x.astype(u.dtype) if _inexact(u) else x
                for x, u in zip(treedef.flatten_up_to(out), leaves)
            )
            return out, jax.tree.map(jnp.zeros_like, buffer), inner_state

        def wait(grad_sum, inner_state, updates, params, arrays, buffer, count):
            kept = _tree.stored_like(grad_sum, buffer)
            if all(_inexact(u) for u in jax.tree.leaves(updates)):
                return jax.tree.map(jnp.zeros_like, updates), kept, inner_state
            like = jax.eval_shape(
                step, grad_sum, inner_state, updates, params, arrays, buffer, count
            )
            zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), like[0])
            return zeros, kept, inner_state

        def mean_of(s, u, keep, count):
            # Integer gradients (an optax inner may take them) are averaged as true
            # division gives, and the inner's updates for them kept in its dtype: cast
            # back, the mean of 1 and 2 was 1 and optax.sgd(0.1)'s -0.1 became 0.
            # count is every_k but after a restore with a smaller every_k (the sum then
            # holds more micro-batches: their mean)
            if not _inexact(u):
                return s.astype(float_dtype()) / count.astype(float_dtype())
            mean = s / count.astype(s.dtype)
            return mean.astype(_dtypes.compute_dtype(u.dtype) if keep else u.dtype)

        return step, wait

    def update(updates, state, params=None, **extra):
        if extra.get("grads") is not None:
            raise ValueError(
                f"{call}: received the chain's grads keyword, so it sits after a "
                "non-map member and its input is not the gradient; put it around the "
                "whole optimizer"
            )
        extra.pop("grads", None)
        updates = jax.tree_util.tree_map_with_path(_array(call), updates)
        state = checked.check(state, updates, params)
        _tree.check_same_structure(f"{call}.update", updates, state.grad_sum, "accumulator")
        leaves = jax.tree_util.tree_leaves_with_path(updates)
        like = jax.tree.leaves(state.grad_sum if params is None else params)
        for (path, u), s in zip(leaves, like):
            s = jnp.asarray(s)
            # the sum would broadcast; a float of another width than the param's would
            # come back in that width (bfloat16 updates for float32 params), where the
            # gradtx inner itself refuses such gradients (an optax inner's rules stand)
            ours = params is not None and made_by(inner) is not None
            other = ours and u.dtype != s.dtype and _inexact(u) and _inexact(s)
            other = other and not widened(u.dtype, s.dtype)
            if u.shape != s.shape or other:
                raise ValueError(
                    f"{call}.update: updates leaf {jax.tree_util.keystr(path)} is "
                    f"{u.dtype.name}{list(u.shape)} but the param is {s.dtype.name}{list(s.shape)}"
                )

        def add(s, g):
            # In at least float32: a narrower dtype= rounds what is stored, not the sum
            # the step averages (a bfloat16 buffer dropped a second micro-batch of 0.003
            # after one of 1.0; a float16 one overflowed a sum it never stored).
            floats = [d for d in (s.dtype, g.dtype) if jnp.issubdtype(d, jnp.inexact)]
            if not floats:
                return s + g.astype(s.dtype)  # integers into an integer sum
            wide = _dtypes.compute_dtype(*floats)  # integer gradients too, into a float sum
            return s.astype(wide) + g.astype(wide)

        grad_sum = jax.tree.map(add, state.grad_sum, updates)
        micro_step = state.micro_step + 1

        if extra.get("count") is not None:
            # Inside a factory's body the count is the factory's, one per call; the
            # inner steps once per every_k calls, and reads how many steps it took
            # (as if every_k had always been this one: a state restored under another
            # every_k shifts that count, documented).
            done = (extra["count"] - state.micro_step) // every_k
            extra = {**extra, "count": done.astype(jnp.int32)}
        arrays, fixed = _control.split_data(extras_for(inner, extra))
        operands = (grad_sum, state.inner_state, updates, params, arrays, state.grad_sum)
        # >=: a state saved with a larger every_k steps at once instead of never
        ready = micro_step >= every_k
        out, grad_sum, inner_state = _control.cond(ready, *branches(fixed), *operands, micro_step)
        micro_step = jnp.where(ready, 0, micro_step).astype(jnp.int32)
        new_state = AccumulateGradientsState(micro_step, grad_sum, inner_state)
        return out, _tree.settled(new_state, (params, out))

    return kind_of(inner)(init, update)  # a wrapped gradient map is still one


def _inexact(u: jax.Array) -> bool:
    return bool(jnp.issubdtype(u.dtype, jnp.inexact))


def _array(call: str):
    def leaf(path, x):
        if getattr(x, "dtype", None) == jax.dtypes.float0:
            raise TypeError(
                f"{call}: updates leaf {jax.tree_util.keystr(path)} has dtype float0 (the "
                f"gradient of an integer input). {_checks.KEEP_OUT}  For an optax inner "
                "that takes integer updates, give zeros of the param's dtype there."
            )
        return jnp.asarray(x)

    return leaf
