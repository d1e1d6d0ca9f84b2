"""Time gradtx against optax and torch.optim, side by side, interleaved.

    python benchmarks/bench_optimizers.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench_optimizers.py --quick    # tiny trees, a smoke test (prints only)

For each tree (ResNet-50-like, transformer-like, 1,000 small leaves, one
32M-float leaf) and optimizer (Adam, AdamW, SGD with momentum, RAdam; and
Adamax, Adafactor, Muon, Lion, LAMB, schedule-free AdamW on the first two
trees; ``--new-optimizers catalogue`` for every other optimizer optax has) it times one jitted, donated ``update + apply_updates`` step of gradtx
(default path and ``gradtx.flatten``), optax, optax under
``inject_hyperparams`` (optax with runtime hyperparameters, what gradtx always
has: the comparison that matters for compile time), and ``torch.optim``
(foreach, and fused where torch has it), and reports as ratios to optax:

- step time: median over rounds that alternate between the implementations
  (so a busy machine slows them alike), after warm-up steps; each round runs
  them in its own order (a seeded shuffle), so that none always runs right
  after the same other one (NOTES.md section 32);
- trace, lower and compile time, separately (``jax.jit(f).trace(...)``,
  ``.lower()``, ``.compile()``), each the median of ``--compiles`` fresh
  compiles interleaved across the implementations (full run: 3); compile is
  wall time, and the CPU time of the compiling process is given too (steadier
  on a shared machine);
- the dispatch floor ("jax no-op step"): a jitted, donated step over the same
  params, optax state and grads that computes nothing; at 1,000 leaves passing
  the arrays in and out is a large share of every JAX step;
- optimizer-state bytes (all state arrays; torch: the tensors in ``opt.state``);
- XLA's temporary memory for the step (``compiled.memory_analysis()``), the
  peak scratch beyond the donated inputs and the outputs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gradtx

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------ trees


def resnet50_shapes(width=64, classes=1000, blocks=(3, 4, 6, 3)):
    """161 leaves: convs (HWIO), batch-norm scale and bias, the final dense layer."""
    shapes = [(7, 7, 3, width), (width,), (width,)]
    cin = width
    for stage, n in enumerate(blocks):
        w = width * 2**stage
        for b in range(n):
            shapes += [(1, 1, cin, w), (w,), (w,), (3, 3, w, w), (w,), (w,)]
            shapes += [(1, 1, w, 4 * w), (4 * w,), (4 * w,)]
            if b == 0:
                shapes += [(1, 1, cin, 4 * w), (4 * w,), (4 * w,)]
            cin = 4 * w
    return shapes + [(cin, classes), (classes,)]


def transformer_shapes(d=512, blocks=12, vocab=8192):
    shapes = [(vocab, d)]
    for _ in range(blocks):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def many_shapes(n=1000, low=200, high=2000, seed=0):
    rng = np.random.default_rng(seed)
    return [(int(s),) for s in rng.integers(low, high, size=n)]


def trees(quick: bool, many: int):
    if quick:
        return {
            "resnet50-like": resnet50_shapes(width=2, classes=10, blocks=(1,)),
            "transformer-like": transformer_shapes(d=8, blocks=1, vocab=16),
            f"{min(many, 10)} small leaves": many_shapes(min(many, 10), 20, 200),
            "one big leaf": [(4096,)],
        }
    return {
        "resnet50-like": resnet50_shapes(),
        "transformer-like": transformer_shapes(),
        f"{many} small leaves": many_shapes(many),
        "one 32M leaf": [(2**25,)],
    }


def make_tree(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {f"p{i:04d}": rng.standard_normal(s, dtype=np.float32) for i, s in enumerate(shapes)}


# ------------------------------------------------------------- optimizers


class Spec(NamedTuple):
    """One benchmarked optimizer: its optax and gradtx builders, and torch's if it has one."""

    lr: float
    optax: Callable[..., Any]  # optax's factory itself, so inject_hyperparams sees every argument
    gradtx: Callable[[float], Any]
    torch: tuple | None = None  # (class, kwargs) or None
    fused: bool = True  # torch has a fused kernel
    static: tuple[str, ...] = ()  # optax arguments inject_hyperparams must keep static
    flatten: bool = True  # False: the optimizer works per leaf and refuses gradtx.flatten
    kwargs: dict[str, Any] = {}  # further arguments, the same on both sides
    takes: tuple[str, ...] = ()  # keywords update needs: "value", "value_fn", "obj_fn"


