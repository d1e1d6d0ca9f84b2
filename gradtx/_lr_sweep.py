"""The learning-rate range test's compiled sweep, and the reading of its curve.

Used by ``gradtx.lr_finder.lr_range_test``: which hyperparameter of the state the
sweep drives and whether the optimizer lets it reach every value
(``check_range``), the sweep itself, one ``lax.while_loop`` per run that sets
the rate with ``set_hyperparams`` and stops once the smoothed loss has diverged
(``run_sweep``, vmapped over runs), and the debiased smoothing and the 10%/90%
rules that turn the curve into suggested rates (``smoothed_curve``,
``suggest_rates``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradtx  # public names, looked up at call time (gradtx imports this module)
from gradtx._base import is_schedule
from gradtx._hyperparam_paths import find_entry
from gradtx._hyperparam_paths import locations
from gradtx._hyperparam_paths import named_entries
from gradtx._hyperparams import replace_at

CALL = "gradtx.lr_range_test"


_BASE_FRACTION = 0.1  # base_lr: the smoothed loss has made 10% of its descent


_MAX_FRACTION = 0.9  # max_lr: ... and 90% of it


def _drivable(state: Any, name: str, probe: Any) -> Any:
    """``state`` with hyperparameter ``name`` settable by ``set_hyperparams`` (tried with
    ``probe``, the sweep's first value: 0 is outside some ranges, ``max_norm``'s).

    The gradtx schedule that ``name`` addresses is replaced by a constant (the test
    sets the value at every step, so the schedule would be ignored anyway); others
    under the same hyperparameter name, in other groups, run as usual."""
    try:
        _set_traced(state, name, probe)
        return state
    except KeyError as exc:
        raise ValueError(
            f"{CALL}: the optimizer has no single hyperparameter {name!r} to drive "
            f"({exc.args[0]}); pass hyperparam= with the name to use"
        ) from None
    except ValueError as exc:
        reason = str(exc)
    # The entry set_hyperparams resolved name to, found the same way (two locations that
    # print one name raise here, naming both).
    _, path, key, field = find_entry(named_entries(state, CALL), name, CALL, state)
    value = dict(locations(state))[path].hyperparams.get(key) if field is None else None
    if not is_schedule(value):
        raise ValueError(
            f"{CALL}: set_hyperparams cannot drive {name!r} ({reason}). Build the optimizer "
            "with a number (or one gradtx schedule) for it; a plain Python callable is code, "
            "not data, and cannot be replaced"
        )
    constant = jnp.zeros((), jax.tree.leaves(value)[0].dtype)
    new_state = replace_at(
        state, path, lambda loc: loc._replace(hyperparams={**loc.hyperparams, key: constant})
    )
    _set_traced(new_state, name, probe)  # now it can
    return new_state


def _set_traced(state: Any, name: str, probe: jax.Array) -> None:
    """Whether ``set_hyperparams`` can set ``name`` at all (raises if not), the probe
    traced, so that only the form is judged: ``check_range`` judges the values."""
    jax.eval_shape(lambda s, v: gradtx.set_hyperparams(s, {name: v}), state, probe)


def check_range(optimizer: Any, params: Any, name: str, vmapped: bool, values: dict) -> None:
    """``values`` (the sweep's ends, or one of its values that is not a whole number,
    by what to call them) are values ``name`` may take, as ``set_hyperparams`` would
    check them against the factory that made the state (``b1`` driven to 1.5, a
    ``max_lr`` that overflows the stored float32, an integer such as
    ``average_params``' ``every`` driven through fractions, is refused here, before
    compiling).  The state is only traced for its structure: nothing is allocated."""
    one = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(jnp.shape(p)[vmapped:], jnp.result_type(p)), params
    )
    probe = jnp.asarray(next(iter(values.values())))
    state = _drivable(jax.eval_shape(optimizer.init, one), name, probe)
    for end, value in values.items():
        try:
            gradtx.set_hyperparams(state, {name: value})
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{CALL}({end}={value!r}): {name} cannot take it: {exc}") from None


def _scalar_loss(loss_fn: Callable) -> Callable:
    """``loss_fn``, refusing an output that is not one real number while it is traced
    (before ``jax.grad``'s own error, which does not name the call)."""

    def loss(params, batch):
        out = loss_fn(params, batch)
        if not (
            isinstance(out, jax.Array)
            and out.shape == ()
            and jnp.issubdtype(out.dtype, jnp.floating)
        ):
            shown = (
                f"{out.dtype}{list(out.shape)}"
                if isinstance(out, jax.Array)
                else type(out).__name__
            )
            raise ValueError(
                f"{CALL}: loss_fn(params, batch) must return one real number, got {shown}"
            )
        return out

    return loss


def _one_run(optimizer, loss_fn, hyperparam, params, batches, lrs, alpha, factor):
    """Losses of one range test (NaN where not run) and the number of steps run."""
    dtype, num_steps = lrs.dtype, lrs.shape[0]
    num_batches = jax.tree.leaves(batches)[0].shape[0]
    state = _drivable(optimizer.init(params), hyperparam, lrs[0])

    def body(carry):
        i, params, state, ema, weight, best, losses, _ = carry
        batch = jax.tree.map(
            lambda b: jax.lax.dynamic_index_in_dim(b, i % num_batches, 0, False), batches
        )
        state = gradtx.set_hyperparams(state, {hyperparam: lrs[i]})
        loss, grads = jax.value_and_grad(_scalar_loss(loss_fn))(params, batch)
        grads = jax.tree.map(jnp.conj, grads)  # gradtx's convention for complex params
        updates, state = optimizer.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        loss = jnp.asarray(loss).astype(dtype)
        ema = (1 - alpha) * ema + alpha * loss  # the running average, debiased by `weight`
        weight = (1 - alpha) * weight + alpha
        smooth = ema / weight
        best = jnp.where(jnp.isfinite(smooth), jnp.minimum(best, smooth), best)
        stop = ~jnp.isfinite(smooth) | (smooth > best + (factor - 1) * jnp.abs(best))
        return i + 1, params, state, ema, weight, best, losses.at[i].set(loss), stop

    zero = jnp.zeros((), dtype)
    carry = (jnp.int32(0), params, state, zero, zero, jnp.full((), jnp.inf, dtype),
             jnp.full((num_steps,), jnp.nan, dtype), jnp.array(False))  # fmt: skip
    carry = jax.lax.while_loop(lambda c: (c[0] < num_steps) & ~c[-1], body, carry)
    return carry[6], carry[0]


class Same:
    """A static argument of ``run_sweep`` compared by identity, so that any optimizer and loss
    function (hashable or not) key the compilation cache, and the same ones reuse it."""

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return isinstance(other, Same) and other.value is self.value


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def run_sweep(optimizer, loss_fn, hyperparam, vmap_params, params, batches, lrs, alpha, factor):
    run = functools.partial(_one_run, optimizer.value, loss_fn.value, hyperparam)
    if vmap_params:
        run = jax.vmap(run, in_axes=(0, None, None, None, None))
    return run(params, batches, lrs, alpha, factor)


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Debiased exponential moving average along the last axis."""
    out, ema, weight = np.empty_like(x), np.zeros(x.shape[:-1]), 0.0
    for i in range(x.shape[-1]):
        ema, weight = (1 - alpha) * ema + alpha * x[..., i], (1 - alpha) * weight + alpha
        out[..., i] = ema / weight
    return out


def smoothed_curve(raw: np.ndarray, alpha: float) -> np.ndarray:
    """The loss averaged forward, then backward up to the best point of the forward
    average; past it, the forward average.

    The backward pass stops at the best point so that the blow-up after it, which
    depends on where the test stops, never reaches the falling part the rules read:
    the curve up to there is the same for any ``diverge_factor`` and any constant
    added to the loss.  The price: the curve's minimum is the forward average's,
    which trails the raw loss's by about ``1/alpha`` steps (a clipped tail averaged
    back, as before 2026-12-02, moved the bounds with ``diverge_factor`` instead)."""
    running = _ema(raw, alpha)
    finite = np.isfinite(running)
    if not finite.any():
        return np.full_like(raw, np.nan)
    best_at = int(np.argmin(np.where(finite, running, np.inf)))  # raw is finite up to here
    head = _ema(_ema(raw[: best_at + 1], alpha)[::-1], alpha)[::-1]
    return np.concatenate([head, running[best_at + 1 :]])


def suggest_rates(lrs: np.ndarray, curve: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Steepest descent and Smith's bounds on a smoothed curve (see ``lr_range_test``),
    read up to its first non-finite point: a run that ends on an overflow or a NaN
    (``diverge_factor=inf`` always does) still fell before it."""
    nan = (math.nan, (math.nan, math.nan))
    finite = np.isfinite(curve)
    end = len(curve) if finite.all() else int(np.argmin(finite))
    if end < len(curve) and curve[end] == -math.inf:
        return nan  # a loss unbounded below: its fall is the divergence, not a rate's
    lrs, curve = lrs[:end], curve[:end]
    if len(curve) < 3:
        return nan
    low = int(np.argmin(curve))
    top = int(np.argmax(curve[: low + 1]))
    drop = curve[top] - curve[low]
    if low - top < 2 or not drop > 0:
        return nan
    x, y = np.log(lrs[top : low + 1]), curve[top : low + 1]
    steepest = top + int(np.argmin(np.gradient(y, x)))
    base = top + int(np.argmax(y <= curve[top] - _BASE_FRACTION * drop))
    high = top + int(np.argmax(y <= curve[top] - _MAX_FRACTION * drop))
    base = min(base, high - 1)
    return float(lrs[steepest]), (float(lrs[base]), float(lrs[high]))
