"""The learning-rate range test (Smith 2017), as one compiled program.

The test trains for a short while (100 steps by default) as the learning rate
grows from tiny to huge, and records the loss.  Where the loss falls fastest,
and where it stops falling, tell which learning rates to use.  A gradtx
optimizer keeps its learning rate in its state, so the test sets it with
``set_hyperparams`` inside a ``lax.while_loop``: the step is traced and compiled
once, and the loop ends as soon as the loss has clearly diverged.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import numbers
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx  # public names, looked up at call time (gradtx imports this module)
from gradtx._base import Params
from gradtx._base import float_dtype
from gradtx._base import is_schedule
from gradtx._hyperparam_paths import find_entry
from gradtx._hyperparam_paths import locations
from gradtx._hyperparam_paths import named_entries
from gradtx._hyperparams import replace_at

CALL = "gradtx.lr_range_test"
_BASE_FRACTION = 0.1  # base_lr: the smoothed loss has made 10% of its descent
_MAX_FRACTION = 0.9  # max_lr: ... and 90% of it


def _number(
    name: str, value: Any, low: float, *, high: float = math.inf, closed=False, finite=False
) -> float:
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0:
        try:  # a concrete JAX or NumPy scalar, as a number
            value = value.item()
        except jax.errors.ConcretizationTypeError:
            pass
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{CALL}({name}={value!r}): {name} must be a real number")
    value = float(value)
    top = high if not finite else math.nextafter(math.inf, 0.0)
    if not (low <= value if closed else low < value) or not value <= top:
        end = ")" if finite else "]"
        interval = f"{'[' if closed else '('}{low:g}, {high:g}{end}"
        above = " (above min_lr)" if name == "max_lr" else ""
        raise ValueError(f"{CALL}({name}={value!r}): {name} must be in {interval}{above}")
    return value


def _drivable(state: Any, name: str, probe: Any) -> Any:
    """``state`` with hyperparameter ``name`` settable by ``set_hyperparams`` (tried with
    ``probe``, the sweep's first value: 0 is outside some ranges, ``max_norm``'s).

    The gradtx schedule that ``name`` addresses is replaced by a constant (the test
    sets the value at every step, so the schedule would be ignored anyway); others
    under the same hyperparameter name, in other groups, run as usual."""
    try:
        gradtx.set_hyperparams(state, {name: probe})
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
    gradtx.set_hyperparams(new_state, {name: probe})  # now it can
    return new_state


def _check_range(optimizer: Any, params: Any, name: str, vmapped: bool, values: dict) -> None:
    """``values`` (the sweep's ends, or one of its values that is not a whole number,
    by what to call them) are values ``name`` may take, as ``set_hyperparams`` would
    check them against the factory that made the state (``b1`` driven to 1.5, a
    ``max_lr`` that overflows the stored float32, an integer such as
    ``average_params``' ``every`` driven through fractions, is refused here, before
    compiling).  The state is only traced for its structure: nothing is allocated."""
    one = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(jnp.shape(p)[vmapped:], jnp.result_type(p)), params
    )
    # probed with an array (data, taken unchecked), so a range error below names the end
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


class _Same:
    """A static argument of ``_run`` compared by identity, so that any optimizer and loss
    function (hashable or not) key the compilation cache, and the same ones reuse it."""

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return isinstance(other, _Same) and other.value is self.value


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _run(optimizer, loss_fn, hyperparam, vmap_params, params, batches, lrs, alpha, factor):
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


def _smooth(raw: np.ndarray, alpha: float) -> np.ndarray:
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


def _rules(lrs: np.ndarray, curve: np.ndarray) -> tuple[float, tuple[float, float]]:
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


@dataclasses.dataclass(frozen=True, repr=False)
class LRRangeTest:
    """What ``lr_range_test`` measured, and what it suggests.

    Attributes:
      learning_rates: the planned learning rate of each step, shape ``(num_steps,)``.
      losses: the loss of each step's batch before its update, NaN after the stop;
        shape ``(num_steps,)``, or ``(runs, num_steps)`` with ``vmap_params``.
        ``losses[i]`` shows the steps taken at ``learning_rates[:i]``, so the rules
        and ``plot`` read it against ``learning_rates[i - 1]``.
      smoothed_losses: ``losses`` averaged forward and backward up to the best point of
        the forward average, so that the blow-up past it never reaches the rules, and
        forward only after it; NaN after the stop.
      steps: the number of steps run (an array, one per run, with ``vmap_params``).
      suggested_lr: where the smoothed loss falls fastest against log(learning rate).
      bounds: ``(base_lr, max_lr)`` for ``cyclical`` or ``one_cycle``.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    steps: Any
    suggested_lr: float
    bounds: tuple[float, float]

    def __repr__(self) -> str:
        return (
            f"LRRangeTest(steps={self.steps} of {len(self.learning_rates)}, "
            f"suggested_lr={self.suggested_lr:.3g}, "
            f"bounds=({self.bounds[0]:.3g}, {self.bounds[1]:.3g}))"
        )

    def _checked_bounds(self, call: str) -> tuple[float, float]:
        if not all(math.isfinite(b) for b in self.bounds):
            raise ValueError(
                f"LRRangeTest.{call}: the test found no bounds (the smoothed loss never fell); "
                "rerun it from smaller learning rates or for more steps"
            )
        return self.bounds

    def one_cycle(self, total_steps: int, **kwargs: Any) -> gradtx.schedules.OneCycle:
        """``schedules.one_cycle`` from ``base_lr`` up to ``max_lr`` and down.

        ``peak_value=max_lr`` and ``div_factor=max_lr/base_lr`` (yours, if given); other
        keywords pass on.
        """
        base, high = self._checked_bounds("one_cycle")
        if "peak_value" in kwargs:
            raise TypeError(
                "LRRangeTest.one_cycle: peak_value is the test's max_lr; to choose your own, "
                "call gradtx.schedules.one_cycle directly"
            )
        kwargs.setdefault("div_factor", high / base)
        return gradtx.schedules.one_cycle(total_steps, high, **kwargs)

    def cyclical(self, step_size: int, **kwargs: Any) -> gradtx.schedules.Cyclical:
        """``schedules.cyclical`` between ``base_lr`` and ``max_lr``; keywords pass on."""
        base, high = self._checked_bounds("cyclical")
        return gradtx.schedules.cyclical(base, high, step_size, **kwargs)

    def plot(self, ax: Any = None, *, title: str | None = None, log_loss: bool | None = None):
        """Loss against learning rate (log axis), the suggestion and bounds marked.

        Args:
          ax: a matplotlib ``Axes`` to draw into (default: a new figure).
          title: the axes' title.
          log_loss: log scale for the loss (default: when positive losses span
            more than two decades).

        Returns:
          The matplotlib ``Figure``.
        """
        plt = importlib.import_module("matplotlib.pyplot")
        fig, ax = plt.subplots(figsize=(6.4, 4.2)) if ax is None else (ax.figure, ax)
        # Each loss against the last learning rate that moved the params before it.
        lrs, raw = self.learning_rates[:-1], np.atleast_2d(self.losses)[:, 1:]
        smooth = np.atleast_2d(self.smoothed_losses)[:, 1:]
        for run in raw:
            ax.plot(lrs, run, color="0.6", lw=0.8, alpha=0.6 if len(raw) == 1 else 0.3)
        if len(smooth) > 1:
            ax.fill_between(lrs, np.min(smooth, 0), np.max(smooth, 0), color="C0", alpha=0.25,
                            lw=0, label=f"smoothed, {len(smooth)} runs (min to max)")  # fmt: skip
        curve = np.median(smooth, 0)  # NaN where any run had stopped, as the rules read it
        label = "smoothed loss" + (", median" if len(smooth) > 1 else "")
        ax.plot(lrs, curve, color="C0", lw=2, label=label)
        base, high = self.bounds
        if math.isfinite(high):
            ax.axvspan(base, high, color="C2", alpha=0.15, label=f"bounds {base:.2g} to {high:.2g}")
        if math.isfinite(self.suggested_lr):
            at = curve[np.argmin(np.abs(lrs - self.suggested_lr))]
            ax.plot([self.suggested_lr], [at], "o", color="C3", ms=8,
                    label=f"steepest descent {self.suggested_lr:.2g}")  # fmt: skip
        shown = smooth[np.isfinite(smooth)]
        if log_loss is None:
            log_loss = shown.size > 0 and shown.min() > 0 and shown.max() > 100 * shown.min()
        ax.set_xscale("log")
        if log_loss and shown.size and not shown.min() > 0:
            raise ValueError(
                "LRRangeTest.plot(log_loss=True): the smoothed losses are not all positive; "
                "plot them on a linear scale"
            )
        if log_loss:
            ax.set_yscale("log")
        if shown.size:
            lo, hi = shown.min(), shown.max()
            pad = (hi / lo) ** 0.05 if log_loss else 0.05 * (hi - lo or abs(hi) or 1.0)
            ax.set_ylim(*((lo / pad, hi * pad) if log_loss else (lo - pad, hi + pad)))
        ax.set_xlim(lrs[0], lrs[-1])  # (the last rate's effect is never measured)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title)
        return fig