OPTIMIZERS = {
    "adam": Spec(1e-3, optax.adam, lambda lr: gradtx.adam(lr), (torch.optim.Adam, {})),
    "adamw": Spec(
        1e-3,
        optax.adamw,
        lambda lr: gradtx.adamw(lr, weight_decay=1e-2),
        (torch.optim.AdamW, {"weight_decay": 1e-2}),
        kwargs={"weight_decay": 1e-2},
    ),
    "sgd_momentum": Spec(
        1e-2,
        optax.sgd,
        lambda lr: gradtx.sgd(lr, momentum=0.9),
        (torch.optim.SGD, {"momentum": 0.9}),
        kwargs={"momentum": 0.9},
    ),
    "radam": Spec(
        1e-3, optax.radam, lambda lr: gradtx.radam(lr), (torch.optim.RAdam, {}), fused=False
    ),
    "adamax": Spec(
        2e-3, optax.adamax, lambda lr: gradtx.adamax(lr), (torch.optim.Adamax, {}), fused=False
    ),
    "adafactor": Spec(
        1e-2,
        optax.adafactor,
        # optax's values on both sides: gradtx's defaults are torch's, which factor every
        # leaf of >= 2 axes and floor at the machine epsilon, another optimizer than
        # optax's defaults (128, eps=1e-30) under the same rule.
        lambda lr: gradtx.adafactor(lr, eps=1e-30, min_dim_size_to_factor=128, convention="optax"),
        (torch.optim.Adafactor, {}),
        fused=False,
        static=("min_dim_size_to_factor",),  # optax compares it with shapes in Python
        flatten=False,
    ),
    "muon": Spec(
        1e-3,
        optax.contrib.muon,
        # optax's values: gradtx's defaults are torch's (weight_decay=0.1, eps=1e-7)
        lambda lr: gradtx.muon(lr, weight_decay=0.0, eps=1e-8, convention="optax"),
        flatten=False,
    ),
    "lion": Spec(1e-4, optax.lion, lambda lr: gradtx.lion(lr)),
    "lamb": Spec(1e-3, optax.lamb, lambda lr: gradtx.lamb(lr), flatten=False),
    "schedule_free_adamw": Spec(
        2.5e-3, optax.contrib.schedule_free_adamw, lambda lr: gradtx.schedule_free_adamw(lr)
    ),
    "optimistic_adam_v2": Spec(
        1e-3, optax.optimistic_adam_v2, lambda lr: gradtx.optimistic_adam_v2(lr)
    ),
    "galore": Spec(
        1e-3,
        optax.contrib.galore,
        lambda lr: gradtx.galore(lr, rank=32, update_proj_gap=200),
        static=("rank", "update_proj_gap"),  # shapes and a Python modulus in optax
        flatten=False,
        kwargs={"rank": 32, "update_proj_gap": 200},
    ),
    # optax.lbfgs(): memory 10 and its zoom line search; the loss is local_loss below.
    "lbfgs": Spec(
        1.0,
        optax.lbfgs,
        lambda lr: gradtx.lbfgs(
            lr, history_size=10, line_search_fn="strong_wolfe", convention="optax"
        ),
        static=("memory_size", "scale_init_precond", "linesearch"),
        flatten=False,
        takes=("value", "value_fn"),
    ),
}


def _same(name, lr, optax_factory=None, takes=(), static=(), flatten=True, **gradtx_only):
    """A catalogue row: ``gradtx.<name>(lr, **gradtx_only)`` against optax's factory of
    the same name (``gradtx_only``: ``convention="optax"`` where torch's rule is the default)."""
    factory = optax_factory or getattr(optax, name, None) or getattr(optax.contrib, name)
    make = getattr(gradtx, name)
    return Spec(
        lr,
        factory,
        lambda lr: make(lr, **gradtx_only),
        takes=takes,
        static=static,
        flatten=flatten,
    )


