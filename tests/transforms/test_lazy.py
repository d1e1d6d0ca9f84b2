"""lazy: the wrapped transform acts only where the gradient is non-zero."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import _tree
from tests.registry import IDS
from tests.registry import REGISTRY


def test_zero_gradient_elements_keep_their_buffers_and_take_no_step():
    tx = gradtx.lazy(gradtx.chain(gradtx.add_momentum(0.9, ema=True), gradtx.scale_by_rms(0.99)))
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    state = tx.init(params)
    g1 = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    _, state = tx.update(g1, state, params)
    before = state
    g2 = {"w": jnp.zeros((3, 2)).at[1].set(2.0), "b": jnp.array([0.0, -1.0])}
    u, state = jax.jit(tx.update)(g2, state, params)
    u = jax.tree.map(np.asarray, u)
    np.testing.assert_array_equal(u["w"][[0, 2]], 0.0)
    assert np.all(u["w"][1] != 0) and u["b"][0] == 0.0 and u["b"][1] != 0.0
    (mom, rms), (mom0, rms0) = state.inner_state, before.inner_state
    pairs = [(mom.inner_state.mu, mom0.inner_state.mu), (rms.inner_state.nu, rms0.inner_state.nu)]
    for new, old in jax.tree.map(np.asarray, pairs):
        np.testing.assert_array_equal(new["w"][[0, 2]], old["w"][[0, 2]])
        assert np.all(new["w"][1] != old["w"][1])
        assert new["b"][0] == old["b"][0] and new["b"][1] != old["b"][1]


def test_where_every_element_has_an_entry_it_is_the_inner_transform():
    inner = gradtx.adam(0.1)
    params = {"w": jnp.ones(4)}
    rng = np.random.default_rng(0)
    grads = [{"w": jnp.asarray(rng.normal(size=4), jnp.float32)} for _ in range(5)]
    a, b = gradtx.lazy(inner), inner
    sa, sb = a.init(params), b.init(params)
    for g in grads:
        ua, sa = a.update(g, sa, params)
        ub, sb = b.update(g, sb, params)
        np.testing.assert_array_equal(ua["w"], ub["w"])
    jax.tree.map(np.testing.assert_array_equal, sa.inner_state, sb)


def test_state_that_is_not_params_shaped_advances_every_step():
    """The inner optimizer's count moves on a step with no entries at all."""
    tx = gradtx.lazy(gradtx.adam(0.1))
    params = jnp.ones(3)
    state = tx.init(params)
    u, state = tx.update(jnp.zeros(3), state, params)
    np.testing.assert_array_equal(u, 0.0)
    assert int(optax.tree_utils.tree_get(state, "count")) == 1


def test_hyperparams_of_the_inner_transform_stay_addressable():
    tx = gradtx.lazy(gradtx.adam(0.1))
    state = gradtx.set_hyperparams(tx.init(jnp.ones(2)), {"learning_rate": 0.5})
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 0.5


def _sparse_run(tx, steps=5, params=None):
    params = params or {"a": jnp.ones(4), "b": jnp.ones((2, 3))}
    state, out = tx.init(params), []
    key = jax.random.PRNGKey(3)
    for _ in range(steps):
        key, k1, k2 = jax.random.split(key, 3)
        grads = jax.tree.map(
            lambda p: (
                jax.random.normal(k1, p.shape, p.dtype)
                * jax.random.bernoulli(k2, 0.5, p.shape).astype(p.dtype)
            ),
            params,
        )
        u, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, u)
        out.append(params)
    return out


def _sparse_grads(rng, params):
    """Normal gradients with about half the elements 0 (no entry), in each param's dtype."""
    return {
        k: jnp.asarray(rng.normal(size=p.shape) * (rng.random(p.shape) < 0.5), p.dtype)
        for k, p in params.items()
    }


def _params_like(state, params):
    """The trees of ``state`` keyed like ``params``: the slots lazy masks."""
    found = []
    is_slot = lambda t: isinstance(t, dict) and set(t) == set(params)  # noqa: E731
    jax.tree.map(lambda t: found.append(t) if is_slot(t) else None, state, is_leaf=is_slot)
    return found


