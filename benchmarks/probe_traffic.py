"""Probe: the memory each compiled step moves, gradtx against optax, without timing.

A step on CPU is bound by memory: its time follows the bytes its kernels read
and write.  Timings of two steps that move the same bytes differ by a few
percent from run to run on this shared machine, so a step ratio of 1.03x says
little on its own.  This counts, in the compiled program of the benchmark's
own step (``bench_optimizers.py``: update + apply, params and state donated),
the kernels of the entry computation and the bytes their operands and results
occupy::

    python benchmarks/probe_traffic.py lion schedule_free_adamw --trees resnet,transformer

It is a proxy: a kernel may read an operand only in part (a slice), and XLA's
buffer reuse is not modelled.  Equal bytes with equal kernels mean the two
steps do the same memory work; the timings then differ by noise.  Results and
their reading are in NOTES.md section 32.
"""

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
from bench_optimizers import jax_optimizers
from bench_optimizers import make_tree
from bench_optimizers import resnet50_shapes
from bench_optimizers import transformer_shapes

_ITEM = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "f32": 4, "s32": 4}
_ITEM |= {"u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
# a kernel of its own on CPU; the rest (tuples, bitcasts, parameters) move nothing
_KERNELS = ("fusion", "copy", "reduce", "dot", "custom-call", "convolution", "sort", "scatter")
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%(\S+) = (.+?) (\w[\w-]*)\((.*)\)")
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")


def _bytes(shape_text):
    """Bytes of every array in an HLO shape (a tuple adds its elements)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape_text):
        total += _ITEM.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


def traffic(hlo_text):
    """``(kernels, bytes)`` of the entry computation of a compiled module's text."""
    entry = hlo_text[hlo_text.index("\nENTRY") :]
    sizes, kernels, moved = {}, 0, 0
    for line in entry.splitlines()[1:]:
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode, operands = match.groups()
        sizes[name] = _bytes(shape)
        if opcode in _KERNELS:
            kernels += 1
            names = re.findall(r"%([\w.\-]+)", operands.split("), ")[0])
            moved += sizes[name] + sum(sizes.get(n, 0) for n in names)
    return kernels, moved


def compiled_text(tx, apply, params, grads):
    state = jax.tree.map(jnp.copy, tx.init(params))

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return apply(p, u), s

    jitted = jax.jit(step, donate_argnums=(0, 1))
    return jitted.lower(params, state, grads).compile().as_text()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("optimizers", nargs="+", help="names in bench_optimizers.OPTIMIZERS")
    parser.add_argument("--trees", default="resnet,transformer")
    args = parser.parse_args(argv)
    trees = {"resnet": resnet50_shapes, "transformer": transformer_shapes}
    print("| tree | optimizer | implementation | kernels | MB moved | vs optax |")
    print("|---|---|---|---|---|---|")
    for tree in args.trees.split(","):
        shapes = trees[tree]()
        params = {k: jnp.asarray(v) for k, v in make_tree(shapes).items()}
        grads = {k: 0.01 * v for k, v in make_tree(shapes, seed=1).items()}
        for name in args.optimizers:
            txs = jax_optimizers(name, flatten=False)
            reference = None
            for impl in ("optax", "optax inject", "gradtx"):
                kernels, moved = traffic(compiled_text(*txs[impl], params, grads))
                reference = reference or moved
                print(
                    f"| {tree}-like | {name} | {impl} | {kernels} | {moved / 1e6:.1f} "
                    f"| {moved / reference:.3f}x |"
                )


if __name__ == "__main__":
    main()
