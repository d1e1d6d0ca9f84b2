# %% [markdown]
# # Building Adam, AdamW and RAdam from primitives
#
# gradtx's named optimizers are short chains of public primitives. Here we build three of
# them by hand and check them, step by step in float64, against optax's monolithic
# implementations.
#
# The one mechanism to know: **`gradtx.chain` threads the gradient.** Adam's numerator is a
# momentum of the gradient and its denominator an RMS of *the same gradient*. In a sequential
# chain the denominator stage would only see the momentum, so `chain` hands the gradient that
# entered it to every member after the first non-"gradient map" as the keyword `grads`, and
# statistic transforms (`scale_by_rms`, `rectify`) estimate from it.

# %% setup

# %%
import jax

jax.config.update("jax_enable_x64", True)  # float64: agreement down to rounding
import jax.numpy as jnp
import numpy as np
import optax

import gradtx

# %% [markdown]
# A fixed random problem: params and a sequence of gradients. `compare` runs two optimizers
# on it and reports the largest relative difference of the params over all steps.

# %%
STEPS = 20 if FAST else 100
keys = jax.random.split(jax.random.PRNGKey(0), STEPS + 1)
params0 = {"w": jax.random.normal(keys[0], (4, 3)), "b": jnp.ones(3)}
grad_seq = [jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), params0) for k in keys[1:]]


def trajectory(opt):
    params, state, out = params0, opt.init(params0), []
    for g in grad_seq:
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


def compare(name, ours, theirs):
    a, b = trajectory(ours), trajectory(theirs)
    err = max(
        float(jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-30)))
        for pa, pb in zip(a, b) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb))
    )
    print(f"{name:6s} max relative difference over {STEPS} steps: {err:.1e}")
    assert err < 1e-10
    return err

# %% [markdown]
# ## Adam
#
# $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$, $\hat m_t = m_t/(1-\beta_1^t)$,
# $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$, $\hat v_t = v_t/(1-\beta_2^t)$,
# $\theta_t = \theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$.
#
# Four primitives: EMA momentum, its bias correction, division by the bias-corrected RMS of
# the gradient, and the learning rate.

# %%
def my_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    return gradtx.chain(
        gradtx.add_momentum(b1, ema=True),      # m_t
        gradtx.bias_correct(b1),                # m_t / (1 - b1^t)
        gradtx.scale_by_rms(b2, eps, bias_correction=True),  # / (sqrt(v_t/(1-b2^t)) + eps), v from `grads`
        gradtx.scale_by_learning_rate(lr),      # * -lr
    )


compare("adam", my_adam(1e-2), optax.adam(1e-2))
compare("adam", my_adam(1e-2), gradtx.adam(1e-2));

# %% [markdown]
# ## AdamW
#
# Decoupled weight decay adds $\lambda\theta$ to the *adaptive step*, not to the gradient:
# $\theta_t = \theta_{t-1} - \eta\,(\hat m_t/(\sqrt{\hat v_t}+\epsilon) + \lambda\theta_{t-1})$.
# One more primitive, placed before the learning rate. (Putting `add_l2` first instead gives
# Adam with L2 regularisation, whose decay term passes through the adaptive scaling.)

# %%
def my_adamw(lr, weight_decay, b1=0.9, b2=0.999, eps=1e-8):
    return gradtx.chain(
        gradtx.add_momentum(b1, ema=True),
        gradtx.bias_correct(b1),
        gradtx.scale_by_rms(b2, eps, bias_correction=True),
        gradtx.decoupled_weight_decay(weight_decay),   # + lambda * theta
        gradtx.scale_by_learning_rate(lr),
    )


compare("adamw", my_adamw(1e-2, 0.1), optax.adamw(1e-2, weight_decay=0.1))
compare("adamw", my_adamw(1e-2, 0.1), gradtx.adamw(1e-2, weight_decay=0.1));

# %% [markdown]
# ## RAdam
#
# RAdam replaces Adam's division by the RMS with a *rectified* one: with
# $\rho_\infty = 2/(1-\beta_2) - 1$ and $\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)$,
# while $\rho_t$ is below a threshold (5) the step is plain momentum SGD; afterwards the
# adaptive step is multiplied by
# $r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}$.
# The `rectify` primitive does this. optax's RAdam adds eps to the bias-corrected root and
# compares with `>=`; PyTorch adds it to the uncorrected root and compares with `>`. gradtx
# defaults to PyTorch and reaches optax's convention with two options.

# %%
def my_radam(lr, b1=0.9, b2=0.999, eps=1e-8, **options):
    return gradtx.chain(
        gradtx.add_momentum(b1, ema=True),
        gradtx.bias_correct(b1),
        gradtx.rectify(b2, eps, 5.0, **options),
        gradtx.scale_by_learning_rate(lr),
    )


compare("radam", my_radam(1e-2, compare=">=", eps_on="v_hat"), optax.radam(1e-2))
compare("radam", my_radam(1e-2), gradtx.radam(1e-2));

# %% [markdown]
# With optax's conventions our chain equals `optax.radam`; with the defaults it equals
# `gradtx.radam`, which is tested against `torch.optim.RAdam`. The difference between the two
# conventions is small but real:

# %%
a = trajectory(my_radam(1e-2))[-1]["w"]
b = trajectory(optax.radam(1e-2))[-1]["w"]
print("PyTorch vs optax RAdam convention, max |difference| of w:", float(jnp.max(jnp.abs(a - b))))

# %% [markdown]
# ## The hyperparameters of a hand-built chain
# Each primitive owns its numbers, in the state. `get_hyperparams` reports each by its
# shortest unambiguous name; in a `gradtx.named_chain`, clashing names (three `decay`s here)
# are told apart by the member names.

# %%
opt = gradtx.named_chain(
    ("momentum", gradtx.add_momentum(0.9, ema=True)),
    ("correct", gradtx.bias_correct(0.9)),
    ("rms", gradtx.scale_by_rms(0.999, 1e-8, bias_correction=True)),
    ("lr", gradtx.scale_by_learning_rate(1e-2)),
)
state = opt.init(params0)
print({k: float(v) for k, v in gradtx.get_hyperparams(state).items()})
state = gradtx.set_hyperparams(state, {"lr/learning_rate": 3e-3})
print("after set_hyperparams:", float(gradtx.get_hyperparams(state)["learning_rate"]))
