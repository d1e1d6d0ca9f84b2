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
from gradtx._lr_sweep import CALL
from gradtx._lr_sweep import Same
from gradtx._lr_sweep import check_range
from gradtx._lr_sweep import run_sweep
from gradtx._lr_sweep import smoothed_curve
from gradtx._lr_sweep import suggest_rates


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
    takes ``loss_fn(params, batch_i)`` and its gradient (conjugated for complex params,
    as gradtx's updates take it), and updates; ``lr_i`` grows
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

    The two rules are independent: where the steepest fall comes in the last 10% of
    the descent (a cliff just before the minimum), ``suggested_lr`` lies above
    ``max_lr``, and the bounds are the safer reading.

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
    if min_lr < tiny:  # a max_lr that overflows is the hyperparameter's check (check_range)
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
    check_range(optimizer, params, hyperparam, vmapped, {"min_lr": min_lr, "max_lr": max_lr})
    t = np.linspace(0.0, 1.0, num_steps)
    lrs = (
        min_lr * (max_lr / min_lr) ** t if mode == "exponential" else min_lr + (max_lr - min_lr) * t
    )
    fraction = next((float(v) for v in lrs if np.isfinite(v) and v != np.round(v)), None)
    if fraction is not None:
        check_range(optimizer, params, hyperparam, vmapped, {"a step's value": fraction})

    dtype = float_dtype()
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.result_type(p)), params)  # not weak
    static = (Same(optimizer), Same(loss_fn), hyperparam, vmapped)
    numbers_ = [jnp.asarray(v, dtype) for v in (lrs, alpha, diverge_factor)]
    losses, steps = run_sweep(*static, params, batches, *numbers_)
    losses, steps = np.asarray(losses, np.float64), np.asarray(steps)
    runs, run_steps = np.atleast_2d(losses), np.atleast_1d(steps)
    smoothed = np.full_like(runs, np.nan)
    for r, (raw, n) in enumerate(zip(runs, run_steps)):
        smoothed[r, :n] = smoothed_curve(raw[:n], alpha)
    common = int(run_steps.min())
    # losses[i] is measured before step i's update: it shows the steps up to lr_{i-1}.
    curve = np.median(smoothed[:, :common], axis=0)
    suggested, bounds = suggest_rates(lrs[: common - 1], curve[1:])
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
