# %% [markdown]
# # An optimizer zoo on 2-D surfaces
#
# Eleven optimizers on three classic difficulties, each from the same start:
#
# - **plateau**: a Gaussian well in a nearly flat plain; far from the well the gradient is tiny;
# - **saddle point**: $f = x^2/2 + (y^2-1)^2/4$ starts almost exactly on the saddle at the
#   origin's ridge; the minima are at $(0, \pm 1)$;
# - **narrow valley**: Rosenbrock's banana, $f = (1-x)^2 + 100 (y - x^2)^2$.
#
# Each optimizer gets one learning rate per surface (chosen by hand to be reasonable for that
# method, not tuned to win). The runs use gradtx's *hyperparameters as data*: for each
# optimizer, the three surfaces are a `jax.vmap` over states that differ only in their
# learning rate, so each optimizer compiles once.

# %% setup

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import gradtx

STEPS = 150 if FAST else 2000

# %%
def plateau(p):
    x, y = p[0], p[1]
    return 1.0 - jnp.exp(-((x - 1.0) ** 2 + (y - 1.0) ** 2) / 2.0)


def saddle(p):
    x, y = p[0], p[1]
    return x**2 / 2 + (y**2 - 1.0) ** 2 / 4


def valley(p):
    x, y = p[0], p[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


SURFACES = [
    # name, function, start, minimum, plot box (x0, x1, y0, y1)
    ("plateau", plateau, (-2.2, -1.6), (1.0, 1.0), (-2.6, 2.2, -2.0, 2.2)),
    ("saddle point", saddle, (1.8, 1e-3), (0.0, 1.0), (-2.0, 2.0, -1.6, 1.6)),
    ("narrow valley", valley, (-1.2, 1.0), (1.0, 1.0), (-1.6, 1.6, -0.6, 1.8)),
]

# %% [markdown]
# The zoo: each entry is an optimizer built once, and its learning rate on each surface
# (plateau, saddle, valley). AdaBound's `final_lr` (the SGD rate its bounds converge to) is set
# to SGD's rate on each surface. Lookahead wraps Adam (5 fast steps, slow step 0.5).

# %%
ZOO = {
    "SGD": (gradtx.sgd(0.1), {"learning_rate": (2.0, 0.1, 1e-3)}),
    "Momentum": (gradtx.sgd(0.1, momentum=0.9), {"learning_rate": (0.5, 0.02, 2e-4)}),
    "Nesterov": (gradtx.sgd(0.1, momentum=0.9, nesterov=True), {"learning_rate": (0.5, 0.02, 2e-4)}),
    "Adagrad": (gradtx.adagrad(0.1), {"learning_rate": (0.5, 0.5, 0.5)}),
    "RMSProp": (gradtx.rmsprop(0.01), {"learning_rate": (0.03, 0.03, 0.01)}),
    "Adam": (gradtx.adam(0.1), {"learning_rate": (0.1, 0.05, 0.05)}),
    "AMSGrad": (gradtx.amsgrad(0.1), {"learning_rate": (0.1, 0.05, 0.05)}),
    "RAdam": (gradtx.radam(0.1), {"learning_rate": (0.1, 0.05, 0.005)}),
    "AdaBound": (gradtx.adabound(0.1, final_lr=0.1),
                 {"learning_rate": (0.1, 0.05, 0.05), "final_lr": (2.0, 0.1, 1e-3)}),
    "SWATS": (gradtx.swats(0.1), {"learning_rate": (0.1, 0.05, 0.05)}),
    "Lookahead(Adam)": (gradtx.lookahead(gradtx.adam(0.1), sync_period=5, slow_step_size=0.5),
                        {"learning_rate": (0.1, 0.05, 0.05)}),
}

# %% [markdown]
# One compiled program per optimizer: a `lax.scan` of steps, vmapped over the three surfaces.
# `lax.switch` picks the surface; `set_hyperparams` under `vmap` gives each surface its own
# learning rate inside the *same* state structure.

# %%
fns = [f for _, f, *_ in SURFACES]
starts = jnp.array([s for _, _, s, *_ in SURFACES])


def run(opt, hyper):
    def one(index, p0, values):
        state = gradtx.set_hyperparams(opt.init(p0), values)

        def step(carry, _):
            p, state = carry
            loss, g = jax.value_and_grad(lambda q: jax.lax.switch(index, fns, q))(p)
            updates, state = opt.update(g, state, p)
            return (gradtx.apply_updates(p, updates), state), (p, loss)

        (p, _), (path, losses) = jax.lax.scan(step, (p0, state), None, length=STEPS)
        return jnp.concatenate([path, p[None]]), losses

    values = {k: jnp.asarray(v, jnp.float32) for k, v in hyper.items()}
    return jax.jit(jax.vmap(one))(jnp.arange(len(fns)), starts, values)


results = {}
for name, (opt, hyper) in ZOO.items():
    paths, losses = run(opt, hyper)
    results[name] = (np.asarray(paths), np.asarray(losses))

print(f"{'final f':16s}" + "".join(f"{s[0]:>15s}" for s in SURFACES))
for name, (paths, losses) in results.items():
    finals = [float(f(jnp.asarray(paths[i, -1]))) for i, f in enumerate(fns)]
    print(f"{name:16s}" + "".join(f"{v:15.2e}" for v in finals))

# %% [markdown]
# ## Trajectories

# %%
colors = plt.cm.tab20(np.linspace(0, 1, 20))[[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1]]
fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
for i, (ax, (sname, f, start, minimum, box)) in enumerate(zip(axes, SURFACES)):
    xs, ys = np.meshgrid(np.linspace(box[0], box[1], 200), np.linspace(box[2], box[3], 200))
    zs = np.asarray(jax.vmap(jax.vmap(lambda a, b: f(jnp.stack([a, b]))))(xs, ys))
    levels = np.geomspace(0.05, zs.max(), 25) if sname == "narrow valley" else 25
    ax.contour(xs, ys, zs, levels=levels, cmap="Greys_r", linewidths=0.6, alpha=0.7)
    for color, (name, (paths, _)) in zip(colors, results.items()):
        ax.plot(paths[i, :, 0], paths[i, :, 1], "-", color=color, lw=1.4, label=name)
        ax.plot(paths[i, -1, 0], paths[i, -1, 1], "o", color=color, ms=4)
    ax.plot(*start, "ks", ms=7)
    ax.plot(*minimum, "r*", ms=14)
    ax.set_xlim(box[0], box[1]); ax.set_ylim(box[2], box[3])
    ax.set_title(f"{sname} ({STEPS} steps; square: start, star: minimum)")
axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Loss against step

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4))
for i, (ax, (sname, *_)) in enumerate(zip(axes, SURFACES)):
    for color, (name, (_, losses)) in zip(colors, results.items()):
        ax.semilogy(np.maximum(losses[i], 1e-12), color=color, lw=1.4, label=name)
    ax.set_title(sname); ax.set_xlabel("step")
axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look for (it depends on the learning rates above, so read the table too):
# on the plateau, plain gradient methods crawl where the gradient is tiny, while the
# methods that divide by a gradient RMS take steps of about the learning rate whatever the
# gradient's size. At the saddle, the component that escapes starts at 1e-3: plain SGD needs
# it to grow geometrically, momentum helps, adaptive methods rescale it at once. In the
# valley, the curvature across the banana limits SGD's rate and it then crawls along the
# floor; adaptive methods and momentum follow the floor faster but can oscillate.
