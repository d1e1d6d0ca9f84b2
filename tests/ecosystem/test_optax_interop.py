"""optax both ways: gradtx transforms inside ``optax.chain``, optax transforms inside ``gradtx.chain``.

Float64, random gradient sequences, equal numbers step by step.  ``optax.chain``
does not pass the gradient on as ``grads`` (docs/design.md §1): named gradtx
optimizers are self-contained so they are exact inside it, and a lone gradtx
statistic inside it estimates from its input, exactly like optax's own.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.registry import REGISTRY

STEPS = 20


def _params_and_grads():
    keys = jax.random.split(jax.random.PRNGKey(42), STEPS + 2)
    params = {"w": jax.random.normal(keys[0], (3, 4)), "b": jax.random.normal(keys[1], (4,))}
    grads = [
        jax.tree.map(lambda p, k=k: 2.0 * jax.random.normal(k, p.shape), params) for k in keys[2:]
    ]
    return params, grads


def _run(tx, standard=False):
    """Apply ``tx`` to a fixed gradient sequence; params after every step."""
    params, grads = _params_and_grads()
    with jax.numpy_dtype_promotion("standard" if standard else "strict"):
        state = tx.init(params)
        out = []
        for g in grads:
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
            out.append(params)
    return out


def _close(a, b):
    for pa, pb in zip(a, b):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14), pa, pb)


CASES = {
    "clip then gradtx.adam inside optax.chain": (
        lambda: optax.chain(optax.clip_by_global_norm(1.0), gradtx.adam(1e-2)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    ),
    "gradtx.adamw inside optax.chain": (
        lambda: optax.chain(optax.clip(0.5), gradtx.adamw(1e-2, weight_decay=1e-3)),
        lambda: optax.chain(optax.clip(0.5), optax.adamw(1e-2, weight_decay=1e-3)),
    ),
    "gradtx primitives inside optax.chain": (
        lambda: optax.chain(
            gradtx.scale_by_rms(0.9, 1e-8),
            gradtx.add_momentum(0.9),
            gradtx.scale_by_learning_rate(1e-2),
        ),
        lambda: optax.chain(
            optax.scale_by_rms(0.9, 1e-8, eps_in_sqrt=False), optax.trace(0.9), optax.scale(-1e-2)
        ),
    ),
    # gradtx.chain cannot know that an optax transform returns a gradient: marked as a
    # GradientMap, the clipped gradient is what adam's statistics see (docs/ecosystem.md).
    "optax clip, marked a GradientMap, inside gradtx.chain before adam's statistics": (
        lambda: gradtx.chain(
            gradtx.GradientMap(*optax.with_extra_args_support(optax.clip_by_global_norm(1.0))),
            gradtx.add_momentum(0.9, ema=True),
            gradtx.bias_correct(0.9),
            gradtx.scale_by_rms(0.999, 1e-8, bias_correction=True),
            gradtx.scale_by_learning_rate(1e-2),
        ),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    ),
    "optax.scale_by_adam inside gradtx.chain": (
        lambda: gradtx.chain(
            optax.scale_by_adam(),
            gradtx.decoupled_weight_decay(1e-3),
            gradtx.scale_by_learning_rate(1e-2),
        ),
        lambda: optax.adamw(1e-2, weight_decay=1e-3),
    ),
    "gradtx.sgd inside optax.MultiSteps": (
        lambda: optax.MultiSteps(gradtx.sgd(0.1, momentum=0.9), every_k_schedule=2),
        lambda: optax.MultiSteps(optax.sgd(0.1, momentum=0.9), every_k_schedule=2),
    ),
    "gradtx.adam under optax.masked": (
        lambda: optax.masked(gradtx.adam(1e-2), {"w": True, "b": False}),
        lambda: optax.masked(optax.adam(1e-2), {"w": True, "b": False}),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_equal_numbers(name, x64):
    ours, theirs = CASES[name]
    _close(_run(ours(), standard=True), _run(theirs(), standard=True))


def test_unmarked_optax_member_freezes_the_gradient_as_it_entered(x64):
    """Unmarked, an optax transform counts as a non-map: later statistics see the raw gradient."""
    clip = optax.clip_by_global_norm(0.5)
    ours = gradtx.chain(clip, gradtx.scale_by_rms(0.9, 1e-8), gradtx.scale_by_learning_rate(1e-2))
    # The reference divides the clipped gradient by the RMS of the raw one, computed apart.
    params, grads = _params_and_grads()
    rms = optax.scale_by_rms(0.9, 1e-8, eps_in_sqrt=False)
    with jax.numpy_dtype_promotion("standard"):
        clip_state, rms_state, expected = clip.init(params), rms.init(params), []
        for g in grads:
            clipped, clip_state = clip.update(g, clip_state)
            ratio, rms_state = rms.update(g, rms_state)  # RMS of the raw gradient
            step = jax.tree.map(lambda c, r, g: -1e-2 * c * r / g, clipped, ratio, g)
            params = optax.apply_updates(params, step)
            expected.append(params)
    _close(_run(ours), expected)


def test_gradtx_chain_gives_optax_members_the_plain_signature(x64):
    """An optax transform without extra-args support still works after a non-map member."""
    plain = optax.GradientTransformation(
        lambda p: (), lambda u, s, p=None: (jax.tree.map(jnp.negative, u), s)
    )
    ours = gradtx.chain(gradtx.add_momentum(0.5), plain, gradtx.scale(0.1))
    theirs = optax.chain(optax.trace(0.5), optax.scale(-0.1))
    _close(_run(ours), _run(theirs, standard=True))


def test_gradtx_hyperparams_are_found_inside_optax_chain(x64):
    params, _ = _params_and_grads()
    state = optax.chain(optax.clip(1.0), gradtx.adam(1e-2)).init(params)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 1e-2
    state = gradtx.set_hyperparams(state, learning_rate=1e-3)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 1e-3


@pytest.mark.parametrize("case", REGISTRY, ids=[c.id for c in REGISTRY])
def test_a_named_optimizer_after_an_optax_clip_is_the_same_in_either_chain(case, x64):
    """A named optimizer is an update rule of its input: after an (unmarked) optax clip
    inside gradtx.chain, every statistic sees the clipped gradient, as in optax.chain.
    (Given the frozen ``grads``, Adam's momentum saw the clipped gradient and its
    second moment the raw one.)"""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.ones(2)}  # float64
    grads = [jax.tree.map(lambda p: jnp.asarray(3 * rng.normal(size=p.shape), p.dtype), params)
             for _ in range(3)]  # fmt: skip
    runs = []
    for chain in (gradtx.chain, optax.chain):
        opt = chain(optax.clip_by_global_norm(0.5), case.make(case.lr))
        update, state, p, out = case.update(opt), opt.init(params), params, []
        with jax.numpy_dtype_promotion("standard"):  # optax's clip is not strict-clean
            for g in grads:
                u, state = update(g, state, p)
                p = gradtx.apply_updates(p, u)
                out.append(p)
        runs.append(out)
    for a, b in zip(*runs):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12), a, b)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda inner: gradtx.lookahead(inner, sync_period=2, slow_step_size=0.5),
        lambda inner: gradtx.average_params(inner, decay=0.9),
        gradtx.mechanize,
        lambda inner: gradtx.chain(inner, gradtx.scale(0.5)),
    ],
    ids=["lookahead", "average_params", "mechanize", "chain"],
)
@pytest.mark.parametrize("factory", [gradtx.adam, gradtx.sgd, gradtx.rprop])
def test_an_injected_gradtx_optimizer_inside_a_gradtx_wrapper(x64, wrap, factory):
    """optax.inject_hyperparams builds its optimizer in init and again in each update:
    inside a gradtx wrapper's update that second build took the bare body of a factory
    called inside another's build, a state layout other than init's ('ArrayImpl' object
    has no attribute 'mu', 'the state is not a tuple of 2 member states')."""
    params = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray(0.3)}
    grads = [jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1)), params) for k in range(3)]
    injected, plain = wrap(optax.inject_hyperparams(factory)(learning_rate=0.1)), wrap(factory(0.1))
    trajectories = []
    for opt in (injected, plain):
        p, state, out = params, opt.init(params), []
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
            out.append(p)
        trajectories.append(out)
    chex.assert_trees_all_close(*trajectories, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tx: gradtx.lazy(tx),
        lambda tx: gradtx.masked(tx, {"w": True, "b": False}),
        lambda tx: gradtx.apply_if_finite(tx, 3),
        lambda tx: gradtx.partition({"x": tx, "y": gradtx.sgd(0.1)}, {"w": "x", "b": "y"}),
        lambda tx: gradtx.flatten(tx),
        lambda tx: gradtx.accumulate_gradients(tx, 2),
        lambda tx: gradtx.lookahead(tx, 2),
    ],
    ids=["lazy", "masked", "apply_if_finite", "partition", "flatten", "accumulate", "lookahead"],
)
def test_a_gradtx_wrapper_takes_the_state_of_an_optax_named_chain(wrap, x64):
    """named_chain's state is an OrderedDict; the wrappers' state check took it for a
    plain dict and refused the state their own init had made.  The numbers are those of
    the same members in optax.chain."""
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 0.25, -1.0])}
    grads = {"w": jnp.array([1.0, 0.0]), "b": jnp.array([0.3, -0.2, 0.1])}
    named = wrap(
        optax.named_chain(("decay", optax.add_decayed_weights(0.1)), ("adam", gradtx.adam(0.1)))
    )
    plain = wrap(optax.chain(optax.add_decayed_weights(0.1), gradtx.adam(0.1)))
    outs = []
    for tx in (named, plain):
        state, ups = tx.init(params), []
        for _ in range(3):
            u, state = jax.jit(tx.update)(grads, state, params)
            ups.append(u)
        outs.append(ups)
    chex.assert_trees_all_close(outs[0], outs[1], rtol=1e-12)


def test_set_hyperparams_keeps_an_optax_named_chains_state_an_ordered_dict(x64):
    """A plain dict in its place is another pytree: a scan's carry and the wrappers'
    state check refused it (review R4)."""
    chain = optax.named_chain(("decay", optax.add_decayed_weights(0.1)), ("adam", gradtx.adam(0.1)))
    params = jnp.array([1.0, -2.0])
    state = gradtx.set_hyperparams(chain.init(params), b1=0.8)
    assert type(state) is type(chain.init(params))
    assert gradtx.get_hyperparams(state)["b1"] == 0.8

    def body(s, _):
        _, s = chain.update(params, s, params)
        return gradtx.set_hyperparams(s, b1=0.7), None

    jax.lax.scan(body, state, None, length=2)
    lazy = gradtx.lazy(chain)
    lazy.update(params, gradtx.set_hyperparams(lazy.init(params), b1=0.8), params)


FLAGGED = {
    # each keeps a bool in its state, which optax's reset turns into an integer
    "sgd-dampening": lambda: gradtx.sgd(0.05, momentum=0.9, dampening=0.5),
    "swats": lambda: gradtx.swats(0.01),
    "mechanize": lambda: gradtx.mechanize(gradtx.adam(0.05), s_init=0.1),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(0.05), 3),
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_optax_lookahead_resetting_a_state_with_flags(name, x64):
    # optax.lookahead(reset_state=True) resets as (1 - sync) * state + sync * init, so a
    # bool flag comes back an int; gradtx refused the state (expected bool[], got
    # int64[]).  Reference: the same lookahead by hand, the fast state a fresh init.
    period, alpha = 3, 0.4
    params, grads = _params_and_grads()
    with jax.numpy_dtype_promotion("standard"):  # optax's reset mixes bool and float
        *_, flags = _lookahead_against_by_hand(name, period, alpha, params, grads)
    assert flags  # the case does keep a flag


def _lookahead_against_by_hand(name, period, alpha, params, grads):
    tx = optax.lookahead(FLAGGED[name](), period, alpha, reset_state=True)
    both = optax.LookaheadParams.init_synced(params)
    state = tx.init(both)
    opt = FLAGGED[name]()
    fast, slow, fast_state = params, params, opt.init(params)
    for t, g in enumerate(grads):
        updates, state = jax.jit(tx.update)(g, state, both)
        both = optax.apply_updates(both, updates)
        step, fast_state = opt.update(g, fast_state, fast)
        moved = optax.apply_updates(fast, step)
        if t % period == period - 1:
            fast_state = opt.init(fast)
            slow = jax.tree.map(lambda s, f: s + alpha * (f - s), slow, moved)
            fast = slow
        else:
            fast = moved
        chex.assert_trees_all_close(both.fast, fast, rtol=1e-12, atol=1e-14)
        chex.assert_trees_all_close(both.slow, slow, rtol=1e-12, atol=1e-14)
    return fast, slow, [x for x in jax.tree.leaves(fast_state) if x.dtype == jnp.bool_]


def test_optax_sam_resets_gradtx_mechanize_as_its_own(x64):
    # optax.contrib.sam resets its inner states by default, as lookahead does above
    params, grads = _params_and_grads()
    runs = []
    for inner in (
        gradtx.mechanize(gradtx.adam(0.05), s_init=0.1),
        optax.contrib.mechanize(optax.adam(0.05), s_init=0.1),
    ):
        tx = optax.contrib.sam(inner, optax.sgd(0.05), sync_period=2)
        p, state = params, tx.init(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's reset mixes bool and float
            for g in grads:
                updates, state = jax.jit(tx.update)(g, state, p)
                p = optax.apply_updates(p, updates)
        runs.append(p)
    chex.assert_trees_all_close(runs[0], runs[1], rtol=1e-10)


def test_every_optax_keyword_gradtx_does_not_take_is_in_the_porting_paragraph():
    """docs/ecosystem.md's 'optax arguments spelled otherwise', to which the errors for
    optax's keywords point, names each keyword of an optax function that gradtx has under
    the same name and does not take (it left out reduce_on_plateau's rtol, partition's
    param_labels and a dozen more)."""
    import inspect
    import pathlib
    import re
    import warnings

    import optax.contrib

    text = (pathlib.Path(__file__).parents[2] / "docs" / "ecosystem.md").read_text()
    section = text.split("**optax arguments spelled otherwise.**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)", section))
    missing = []
    for name in gradtx.__all__:
        ours = getattr(gradtx, name)
        for module in (optax, optax.contrib):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # optax's moved names
                theirs = getattr(module, name, None)
            if not callable(theirs) or isinstance(theirs, type) or not callable(ours):
                continue
            try:
                kept = inspect.signature(ours).parameters
                given = inspect.signature(theirs).parameters
            except (TypeError, ValueError):  # a type alias gradtx re-exports (Schedule)
                continue
            for key, p in given.items():
                if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or key in kept:
                    continue
                if key not in named:
                    missing.append(f"{module.__name__}.{name}({key}=)")
    assert not missing, missing


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: gradtx.partition({"a": gradtx.sgd(0.1)}, param_labels="a"), "param_labels"),
        (
            lambda: gradtx.masked(gradtx.sgd(0.1), [True], mask_compatible_extra_args=True),
            "mask_compatible_extra_args",
        ),
        (lambda: gradtx.flatten(inner=gradtx.sgd(0.1)), "inner"),
    ],
    ids=["partition", "masked", "flatten"],
)
def test_the_wrappers_name_optaxs_keywords_as_the_factories_do(make, key):
    """They raised Python's bare "partition() got an unexpected keyword argument", with
    no gradtx name and no pointer to where gradtx has optax's keyword."""
    with pytest.raises(TypeError, match=r"^gradtx\.\w+: .*optax\.\w+ takes .*spelled otherwise"):
        make()
    with pytest.raises(TypeError, match=key):
        make()