def _optax_sam(learning_rate, rho=0.05):
    return optax.contrib.sam(
        optax.sgd(learning_rate), optax.chain(optax.contrib.normalize(), optax.sgd(rho))
    )


def _optax_mechanize(learning_rate):
    return optax.contrib.mechanize(optax.adam(learning_rate))


# Every other optimizer optax has, with optax's defaults on both sides (optax's rule
# where gradtx defaults to torch's), for ``--new-optimizers catalogue``; not
# lookahead, whose optax params are (fast, slow) pairs, nor DP-SGD, which takes
# per-example gradients.
OPTIMIZERS |= {
    "adabelief": _same("adabelief", 1e-3),
    "adadelta": _same("adadelta", 1.0, convention="optax"),
    "adagrad": Spec(
        1e-2,
        optax.adagrad,
        lambda lr: gradtx.adagrad(lr, initial_accumulator_value=0.1, eps=1e-7, convention="optax"),
    ),
    "rmsprop": Spec(
        1e-3,
        optax.rmsprop,
        lambda lr: gradtx.rmsprop(lr, decay=0.9, eps=1e-8, convention="optax"),
    ),
    "nadam": _same("nadam", 2e-3, convention="optax"),
    "amsgrad": _same("amsgrad", 1e-3, convention="optax"),
    "adamaxw": Spec(
        2e-3,
        optax.adamaxw,
        lambda lr: gradtx.adamaxw(lr, weight_decay=1e-4, convention="optax"),
        kwargs={"weight_decay": 1e-4},
    ),
    "adan": _same("adan", 1e-3),
    "fromage": _same("fromage", 1e-2, flatten=False),
    "lars": _same("lars", 1e-2, flatten=False),
    "novograd": _same("novograd", 1e-3, flatten=False),
    "noisy_sgd": _same("noisy_sgd", 1e-2, flatten=False),
    "optimistic_gradient_descent": _same("optimistic_gradient_descent", 1e-2),
    "optimistic_adam": _same("optimistic_adam", 1e-3),
    "polyak_sgd": _same("polyak_sgd", 1.0, takes=("value",)),
    "rprop": _same("rprop", 1e-3, convention="optax"),
    "sign_sgd": _same("sign_sgd", 1e-3),
    "signum": _same("signum", 1e-3),
    "sm3": _same("sm3", 1e-2, flatten=False),
    "yogi": _same("yogi", 1e-3),
    "schedule_free_sgd": _same("schedule_free_sgd", 1.0),
    "prodigy": _same("prodigy", 1.0),
    "dadapt_adamw": _same("dadapt_adamw", 1.0),
    "cocob": _same("cocob", 1.0),
    "dog": _same("dog", 1.0),
    "dowg": _same("dowg", 1.0),
    "momo": _same("momo", 1.0, takes=("value",)),
    "momo_adam": _same("momo_adam", 1e-2, takes=("value",)),
    "adopt": _same("adopt", 1e-3, static=("clip_value_fn",)),  # a function, not a schedule
    "ademamix": _same("ademamix", 1e-3),
    "simplified_ademamix": _same("simplified_ademamix", 1e-3),
    "acprop": _same("acprop", 1e-3),
    "madgrad": _same("madgrad", 1e-2),
    "sophia": _same("sophia", 1e-3, takes=("obj_fn",), flatten=False),
    "sam": Spec(
        1e-2,
        _optax_sam,
        lambda lr: gradtx.sam(
            gradtx.sgd(lr), gradtx.chain(gradtx.normalize(), gradtx.scale(-0.05))
        ),
    ),
    "mechanize": Spec(
        1e-3, _optax_mechanize, lambda lr: gradtx.mechanize(gradtx.adam(lr)), flatten=False
    ),
}
ISSUES_OWN = ("adam", "adamw", "sgd_momentum", "radam", "adamax", "adafactor", "muon", "lion",
              "lamb", "schedule_free_adamw", "optimistic_adam_v2", "galore", "lbfgs")  # fmt: skip
"""The rows the issues asked for by name; every other row is the catalogue's."""
CATALOGUE = tuple(name for name in OPTIMIZERS if name not in ISSUES_OWN)


