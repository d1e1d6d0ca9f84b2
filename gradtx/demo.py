"""``python -m gradtx``: train a small MLP on scikit-learn's digits with several optimizers.

The digits data ships inside scikit-learn (no download).  Each optimizer trains
the same network from the same initial weights on the same shuffles; the demo
prints a table of final train/test loss and accuracy and wall time, and writes
a PNG of the training curves.  scikit-learn, matplotlib and tqdm are the
optional ``demo`` extra (from a checkout ``pip install -e '.[demo]'``, otherwise
``pip install 'gradtx[demo]'``) and are imported only here, when the demo runs.
The command line (options, checks, printing) is ``gradtx/__main__.py``.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import gradtx
from gradtx._registry import OPTIMIZERS

LR_FIND_RUNS = 3  # initial weights per optimizer in --lr-find, run as one vmapped program
INSTALL_HINT = "from a checkout: pip install -e '.[demo]'; otherwise: pip install 'gradtx[demo]'"


class Recipe(NamedTuple):
    """How the demo builds one optimizer: a gradtx factory name and its arguments."""

    factory: str
    kwargs: dict[str, Any]
    label: str


# Learning rates are each method's usual default for small nets (SGD needs a
# larger one); they are not tuned per optimizer beyond that.
RECIPES: dict[str, Recipe] = {
    "sgd": Recipe("sgd", {"learning_rate": 0.05}, "SGD lr=0.05"),
    "sgd-momentum": Recipe(
        "sgd", {"learning_rate": 0.05, "momentum": 0.9}, "SGD lr=0.05 momentum=0.9"
    ),
    "nesterov": Recipe(
        "sgd",
        {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
        "SGD lr=0.05 Nesterov 0.9",
    ),
    "adagrad": Recipe("adagrad", {"learning_rate": 0.05}, "Adagrad lr=0.05"),
    "rmsprop": Recipe("rmsprop", {"learning_rate": 1e-3}, "RMSProp lr=1e-3"),
    "adadelta": Recipe("adadelta", {"learning_rate": 1.0}, "AdaDelta lr=1"),
    "adam": Recipe("adam", {"learning_rate": 1e-3}, "Adam lr=1e-3"),
    "amsgrad": Recipe("amsgrad", {"learning_rate": 1e-3}, "AMSGrad lr=1e-3"),
    "adamw": Recipe(
        "adamw", {"learning_rate": 1e-3, "weight_decay": 1e-2}, "AdamW lr=1e-3 wd=1e-2"
    ),
    "nadam": Recipe("nadam", {"learning_rate": 2e-3}, "NAdam lr=2e-3"),
    "radam": Recipe("radam", {"learning_rate": 1e-3}, "RAdam lr=1e-3"),
    "adabound": Recipe(
        "adabound", {"learning_rate": 1e-3, "final_lr": 0.1}, "AdaBound lr=1e-3 final=0.1"
    ),
    "amsbound": Recipe(
        "amsbound", {"learning_rate": 1e-3, "final_lr": 0.1}, "AMSBound lr=1e-3 final=0.1"
    ),
    "swats": Recipe("swats", {"learning_rate": 1e-3}, "SWATS lr=1e-3"),
    "ranger": Recipe("ranger", {"learning_rate": 1e-3}, "Ranger lr=1e-3"),
    # torch's Muon takes matrices only; optax's rule gives the biases to AdamW.  At
    # torch's default lr 1e-3 it barely moves in 40 epochs here; 0.02 is the Muon
    # authors' learning rate.
    # Per-example gradients, each clipped to norm 1, with noise of std 0.5 / batch.
    "dpsgd": Recipe(
        "dpsgd",
        {
            "learning_rate": 0.05,
            "l2_norm_clip": 1.0,
            "noise_multiplier": 0.5,
            "seed": 0,
            "momentum": 0.9,
        },
        "DP-SGD lr=0.05 clip=1 noise=0.5 momentum=0.9",
    ),  # fmt: skip
    # torch's default (lr 1, no line search) diverges on minibatches
    "lbfgs": Recipe(
        "lbfgs", {"line_search_fn": "strong_wolfe"}, "L-BFGS (strong Wolfe line search)"
    ),
    "muon": Recipe(
        "muon",
        {"learning_rate": 0.02, "convention": "optax"},
        "Muon lr=0.02 (optax's rule: AdamW on the biases)",
    ),
}


# optax's optimizers have no default learning rate; the demo gives them Adam's.
DEMO_LEARNING_RATE = 1e-3


def _required(name: str) -> list[str]:
    parameters = inspect.signature(OPTIMIZERS[name].factory).parameters.values()
    return [p.name for p in parameters if p.default is p.empty and p.kind is not p.VAR_KEYWORD]


def available() -> list[str]:
    """The demo's names: the recipes above, then every other registered optimizer that
    needs nothing but a learning rate (not ``lookahead``, ``mechanize`` or ``sam``, which
    wrap another optimizer), with its own defaults."""
    others = sorted(
        n for n in OPTIMIZERS if n not in RECIPES and set(_required(n)) <= {"learning_rate"}
    )
    return [*RECIPES, *others]


def recipe(name: str) -> Recipe:
    """How the demo builds ``name``: its recipe, or the registered factory's defaults
    (``DEMO_LEARNING_RATE`` where it has no default learning rate)."""
    if name in RECIPES:
        return RECIPES[name]
    if _required(name):
        return Recipe(
            name, {"learning_rate": DEMO_LEARNING_RATE}, f"{name} lr={DEMO_LEARNING_RATE:g}"
        )
    return Recipe(name, {}, f"{name} (defaults)")


def make_optimizer(name: str) -> Any:
    """The gradtx optimizer for a demo name (see ``available``)."""
    chosen = recipe(name)
    return getattr(gradtx, chosen.factory)(**chosen.kwargs)


def takes(name: str) -> tuple[str, ...]:
    """The keywords ``name``'s update needs besides the gradient (the registry's ``takes``)."""
    return OPTIMIZERS[recipe(name).factory].takes


def per_example(name: str) -> bool:
    """``name``'s update takes per-example gradients (DP-SGD)."""
    return OPTIMIZERS[recipe(name).factory].example_axis