def _per_step_list(batches: Any) -> bool:
    """A list of per-step batches, whose leaves would otherwise be indexed along the
    batch axis: a list of one container, or of two or more pytrees of one structure
    whose leaves either match (shapes and all) or differ in leading length (a smaller
    last batch, which stacked arrays never have)."""
    if not isinstance(batches, list) or not batches:
        return False
    structures = {jax.tree.structure(b) for b in batches}
    if len(structures) != 1:
        return False
    if len(batches) == 1:
        return not jax.tree_util.treedef_is_leaf(structures.pop())
    shapes = {tuple(jnp.shape(x) for x in jax.tree.leaves(b)) for b in batches}
    lengths = {jnp.shape(x)[:1] for x in jax.tree.leaves(batches)}
    return len(shapes) == 1 or len(lengths) > 1


def lr_range_test(
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    params: Params,
    batches: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exponential",
    smoothing: float = 0.05,
    diverge_factor: float = 4.0,
    hyperparam: str = "learning_rate",
    vmap_params: bool = False,
) -> LRRangeTest:
    """Smith's learning-rate range test, run as one jitted ``lax.while_loop``.

    Step ``i`` sets the optimizer's learning rate to ``lr_i`` with ``set_hyperparams``,
    takes ``loss_fn(params, batch_i)`` and its gradient, and updates; ``lr_i`` grows
    from ``min_lr`` to ``max_lr`` geometrically (``mode="exponential"``) or in equal
    steps (``"linear"``).  The loop keeps a running average of the loss (exponential,
    debiased, remembering about ``smoothing * num_steps`` steps) and stops once it is
    non-finite or above its best by more than ``diverge_factor - 1`` times the best's
    size (for positive losses: above ``diverge_factor`` times the best); later steps
    are not computed.  Measuring the memory in the test's length keeps the smoothing
    the same width on the learning-rate axis whatever ``num_steps`` is.

    The rules, on the loss averaged forward then backward (so its descent does not lag
    behind the learning rate; its minimum, that of the forward average, trails the
    raw loss's by about ``1 + smoothing * num_steps`` steps), between its
    highest point before its minimum and the minimum:

    * ``suggested_lr``: the learning rate where that curve falls most steeply against
      log(learning rate), i.e. where training makes the most progress per step;
    * ``bounds = (base_lr, max_lr)``: Smith's rule for cyclical rates takes the rate
      where the loss starts to fall as the base and where the fall slows or turns as
      the maximum.  Here the base is where the curve has made 10% of its descent and
      the maximum where it has made 90%, which keeps ``max_lr`` below the minimum (the
      minimum sits at the edge of divergence).

    The optimizer is used as built: its other hyperparameters, schedules included, run
    as usual.  A gradtx schedule on the driven hyperparameter is replaced by a constant
    for the test, only the one ``hyperparam`` names (``"a/learning_rate"`` leaves group
    ``b``'s schedule running); a plain Python callable there is an error, as is an
    optimizer with no such hyperparameter.  Repeated calls with the same optimizer,
    ``loss_fn`` and shapes reuse the compiled program (other ranges and smoothing
    included).

    Args:
      optimizer: a gradtx optimizer (or any transform whose state holds the
        hyperparameter), e.g. ``gradtx.sgd(0.1, momentum=0.9)``.
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the initial parameters (a pytree); with ``vmap_params``, stacked
        along a leading axis of independent runs.
      batches: a pytree whose leaves share a leading step axis; step ``i`` uses
        entry ``i mod len``, so a few batches can serve many steps.  A list of
        per-step batches (an iterator's, say) is refused: stack it first.
      min_lr, max_lr: the first and last learning rate (``min_lr`` a normal number
        of JAX's float dtype: float32 unless x64 is on).
      num_steps: steps planned (at least 4: the rules read 3 losses past the first).
      mode: ``"exponential"`` or ``"linear"``.
      smoothing: the averages' memory as a fraction of ``num_steps``, in [0, 1]:
        the newest loss has weight ``1 / (1 + smoothing * num_steps)`` (0: none).
      diverge_factor: the stop rule's factor, above 1 (``math.inf``: never stop
        unless the loss is NaN or infinite).
      hyperparam: the name to drive, as ``set_hyperparams`` takes it (e.g.
        ``"head/learning_rate"`` for one group of a ``partition``).
      vmap_params: run every entry of ``params``' leading axis (initial weights from
        several seeds, e.g. ``jax.vmap(init)(keys)``) in one vmapped program; the
        rules then use the median smoothed curve over the steps all runs completed.

    Returns:
      An ``LRRangeTest`` with the curves, ``suggested_lr``, ``bounds``, ``plot()``, and
      ``one_cycle(total_steps)`` / ``cyclical(step_size)`` built from the bounds.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> loss_fn = lambda p, batch: 2.0 * jnp.sum(p**2)  # curvature 4: SGD diverges above 0.5
      >>> result = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, jnp.ones(3), jnp.zeros((1,)))
      >>> bool(result.suggested_lr < result.bounds[1] < 0.5)
      True
      >>> opt = gradtx.sgd(result.one_cycle(total_steps=1000), momentum=0.9)

    References:
      Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017 (section
      3.3, the range test); Smith & Topin, "Super-Convergence", 2017 (one cycle).
      fastai's ``lr_find`` is prior art for reading suggestions off the curve
      automatically; the rules above are this module's own.
    """
    if not isinstance(hyperparam, str):
        raise TypeError(f"{CALL}(hyperparam={hyperparam!r}): hyperparam must be a name (a str)")
    min_lr = _number("min_lr", min_lr, 0.0, finite=True)
    max_lr = _number("max_lr", max_lr, min_lr, finite=True)
    tiny = float(np.finfo(float_dtype()).tiny)
    if min_lr < tiny:  # a max_lr that overflows is the hyperparameter's check (_check_range)
        raise ValueError(
            f"{CALL}(min_lr={min_lr!r}): the learning rates are {np.dtype(float_dtype()).name} "
            f"(JAX's float dtype), where it would be 0 or subnormal; min_lr must be at "
            f"least {tiny!r}"
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise TypeError(f"{CALL}(num_steps={num_steps!r}): num_steps must be an int")
    if num_steps < 4:
        raise ValueError(f"{CALL}(num_steps={num_steps}): num_steps must be >= 4")
    if mode not in ("exponential", "linear"):
        raise ValueError(f"{CALL}(mode={mode!r}): mode must be 'exponential' or 'linear'")
    smoothing = _number("smoothing", smoothing, 0.0, high=1.0, closed=True)
    alpha = 1.0 / (1.0 + smoothing * num_steps)  # weight of the newest loss
    diverge_factor = _number("diverge_factor", diverge_factor, 1.0)
    # An iterator is refused before JAX flattens it (it would warn, then take it as a leaf).
    leaves = [] if isinstance(batches, Iterator) else jax.tree.leaves(batches)
    if not leaves or any(jnp.ndim(b) == 0 for b in leaves):
        raise ValueError(
            f"{CALL}: batches must be arrays with a leading step axis (a pytree of them, "
            "such as (xs, ys)); stack an iterator's or a list's batches with jnp.stack"
        )
    if _per_step_list(batches):
        raise ValueError(
            f"{CALL}: batches is a list of {len(batches)} pytree"
            f"{'s' if len(batches) > 1 else ''} of one structure, "
            "which reads as one batch per step, not as arrays with a step axis; "
            "stack them (jax.tree.map(lambda *b: jnp.stack(b), *batches)), or pass "
            "stacked arrays in a tuple or dict (batches of unequal sizes cut to one first)"
        )
    if len({jnp.shape(b)[0] for b in leaves}) != 1:
        raise ValueError(f"{CALL}: the leaves of batches differ in length along the step axis")
    if jnp.shape(leaves[0])[0] == 0:
        raise ValueError(f"{CALL}: batches have no steps (a leading step axis of length 0)")
    if not isinstance(vmap_params, (bool, np.bool_)):
        raise TypeError(f"{CALL}(vmap_params={vmap_params!r}): vmap_params must be a bool")
    runs = {jnp.shape(p)[:1] for p in jax.tree.leaves(params)}
    if vmap_params and (len(runs) != 1 or () in runs or (0,) in runs):
        raise ValueError(
            f"{CALL}(vmap_params=True): params' leaves need one leading run axis, of one "
            "or more runs"
        )
    vmapped = bool(vmap_params)
    _check_range(optimizer, params, hyperparam, vmapped, {"min_lr": min_lr, "max_lr": max_lr})
    t = np.linspace(0.0, 1.0, num_steps)
    lrs = (
        min_lr * (max_lr / min_lr) ** t if mode == "exponential" else min_lr + (max_lr - min_lr) * t
    )
    fraction = next((float(v) for v in lrs if np.isfinite(v) and v != np.round(v)), None)
    if fraction is not None:
        _check_range(optimizer, params, hyperparam, vmapped, {"a step's value": fraction})

    dtype = float_dtype()
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.result_type(p)), params)  # not weak
    static = (_Same(optimizer), _Same(loss_fn), hyperparam, vmapped)
    numbers_ = [jnp.asarray(v, dtype) for v in (lrs, alpha, diverge_factor)]
    losses, steps = _run(*static, params, batches, *numbers_)
    losses, steps = np.asarray(losses, np.float64), np.asarray(steps)
    runs, run_steps = np.atleast_2d(losses), np.atleast_1d(steps)
    smoothed = np.full_like(runs, np.nan)
    for r, (raw, n) in enumerate(zip(runs, run_steps)):
        smoothed[r, :n] = _smooth(raw[:n], alpha)
    common = int(run_steps.min())
    # losses[i] is measured before step i's update: it shows the steps up to lr_{i-1}.
    curve = np.median(smoothed[:, :common], axis=0)
    suggested, bounds = _rules(lrs[: common - 1], curve[1:])
    if not math.isfinite(suggested):
        if not np.isfinite(runs[:, 0]).all():
            why = "the loss at the initial params is not finite; fix the model or loss_fn"
        elif common < num_steps:
            # losses[i] shows the steps up to lrs[i - 1]
            why = (
                f"the loss diverged after {common} of {num_steps} steps (at learning rate "
                f"{lrs[max(common - 2, 0)]:g}), before the smoothed loss fell; lower max_lr "
                f"(now {max_lr:g}) or run more steps"
            )
        else:
            why = (
                f"the smoothed loss never fell; start from a smaller min_lr (now {min_lr:g}) "
                "or run more steps"
            )
        warnings.warn(f"{CALL}: no suggestion: {why}", stacklevel=2)
    return LRRangeTest(
        learning_rates=lrs,
        losses=losses,
        smoothed_losses=smoothed if vmap_params else smoothed[0],
        steps=steps if vmap_params else int(steps),
        suggested_lr=suggested,
        bounds=bounds,
    )