def local_loss(params, grads):
    """``q -> |q - p + g|² / 2``: a loss whose gradient at the params ``p`` is the
    benchmark's ``g``, for the optimizers whose update evaluates the loss."""

    def loss(q):
        return sum(0.5 * jnp.sum((a - b + c) ** 2) for a, b, c in zip(
            jax.tree.leaves(q), jax.tree.leaves(params), jax.tree.leaves(grads)))  # fmt: skip

    return loss


def jax_optimizers(name, flatten=True):
    """name -> {implementation: (transform, apply_updates)}.

    "optax inject" is ``optax.inject_hyperparams(factory)(lr)``: optax with its
    hyperparameters as runtime data, the feature gradtx always has, so the fair
    comparison for compile time.
    """
    spec = OPTIMIZERS[name]
    out = {"optax": (spec.optax(spec.lr, **spec.kwargs), optax.apply_updates)}
    try:
        inject = optax.inject_hyperparams(spec.optax, static_args=spec.static)
        inject = inject(spec.lr, **spec.kwargs)
        out["optax inject"] = (inject, optax.apply_updates)
    except Exception as err:  # some contrib factories take arguments inject cannot wrap
        print(f"  note: optax.inject_hyperparams({name}) failed: {err}", flush=True)
    out["gradtx"] = (spec.gradtx(spec.lr), gradtx.apply_updates)
    if spec.flatten and flatten:
        out["gradtx.flatten"] = (gradtx.flatten(spec.gradtx(spec.lr)), gradtx.apply_updates)
    return out


def torch_optimizers(name):
    spec = OPTIMIZERS[name]
    if spec.torch is None:
        return {}
    cls, kw = spec.torch
    out = {"torch foreach": lambda ps: cls(ps, lr=spec.lr, foreach=True, **kw)}
    if spec.fused:
        out["torch fused"] = lambda ps: cls(ps, lr=spec.lr, fused=True, **kw)
    return out


# ---------------------------------------------------------------- runners


class JaxRunner:
    """One jitted, donated ``update + apply`` step; ``compile()`` may be called again."""

    def __init__(self, tx, apply, params, grads, keywords=None):
        self.tx, self.apply, self.keywords = tx, apply, keywords
        self.params = jax.tree.map(jnp.asarray, params)
        self.grads = jax.tree.map(jnp.asarray, grads)
        # A copy of each leaf: an init that keeps the params in its state (schedule-free's
        # z) would otherwise hand the donated step one buffer twice.
        self.state = jax.tree.map(jnp.copy, tx.init(self.params))
        self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self.state))
        self.timings = []  # (trace, lower, compile wall, compile cpu) per compile()
        self.compile()
        try:
            self.temp_bytes = self.compiled.memory_analysis().temp_size_in_bytes
        except Exception:  # not every backend reports it
            self.temp_bytes = None

    def compile(self):
        # A new function object each time, so that nothing is reused from an earlier
        # trace (jax caches traces and executables per function object).
        tx, apply, keywords = self.tx, self.apply, self.keywords

        def step(p, s, g):
            u, s = tx.update(g, s, p, **(keywords(p, g) if keywords else {}))
            return apply(p, u), s

        jitted = jax.jit(step, donate_argnums=(0, 1))
        t0 = time.perf_counter()
        traced = jitted.trace(self.params, self.state, self.grads)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        c0 = time.process_time()
        self.compiled = lowered.compile()
        t3 = time.perf_counter()
        self.timings.append((t1 - t0, t2 - t1, t3 - t2, time.process_time() - c0))

    def step(self):
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        jax.block_until_ready(self.params)

    def close(self):
        del self.params, self.state, self.grads, self.compiled


class NoopRunner(JaxRunner):
    """The dispatch floor: a jitted, donated step that returns params and state unchanged.

    It takes and returns the same arrays as the optax step (params, optax's state,
    grads), so its time is what calling any jitted step on this tree costs before
    it computes anything.
    """

    def compile(self):
        jitted = jax.jit(lambda p, s, g: (p, s), donate_argnums=(0, 1))
        lowered = jitted.trace(self.params, self.state, self.grads).lower()
        self.compiled = lowered.compile()  # not timed: it is not an optimizer