# ----------------------------------------------------------------------------- optional deps


def require(module: str, package: str):
    """Import an optional dependency of the demo, or exit naming the extra that has it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(
            f"python -m gradtx needs {package}, which is not installed. Install the demo "
            f"extra (scikit-learn, matplotlib, tqdm), {INSTALL_HINT}"
        ) from None


# ----------------------------------------------------------------------------- data and model


class Data(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(seed: int, test_fraction: float = 0.25) -> Data:
    """scikit-learn's 8x8 digits (1797 images, bundled), standardised, split by ``seed``."""
    datasets = require("sklearn.datasets", "scikit-learn")
    x, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int32)
    n_test = int(round(len(x) * test_fraction))
    x_train, x_test = x[n_test:], x[:n_test]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # train statistics only
    return Data((x_train - mean) / std, y[n_test:], (x_test - mean) / std, y[:n_test])


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """He-initialised dense layers."""
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes, sizes[1:])):
        w = jax.random.normal(k, (n_in, n_out), jnp.float32) * jnp.sqrt(jnp.float32(2.0 / n_in))
        params.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return params


def mlp(params: Any, x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_and_accuracy(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = mlp(params, x)
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return loss, jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))


def evaluation_point(name: str) -> Callable | None:
    """``(state, params) -> params`` at which ``name``'s metrics are taken, ``None`` for
    the params themselves: schedule-free methods train at an interpolation and are
    evaluated at their average (``schedule_free_eval_params``)."""
    if recipe(name).factory.startswith("schedule_free_"):
        return gradtx.schedule_free_eval_params
    return None


def make_epoch(
    opt,
    data: Data,
    batch_size: int,
    keywords: Sequence[str] = (),
    per_example: bool = False,
    evaluate: Callable | None = None,
) -> Callable:
    """One jitted epoch: shuffle, a ``lax.scan`` of minibatch steps, then full-set metrics.

    ``keywords``: what the optimizer's update needs besides the gradient: the batch
    loss ``value`` and, as a function of the params, ``value_fn`` / ``obj_fn``.
    ``per_example``: give the update one gradient per example (DP-SGD).
    ``evaluate``: where the metrics are taken (``evaluation_point``).
    """
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    n_batches = len(data.x_train) // batch_size

    def step(carry, idx):
        params, state = carry

        def batch_loss(p):
            return loss_and_accuracy(p, x_train[idx], y_train[idx])[0]

        loss, grads = jax.value_and_grad(batch_loss)(params)
        if per_example:

            def example_loss(p, x, y):
                return loss_and_accuracy(p, x[None], y[None])[0]

            grads = jax.vmap(jax.grad(example_loss), (None, 0, 0))(
                params, x_train[idx], y_train[idx]
            )
        given = {"value": loss, "value_fn": batch_loss, "obj_fn": batch_loss}
        updates, state = opt.update(grads, state, params, **{k: given[k] for k in keywords})
        return (gradtx.apply_updates(params, updates), state), None

    @jax.jit
    def epoch(params, state, key):
        order = jax.random.permutation(key, len(data.x_train))[: n_batches * batch_size]
        (params, state), _ = jax.lax.scan(
            step, (params, state), order.reshape(n_batches, batch_size)
        )
        at = params if evaluate is None else evaluate(state, params)
        metrics = loss_and_accuracy(at, x_train, y_train) + loss_and_accuracy(at, x_test, y_test)
        return params, state, jnp.stack(metrics)

    return epoch


class Result(NamedTuple):
    name: str
    history: np.ndarray  # (epochs, 4): train loss, train acc, test loss, test acc
    seconds: float  # the epochs' wall time, compilation excluded
    compile_seconds: float = 0.0