# The registry's optimizers lazy refuses (their own tests say why), each with its reason.
REFUSED_CASES = {
    "asgd": "gradtx.polyak_average",
    "galore": "gradtx.galore",
    "lookahead": "gradtx.lookahead",
    "ranger": "gradtx.lookahead",
    "sam": "gradtx.sam",
}


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_every_optimizer_is_lazy_per_element_and_advances_the_rest(case, x64):
    # Adafactor's factored rows and columns and SM3's per-axis vectors sit in
    # params-like trees: lazy broadcast its masks over them (Adafactor's state then had
    # the params' shapes and the next update refused it; SM3 raised a structure error).
    # Two programs compiled apart may round an operation apart (SM3: an ulp), so
    # float64 and a tolerance at its rounding.
    inner = case.make(case.lr)
    tx = gradtx.lazy(inner)
    params = {"w": jnp.full((3, 2), 0.5), "b": jnp.full(2, -0.3), "k": jnp.full((2, 2, 3), 0.2)}
    if case.name in REFUSED_CASES:
        with pytest.raises(ValueError, match=rf"^gradtx.lazy: the inner optimizer holds "
                           rf"{REFUSED_CASES[case.name]}, "):  # fmt: skip
            tx.init(params)
        return
    state = tx.init(params)
    step, reference = jax.jit(case.update(tx)), jax.jit(case.update(inner))
    rng = np.random.default_rng(0)
    per_element = advancing = 0
    close = functools.partial(chex.assert_trees_all_close, rtol=1e-14, atol=0)
    for _ in range(3):
        grads = _sparse_grads(rng, params)
        want, full = reference(grads, state.inner_state, params)
        got, new = step(grads, state, params)
        for k, g in grads.items():
            close(got[k], jnp.where(g != 0, want[k], 0.0))
        slots = zip(*(_params_like(s, params) for s in (full, state.inner_state, new.inner_state)))
        for inner_new, old, ours in slots:
            for k, g in grads.items():
                for x, y, z in zip(*(jax.tree.leaves(t[k]) for t in (inner_new, old, ours))):
                    if x.shape == g.shape:  # per element: kept where g has no entry
                        close(z, jnp.where(g != 0, x, y))
                        per_element += 1
                    else:  # factored, per axis, placeholders: the inner's step
                        close(z, x)
                        advancing += 1
        state, params = new, gradtx.apply_updates(params, got)
    # the slots were found: Adam's moments are per element; the others' factored parts not
    if case.name in ("adam", "adafactor"):
        assert per_element, "no per-element buffer found"
    if case.name in ("adafactor", "sm3"):
        assert advancing, "no buffer found that is not shaped like its param"


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.adafactor(0.1),
        lambda: gradtx.adafactor(0.1, convention="optax", min_dim_size_to_factor=1),
    ],
    ids=["torch", "optax-convention"],
)
def test_factored_statistics_advance_also_where_shaped_like_their_param(make):
    # an (n, 1) param's row statistic and a (1, n) param's column statistic have the
    # param's shape: by shape alone they were kept where g = 0
    inner = make()
    tx = gradtx.lazy(inner)
    params = {"r": jnp.full((3, 1), 0.5), "c": jnp.full((1, 4), -0.3), "m": jnp.full((2, 3), 0.2)}
    state = tx.init(params)
    rng = np.random.default_rng(1)
    shaped_like = 0
    for _ in range(3):
        grads = _sparse_grads(rng, params)
        _, full = inner.update(grads, state.inner_state, params)
        _, new = tx.update(grads, state, params)
        kind = gradtx.ScaleByFactoredRmsState
        (theirs,), (ours,) = _tree.nodes(full, kind), _tree.nodes(new, kind)
        for f in ("nu_row", "nu_col"):
            for k, p in params.items():
                chex.assert_trees_all_close(getattr(ours, f)[k], getattr(theirs, f)[k], rtol=1e-6)
                shaped_like += getattr(ours, f)[k].shape == p.shape
        state = new
    assert shaped_like  # the (n, 1) / (1, n) cases were there


def test_per_element_buffers_in_a_tuple_per_param_are_lazy():
    # a transform keeping a pair of buffers per param: the whole pair advanced
    pair = lambda t: isinstance(t, tuple)  # noqa: E731

    def init(params):
        return jax.tree.map(lambda x: (jnp.zeros_like(x), jnp.zeros_like(x)), params)

    def update(g, state, params=None):
        new = jax.tree.map(
            lambda x, s: (0.5 * s[0] + x, 0.5 * s[1] + x * x), g, state, is_leaf=pair
        )
        return jax.tree.map(lambda s: s[0], new, is_leaf=pair), new

    tx = gradtx.lazy(optax.GradientTransformation(init, update))
    state = tx.init({"a": jnp.ones(2)})
    _, state = tx.update({"a": jnp.array([1.0, 1.0])}, state)
    _, state = tx.update({"a": jnp.array([1.0, 0.0])}, state)
    chex.assert_trees_all_equal(
        state.inner_state, {"a": (jnp.array([1.5, 1.0]), jnp.array([1.5, 1.0]))}
    )