class TorchRunner:
    temp_bytes = None
    timings = ()

    def __init__(self, make, params, grads):
        self.ps = [torch.tensor(v, requires_grad=True) for v in params.values()]
        for p, g in zip(self.ps, grads.values()):
            p.grad = torch.tensor(g)
        self.opt = make(self.ps)
        self.step()
        self.state_bytes = sum(
            t.numel() * t.element_size()
            for s in self.opt.state.values()
            for t in s.values()
            if torch.is_tensor(t)
        )

    def step(self):
        self.opt.step()

    def close(self):
        del self.opt, self.ps


# ------------------------------------------------------------- the bench


def bench_one(tree_name, shapes, name, args):
    params = make_tree(shapes)
    grads = {k: (0.01 * v).astype(np.float32) for k, v in make_tree(shapes, seed=1).items()}
    runners = {}
    jax_txs = jax_optimizers(name, flatten=not args.no_flatten)
    for impl, (tx, apply) in jax_txs.items():
        runners[impl] = JaxRunner(tx, apply, params, grads, _keywords(name, impl))
    jax_runners = list(runners.values())
    for _ in range(args.compiles - 1):  # interleaved too: a busy spell slows them alike
        for r in jax_runners:
            r.compile()
    runners["jax no-op step"] = NoopRunner(jax_txs["optax"][0], None, params, grads)
    if not args.no_torch:
        for impl, make in torch_optimizers(name).items():
            runners[impl] = TorchRunner(make, params, grads)
    for r in runners.values():
        for _ in range(args.warmup):
            r.step()
    times = {k: [] for k in runners}
    names, shuffle = list(runners), np.random.default_rng(0)
    for _ in range(args.rounds):  # interleaved: each round runs every implementation
        for i in shuffle.permutation(len(names)):
            impl, r = names[i], runners[names[i]]
            for _ in range(args.steps):
                t0 = time.perf_counter()
                r.step()
                times[impl].append(time.perf_counter() - t0)
    rows = []
    for impl, r in runners.items():
        rows.append(
            dict(
                tree=tree_name,
                leaves=len(shapes),
                floats=int(sum(np.prod(s) for s in shapes)),
                optimizer=name,
                impl=impl,
                step_ms=1e3 * statistics.median(times[impl]),
                trace_s=_median(r.timings, 0),
                lower_s=_median(r.timings, 1),
                compile_s=_median(r.timings, 2),
                compile_cpu_s=_median(r.timings, 3),
                compiles=len(r.timings),
                state_bytes=r.state_bytes,
                temp_bytes=r.temp_bytes,
            )
        )
        r.close()
    return rows


def _keywords(name, impl):
    """The update's keywords for optimizers that take the loss (optax's line search
    also ``grad=``)."""
    takes = OPTIMIZERS[name].takes
    if not takes:
        return None

    def keywords(p, g):
        loss = local_loss(p, g)
        made = {"value": lambda: loss(p), "value_fn": lambda: loss, "obj_fn": lambda: loss}
        extra = {k: made[k]() for k in takes}
        if "value_fn" in takes and impl.startswith("optax"):
            extra["grad"] = g
        return extra

    return keywords


def _median(timings, i):
    """Median of column ``i`` of a runner's compile timings; None when it has none."""
    return statistics.median(t[i] for t in timings) if timings else None


def _ratio(x, ref):
    return "" if x is None or not ref else f"{x / ref:.2f}x"


def _num(x, fmt):
    return "n/a" if x is None else format(x, fmt)


