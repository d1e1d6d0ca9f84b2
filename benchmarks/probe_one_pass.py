"""Probe: how close can an XLA step on CPU come to torch's one-pass fused Adam?

One big float32 leaf, everything in one process, interleaved round by round::

    python benchmarks/probe_one_pass.py [--size N] [--rounds R]

It prints, as medians over the rounds:

1. memory speed: XLA's one kernel ``a + 0.5 * b`` against torch's
   ``a.add_(b, alpha=0.5)`` (same bytes; shows whether the two read and write
   memory equally fast);
2. Adam: ``optax.adam`` (one kernel each for m, v and p: 10 array passes),
   a plain-JAX Adam with m and v packed in one ``(2, n)`` array updated
   elementwise (2 kernels: 9 passes, the fewest an XLA step with optax's
   protocol can make without multi-output fusion), and
   ``torch.optim.Adam(fused=True)`` (one kernel: 7 passes);
3. whether this jaxlib accepts the CPU compile option for multi-output fusion.

Results and their reading are in NOTES.md section 13.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


def packed_adam_step(p, mv, count, g):
    """Adam with both moments in one (2, n) array, updated in place."""
    count = count + 1
    first = jax.lax.broadcasted_iota(jnp.int32, mv.shape, 0) == 0
    beta = jnp.where(first, B1, B2)
    mv = beta * mv + (1 - beta) * jnp.where(first, g[None], g[None] * g[None])
    t = count.astype(jnp.float32)
    bc1, bc2 = 1 - B1**t, 1 - B2**t
    p = p - LR * (mv[0] / bc1) / (jnp.sqrt(mv[1] / bc2) + EPS)
    return p, mv, count


def kernels(compiled):
    return compiled.as_text().count("calls=%fused")


def time_interleaved(fns, rounds, reps=3):
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    # optax relies on implicit promotion (python floats with int32 counts).
    with jax.numpy_dtype_promotion("standard"):
        return probe(args.size, args.rounds)


def probe(n, rounds):
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    host_p = rng.standard_normal(n, dtype=np.float32)
    host_g = rng.standard_normal(n, dtype=np.float32)
    g = jnp.asarray(host_g)
    state = {}

    axpy = jax.jit(lambda a, b: a + 0.5 * b, donate_argnums=0).lower(g, g).compile()
    state["a"] = jnp.asarray(host_p)
    ta, tb = torch.from_numpy(host_p.copy()), torch.from_numpy(host_g.copy())

    def xla_axpy():
        state["a"] = axpy(state["a"], g)
        state["a"].block_until_ready()

    memory = time_interleaved(
        {"xla a+0.5b": xla_axpy, "torch add_": lambda: ta.add_(tb, alpha=0.5)},
        rounds,
    )
    print("memory speed, ms:", {k: round(v, 2) for k, v in memory.items()})

    tx = optax.adam(LR)
    p0 = jnp.asarray(host_p)

    def optax_step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    state["o"] = (p0, tx.init(p0))
    ostep = jax.jit(optax_step, donate_argnums=(0, 1)).lower(*state["o"], g).compile()
    mv0 = jnp.zeros((2, n), jnp.float32)
    pstep = jax.jit(packed_adam_step, donate_argnums=(0, 1, 2))
    pstep = pstep.lower(p0, mv0, jnp.int32(0), g).compile()
    state["p"] = (jnp.asarray(host_p), mv0, jnp.int32(0))
    tp = torch.nn.Parameter(torch.from_numpy(host_p.copy()))
    tp.grad = torch.from_numpy(host_g.copy())
    topt = torch.optim.Adam([tp], lr=LR, fused=True)
    n_kernels = {"optax": kernels(ostep), "packed": kernels(pstep)}
    print("kernels:", n_kernels)

    def run_optax():
        state["o"] = ostep(*state["o"], g)
        state["o"][0].block_until_ready()

    def run_packed():
        state["p"] = pstep(*state["p"], g)
        state["p"][0].block_until_ready()

    adam = time_interleaved(
        {"optax": run_optax, "packed": run_packed, "torch fused": topt.step},
        rounds,
    )
    ratios = {k: round(v / adam["optax"], 2) for k, v in adam.items()}
    print("adam, ms:", {k: round(v, 2) for k, v in adam.items()})
    print("adam, vs optax:", ratios)

    try:
        jax.jit(lambda a: a + 1).lower(g).compile(
            compiler_options={"xla_cpu_use_multi_output_fusion": True}
        )
        multi_output = "accepted"
    except jax.errors.JaxRuntimeError as err:
        multi_output = "refused: " + str(err)[:120]
    print("xla_cpu_use_multi_output_fusion:", multi_output)
    return {
        "memory_ms": memory,
        "adam_ms": adam,
        "kernels": n_kernels,
        # both ran the same number of steps, so their params must agree
        "params": {"optax": state["o"][0], "packed": state["p"][0]},
        "multi_output_fusion": multi_output,
    }


if __name__ == "__main__":
    main()