def test_a_schedule_replaced_by_a_number_with_optax_tree_set_is_followed(x64):
    # optax.tree_map_params inits the inner optimizer afresh, with the schedule where the
    # state now holds a number: lazy raised a pytree structure error
    tx = gradtx.lazy(gradtx.adam(gradtx.schedules.cosine_decay(1e-2, 10)))
    params = {"a": jnp.ones(4), "b": jnp.ones((2, 3))}
    state = optax.tree_utils.tree_set(tx.init(params), learning_rate=0.5)

    class Replaced:  # the same optimizer with its state replaced before the first update
        init = staticmethod(lambda p: state)
        update = staticmethod(tx.update)

    got, want = _sparse_run(Replaced), _sparse_run(gradtx.lazy(gradtx.adam(0.5)))
    for a, b in zip(got, want):
        chex.assert_trees_all_close(a, b, rtol=1e-15, atol=0)


def test_around_masked_stages_it_equals_lazy_inside_them(x64):
    # masked and partition hide leaves from their inner state (MaskedNode): the
    # masks of the lazy rule keep them hidden.
    labels = {"a": "x", "b": "y"}
    mask = {"a": True, "b": False}
    pairs = [
        (
            gradtx.lazy(
                gradtx.partition({"x": gradtx.adam(0.1), "y": gradtx.sgd(0.1, 0.9)}, labels)
            ),
            gradtx.partition(
                {"x": gradtx.lazy(gradtx.adam(0.1)), "y": gradtx.lazy(gradtx.sgd(0.1, 0.9))}, labels
            ),
        ),
        (
            gradtx.lazy(gradtx.masked(gradtx.adam(0.1), mask)),
            gradtx.masked(gradtx.lazy(gradtx.adam(0.1)), mask),
        ),
        (
            gradtx.lazy(optax.masked(gradtx.adam(0.1), mask)),
            gradtx.masked(gradtx.lazy(gradtx.adam(0.1)), mask),
        ),
    ]
    for outside, inside in pairs:
        for a, b in zip(_sparse_run(outside), _sparse_run(inside)):
            jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14), a, b)


def test_around_a_mask_that_is_a_prefix_of_the_params(x64):
    # optax's masked and partition hide a whole subtree behind one MaskedNode where the
    # mask or labels stop above the leaves: lazy's walk stops there (f4978b4 crashed)
    params = {"enc": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, "dec": jnp.ones(4)}
    mask, labels = {"enc": False, "dec": True}, {"enc": "x", "dec": "y"}
    groups = {"x": gradtx.adam(0.1), "y": gradtx.sgd(0.1, 0.9)}
    lazy_groups = {k: gradtx.lazy(v) for k, v in groups.items()}
    pairs = [
        (
            gradtx.lazy(optax.masked(gradtx.adam(0.1), mask)),
            gradtx.masked(gradtx.lazy(gradtx.adam(0.1)), mask),
        ),
        (gradtx.lazy(optax.partition(groups, labels)), optax.partition(lazy_groups, labels)),
        (
            gradtx.lazy(gradtx.masked(gradtx.adam(0.1), mask)),
            gradtx.masked(gradtx.lazy(gradtx.adam(0.1)), mask),
        ),
        (gradtx.lazy(gradtx.partition(groups, labels)), gradtx.partition(lazy_groups, labels)),
    ]
    for outside, inside in pairs:
        got, want = _sparse_run(outside, params=params), _sparse_run(inside, params=params)
        assert not np.allclose(got[-1]["dec"], params["dec"])  # it moved
        for a, b in zip(got, want):
            chex.assert_trees_all_close(a, b, rtol=1e-14, atol=0)


def test_an_inner_init_that_fails_on_the_placeholder_is_named_at_init():
    # optax.lbfgs's line search reads a params leaf in init: an IndexError from inside
    # optax.tree_map_params at the first update, naming neither lazy nor the cause
    with pytest.raises(ValueError, match=r"^gradtx.lazy: the inner optimizer's init fails on "
                       r"the params placeholder of optax.tree_map_params \(IndexError: "):  # fmt: skip
        gradtx.lazy(optax.lbfgs()).init({"w": jnp.ones(3)})


def test_flat_buffers_are_refused_and_lazy_inside_flatten_works(x64):
    tx = gradtx.lazy(gradtx.flatten(gradtx.adam(0.1)))
    params = {"a": jnp.ones(4)}
    with pytest.raises(ValueError, match=r"gradtx.lazy: .*gradtx.flatten\(gradtx.lazy"):
        tx.update(params, tx.init(params), params)
    flat = _sparse_run(gradtx.flatten(gradtx.lazy(gradtx.adam(0.1))))
    for a, b in zip(flat, _sparse_run(gradtx.lazy(gradtx.adam(0.1)))):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14), a, b)