def table(rows):
    head = (
        "| tree | optimizer | implementation | step ms | step vs optax | trace s | lower s "
        "| compile s | compile vs optax (wall / cpu) | compile vs optax inject (cpu) | state MB "
        "| state vs optax | XLA temp MB |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        ref = next(
            x
            for x in rows
            if x["tree"] == r["tree"] and x["optimizer"] == r["optimizer"] and x["impl"] == "optax"
        )
        inject = next(
            (
                x
                for x in rows
                if x["tree"] == r["tree"]
                and x["optimizer"] == r["optimizer"]
                and x["impl"] == "optax inject"
            ),
            None,
        )
        comp = vs_inject = ""
        if r["compile_s"] is not None:
            comp = f"{_ratio(r['compile_s'], ref['compile_s'])} / "
            comp += _ratio(r["compile_cpu_s"], ref["compile_cpu_s"])
            if inject is not None:
                vs_inject = _ratio(r["compile_cpu_s"], inject["compile_cpu_s"])
        lines.append(
            f"| {r['tree']} | {r['optimizer']} | {r['impl']} | {r['step_ms']:.2f} "
            f"| {_ratio(r['step_ms'], ref['step_ms'])} | {_num(r['trace_s'], '.2f')} "
            f"| {_num(r['lower_s'], '.2f')} | {_num(r['compile_s'], '.2f')} | {comp} | {vs_inject} "
            f"| {r['state_bytes'] / 2**20:.1f} | {_ratio(r['state_bytes'], ref['state_bytes'])} "
            f"| {_num(None if r['temp_bytes'] is None else r['temp_bytes'] / 2**20, '.1f')} |"
        )
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax backend": jax.default_backend(),
        "optax": optax.__version__,
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "gradtx": gradtx.__version__,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trees, few steps")
    parser.add_argument("--optimizers", default="adam,adamw,sgd_momentum,radam")
    parser.add_argument(
        "--new-optimizers",
        default="adamax,adafactor,muon,lion,lamb,schedule_free_adamw",
        help="further optimizers, on the ResNet-like and transformer-like trees only "
        "('catalogue': every other optimizer optax has)",
    )
    parser.add_argument("--trees", default="", help="comma-separated substrings of tree names")
    parser.add_argument("--many", type=int, default=1000, help="leaves of the many-leaf tree")
    parser.add_argument(
        "--many-optimizers", default=None, help="optimizers on the many-leaf tree (default: all)"
    )
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--compiles", type=int, default=None, help="compiles per JAX step (median; full run: 3)"
    )
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-flatten", action="store_true", help="no gradtx.flatten rows")
    parser.add_argument(
        "--output", default=None, help="Markdown file (full run default: RESULTS.md)"
    )
    parser.add_argument("--note", default="", help="conditions of the run, for RESULTS.md")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.steps = args.steps or (2 if args.quick else 4)
    args.compiles = args.compiles or (1 if args.quick else 3)
    out = args.output or (None if args.quick else str(HERE / "RESULTS.md"))

    start = time.time()
    load0 = os.getloadavg()
    rows = []
    for tree_name, shapes in trees(args.quick, args.many).items():
        if args.trees and not any(t in tree_name for t in args.trees.split(",")):
            continue
        names = [n for n in args.optimizers.split(",") if n]
        if args.new_optimizers and ("resnet" in tree_name or "transformer" in tree_name):
            for n in args.new_optimizers.split(","):
                names += list(CATALOGUE) if n == "catalogue" else [n] if n else []
        if "small leaves" in tree_name and args.many_optimizers:
            names = [n for n in names if n in args.many_optimizers.split(",")]
        for name in names:
            print(f"{tree_name} / {name} ...", flush=True)
            # optax relies on implicit promotion (python floats with int32 counts).
            with jax.numpy_dtype_promotion("standard"):
                rows += bench_one(tree_name, shapes, name, args)
    text = table(rows)
    print(text)
    info = machine()
    info["load average (1 min) at start / end"] = f"{load0[0]:.1f} / {os.getloadavg()[0]:.1f}"
    info["wall time of the run"] = f"{time.time() - start:.0f} s"
    info["date (UTC)"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    info["settings"] = (
        f"rounds={args.rounds} steps/round={args.steps} warmup={args.warmup} "
        f"compiles={args.compiles} "
        f"quick={args.quick} float32"
    )
    if out:
        md = ["# Optimizer benchmarks", ""]
        md += [
            "Produced by `python benchmarks/bench_optimizers.py`; see that file's docstring.",
            "",
        ]
        md += [f"- {k}: {v}" for k, v in info.items()]
        if args.note:
            md += ["", args.note]
        md += ["", text, ""]
        Path(out).write_text("\n".join(md))
        Path(out).with_suffix(".json").write_text(
            json.dumps({"machine": info, "rows": rows}, indent=1)
        )
        print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