def _compile(fn, *args):
    """Compile a jitted function for these arguments ahead of time."""
    return fn.lower(*args).compile()


def train(name, data, *, epochs, batch_size, hidden, seed, progress=True) -> Result:
    tqdm = require("tqdm", "tqdm").tqdm
    opt = make_optimizer(name)
    params = init_mlp(jax.random.PRNGKey(seed), [data.x_train.shape[1], *hidden, 10])
    state = opt.init(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), epochs)  # same shuffles for all
    # Compile before the progress bar starts, so its rate and ETA time the epochs only.
    start = time.perf_counter()
    epoch = _compile(
        make_epoch(opt, data, batch_size, takes(name), per_example(name), evaluation_point(name)),
        params,
        state,
        keys[0],
    )
    compile_seconds = time.perf_counter() - start
    history = []
    start = time.perf_counter()
    with tqdm(total=epochs, desc=f"{name:>12}", disable=not progress, leave=True) as bar:
        for key in keys:
            params, state, metrics = epoch(params, state, key)
            metrics = np.asarray(metrics)
            history.append(metrics)
            bar.set_postfix(train_loss=f"{metrics[0]:.3f}", test_acc=f"{metrics[3]:.3f}")
            bar.update()
    return Result(name, np.stack(history), time.perf_counter() - start, compile_seconds)


# ----------------------------------------------------------------------------- report


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = lambda row: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])


def format_table(results: Sequence[Result]) -> str:
    header: tuple[str, ...] = ("optimizer", "train loss", "train acc", "test loss", "test acc")
    header += ("time (s)",)
    header += ("compile (s)",)
    rows = [
        (
            r.name,
            *(f"{v:.4f}" for v in r.history[-1]),
            f"{r.seconds:.1f}",
            f"{r.compile_seconds:.1f}",
        )
        for r in results
    ]
    return _table(header, rows)


def plot(results: Sequence[Result], path: str, title: str) -> None:
    matplotlib = require("matplotlib", "matplotlib")
    matplotlib.use("Agg")  # files only: works without a display
    plt = importlib.import_module("matplotlib.pyplot")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [(0, "train loss", True), (2, "test loss", True), (3, "test accuracy", False)]
    styles = ["-", "--", "-.", ":"]  # curves that coincide (Adam vs AdaBound early) stay visible
    for ax, (col, label, log) in zip(axes, panels):
        for i, r in enumerate(results):
            epochs = np.arange(1, len(r.history) + 1)
            ax.plot(epochs, r.history[:, col], styles[i % 4], label=r.name, lw=1.8)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    axes[2].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- --lr-find


def lr_find(
    names: Any, data: Any, *, batch_size: int, hidden: Any, seed: int, num_steps: int = 100,
    runs: int = LR_FIND_RUNS,
) -> Any:  # fmt: skip
    """``gradtx.lr_range_test`` for each optimizer on the same batches and initial weights.

    ``runs`` initial weights (from ``seed``) are tested together with ``vmap_params``, so
    each curve comes with a band.  Returns {name: LRRangeTest}.
    """
    rng = np.random.default_rng(seed + 2)
    order = np.stack([rng.permutation(len(data.x_train))[:batch_size] for _ in range(num_steps)])
    batches = (jnp.asarray(data.x_train[order]), jnp.asarray(data.y_train[order]))
    sizes = [data.x_train.shape[1], *hidden, 10]
    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    params = jax.vmap(lambda key: init_mlp(key, sizes))(keys)

    def loss_fn(params, batch):
        return loss_and_accuracy(params, *batch)[0]

    return {
        name: gradtx.lr_range_test(
            make_optimizer(name), loss_fn, params, batches, num_steps=num_steps, vmap_params=True
        )
        for name in names
    }


def _demo_lr(name: str) -> str:
    """The learning rate the demo trains ``name`` with: its recipe's, else the default."""
    chosen = recipe(name)
    if "learning_rate" in chosen.kwargs:
        return f"{chosen.kwargs['learning_rate']:g}"
    param = inspect.signature(getattr(gradtx, chosen.factory)).parameters.get("learning_rate")
    return "—" if param is None or param.default is param.empty else f"{param.default:g}"


def format_lr_table(results: dict[str, Any]) -> str:
    header = ("optimizer", "suggested lr", "base lr", "max lr", "steps run", "demo's lr")
    rows = [
        (
            name,
            f"{r.suggested_lr:.3g}",
            *(f"{b:.3g}" for b in r.bounds),
            f"{int(np.min(r.steps))}/{len(r.learning_rates)}",
            _demo_lr(name),
        )
        for name, r in results.items()
    ]
    return _table(header, rows)


def plot_lr(results: dict[str, Any], path: str, title: str) -> None:
    matplotlib = require("matplotlib", "matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    cols = min(4, len(results))
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, results.items()):
        r.plot(ax=ax, title=name)
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