@pytest.mark.parametrize(
    ("name", "make"),
    [("gradtx.galore", gradtx.galore), ("optax.contrib.galore", optax.contrib.galore)],
)
def test_galore_is_refused_inside_lazy(name, make):
    """Its statistics live in the projected space, and its bases are not shaped like
    the params: lazy's element masks widened a (4, 1) basis to (4, 3) and the next
    step refused the state, without saying why (optax's: a broadcasting error)."""
    tx = gradtx.lazy(make(0.1, rank=1))
    params = {"a": jnp.ones((4, 3))}
    with pytest.raises(ValueError, match=rf"holds {re.escape(name)}, .*; it cannot be lazy$"):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize(
    "make",
    [lambda: gradtx.asgd(0.1), lambda: gradtx.chain(gradtx.sgd(0.1), gradtx.polyak_average(0))],
)
def test_a_parameter_average_is_refused_inside_lazy_with_the_chain_that_works(make):
    """polyak_average is a stage, not a wrapper: the hint chains it after the lazy part,
    and that chain keeps the average moving where the gradient is 0."""
    tx, params = gradtx.lazy(make()), jnp.ones(2)
    with pytest.raises(
        ValueError,
        match=r"holds gradtx\.polyak_average, .*; chain it after the lazy stages instead "
        r"\(gradtx\.chain\(gradtx\.lazy\(\.\.\.\), gradtx\.polyak_average\(t0\)\)\)$",
    ):
        tx.update(params, tx.init(params), params)
    tx = gradtx.chain(gradtx.lazy(gradtx.sgd(1.0)), gradtx.polyak_average(0))
    state = tx.init(params)
    for g in ([1.0, 0.0], [1.0, 0.0]):
        u, state = tx.update(jnp.array(g), state, params)
        params = params + u
    # θ' after each step: [0, 1], [-1, 1]; with t0 = 0 the average follows θ' through k = 1
    chex.assert_trees_all_close(optax.tree_utils.tree_get(state, "ax"), jnp.array([-1.0, 1.0]))


@pytest.mark.parametrize(
    "name, make",
    [
        ("gradtx.accumulate_gradients", lambda: gradtx.accumulate_gradients(gradtx.sgd(1.0), 2)),
        ("gradtx.sam", lambda: gradtx.sam(gradtx.sgd(1.0), gradtx.sgd(0.1), sync_period=2)),
        ("gradtx.lookahead", lambda: gradtx.lookahead(gradtx.sgd(1.0), sync_period=2)),
        ("gradtx.lookahead", lambda: gradtx.ranger(1e-3)),
        ("gradtx.average_params", lambda: gradtx.average_params(gradtx.sgd(1.0), decay=0.5)),
        ("optax.MultiSteps", lambda: optax.MultiSteps(optax.sgd(1.0), 2).gradient_transformation()),
        ("optax.lookahead", lambda: optax.lookahead(optax.sgd(1.0), 2, 0.5)),
    ],
)
def test_wrappers_whose_buffers_are_bookkeeping_are_refused_inside_lazy(name, make):
    # lazy kept their params-shaped buffers where g = 0: accumulate_gradients' sum of a
    # cycle leaked into the next (updates [0, 0], [-1, 0], [0, 0], [-1, -1.5] for the
    # gradients [1, 1], [1, 0], [1, 1], [1, 1]), sam stepped from stale params
    tx = gradtx.lazy(make())
    params = {"a": jnp.ones(2)}
    given = params
    if name == "optax.lookahead":  # its state and params are optax's LookaheadParams
        given = optax.LookaheadParams.init_synced(params)
    with pytest.raises(
        ValueError,
        match=rf"^gradtx\.lazy: .* {re.escape(name)}, .*\({re.escape(name)}\(gradtx\.lazy",
    ):
        tx.update(given, tx.init(given), given)
    inside = gradtx.accumulate_gradients(gradtx.lazy(gradtx.sgd(1.0)), 2)
    state, out = inside.init(params), []
    for g in ([1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]):
        u, state = inside.update({"a": jnp.array(g)}, state, params)
        out.append(u["a"])
    chex.assert_trees_all_close(
        out, [jnp.zeros(2), jnp.array([-1.0, -0.5]), jnp.zeros(2), -jnp.ones(2)]
    )
