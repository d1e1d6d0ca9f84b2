"""Probe: why Lion and schedule-free AdamW cost more per byte than Adam, in both libraries.

Their step reads a moment twice, before it is overwritten: Lion's direction is
``sign(b1 m + (1 - b1) g)`` from the old ``m`` while ``m`` becomes
``b2 m + (1 - b2) g``; the parameter step reads it in another kernel than the
one that writes the new moment.  With the state donated, the new moment goes
into the old one's buffer, and XLA on CPU copies the old moment first (it has
no multi-output fusion to do both in one kernel).  Adam's parameter step reads
the *new* moments, so it needs no copy.

    python benchmarks/probe_moment_copy.py [--rounds R]

It prints, from the compiled step (donated ``update + apply_updates``, as
``bench_optimizers.py`` times it), the number of ``copy`` instructions and
how many of them are whole arrays, for optax and gradtx on the ResNet-like
tree; then the time of one 4M-float leaf's step written both ways in plain
JAX (and the first way with the moment not donated, so that XLA writes a
fresh buffer instead of copying), interleaved round by round (medians).  Results: NOTES.md section 16.
"""

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_optimizers as bench  # noqa: E402

NAMES = ("adam", "sgd_momentum", "lion", "schedule_free_adamw")


def copies(name, params, grads):
    """(copies, copies of arrays with more than one element) per implementation."""
    out = {}
    for impl in ("optax", "gradtx"):
        tx, apply = bench.jax_optimizers(name)[impl]
        state = tx.init(params)

        def step(p, s, g, tx=tx, apply=apply):
            u, s = tx.update(g, s, p)
            return apply(p, u), s

        with jax.numpy_dtype_promotion("standard"):
            text = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads)
            text = text.compile().as_text()
        entry = text[text.index("ENTRY") :]
        shapes = re.findall(r"= \w+\[([\d,]*)\]\{?[\d,]*\}? copy\(", entry)
        out[impl] = (len(shapes), sum(1 for s in shapes if s not in ("", "1")))
    return out


def lion_like(p, m, g, b1=0.9, b2=0.99, lr=1e-4, wd=1e-3):
    """The parameter step reads the old moment: XLA copies it before the in-place write."""
    d = jnp.sign((1 - b1) * g + b1 * m)
    return p - lr * (d + wd * p), (1 - b2) * g + b2 * m


def reads_new(p, m, g, b1=0.9, b2=0.99, lr=1e-4, wd=1e-3):
    """The same kernels with the parameter step reading the new moment (Adam's pattern)."""
    m_new = (1 - b2) * g + b2 * m
    return p - lr * (jnp.sign(m_new) + wd * p), m_new


def timings(rounds, n=1 << 22):
    fns = {f.__name__: jax.jit(f, donate_argnums=(0, 1)) for f in (lion_like, reads_new)}
    fns["lion_like, m not donated"] = jax.jit(lion_like, donate_argnums=(0,))
    g = jnp.asarray(np.random.default_rng(0).normal(size=n).astype(np.float32))
    state = {k: (jnp.ones(n), jnp.zeros(n)) for k in fns}
    times = {k: [] for k in fns}
    for r in range(rounds + 3):
        for k, f in fns.items():
            p, m = state[k]
            start = time.perf_counter()
            p, m = f(p, m, g)
            jax.block_until_ready((p, m))
            if r >= 3:  # warm-up rounds
                times[k].append(time.perf_counter() - start)
            state[k] = (p, m)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    params = {k: jnp.asarray(v) for k, v in bench.make_tree(bench.resnet50_shapes()).items()}
    grads = jax.tree.map(lambda x: 0.01 * x, params)
    print(f"ResNet-like tree: {len(params)} leaves; copies in the compiled step (arrays):")
    for name in NAMES:
        counts = copies(name, params, grads)
        print(f"  {name:20s}" + "".join(f"  {k} {a} ({b})" for k, (a, b) in counts.items()))
    t = timings(args.rounds)
    base = t["reads_new"]
    print("one 4M-float leaf, median step:")
    for k, v in t.items():
        print(f"  {k:26s} {1e3 * v:6.2f} ms  {v / base:.2f}x")


if __name__ == "__main__":
    main()
