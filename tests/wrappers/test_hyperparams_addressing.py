"""get/set_hyperparams by name inside groups, wrappers and nested chains."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
NO_BIAS = {"w": True, "b": False}


def _long_chain():
    return gradtx.named_chain(
        ("clip", gradtx.clip_by_global_norm(1.0)),
        ("decay", gradtx.masked(gradtx.add_l2(1e-2), NO_BIAS)),
        (
            "opt",
            gradtx.apply_if_finite(
                gradtx.track_norms(gradtx.accumulate_gradients(gradtx.adam(1e-3), 2)), 3
            ),
        ),
    )


def test_wrappers_do_not_rename_hyperparameters():
    state = _long_chain().init(PARAMS)
    hp = gradtx.get_hyperparams(state)
    assert set(hp) == {"max_norm", "weight_decay", "learning_rate", "b1", "b2", "eps", "eps_root"}
    for key in ("opt/learning_rate", "learning_rate"):
        s = gradtx.set_hyperparams(state, {key: 0.5})
        assert float(gradtx.get_hyperparams(s)["learning_rate"]) == 0.5
    s = gradtx.set_hyperparams(state, {"decay/weight_decay": 0.25, "clip/max_norm": 3.0})
    hp = gradtx.get_hyperparams(s)
    assert float(hp["weight_decay"]) == 0.25 and float(hp["max_norm"]) == 3.0
    # the change reaches the computation: l2 on w only, at the new weight decay
    masked_l2 = gradtx.masked(gradtx.add_l2(1e-2), NO_BIAS)
    st = gradtx.set_hyperparams(masked_l2.init(PARAMS), {"weight_decay": 0.25})
    u, _ = masked_l2.update(PARAMS, st, PARAMS)
    np.testing.assert_allclose(u["w"], 1.25)
    np.testing.assert_array_equal(u["b"], 1.0)


def test_groups_are_addressed_by_label():
    opt = gradtx.named_chain(
        ("clip", gradtx.clip(1.0)),
        (
            "groups",
            gradtx.partition(
                {
                    "a": gradtx.adam(1e-3),
                    "b": gradtx.named_chain(("l2", gradtx.add_l2(0.1)), ("sgd", gradtx.sgd(0.5))),
                },
                {"w": "a", "b": "b"},
            ),
        ),
    )
    state = opt.init(PARAMS)
    hp = gradtx.get_hyperparams(state)
    assert {"a/learning_rate", "sgd/learning_rate", "weight_decay", "max_delta"} <= set(hp)
    for key in ("groups/a/learning_rate", "a/learning_rate"):
        s = gradtx.set_hyperparams(state, {key: 0.125})
        assert float(gradtx.get_hyperparams(s)["a/learning_rate"]) == 0.125
        assert float(gradtx.get_hyperparams(s)["sgd/learning_rate"]) == 0.5
    for key in ("b/sgd/learning_rate", "groups/b/sgd/learning_rate", "sgd/learning_rate"):
        s = gradtx.set_hyperparams(state, {key: 0.25})
        assert float(gradtx.get_hyperparams(s)["sgd/learning_rate"]) == 0.25
    s = gradtx.set_hyperparams(state, {"b/l2/weight_decay": 0.0})
    assert float(gradtx.get_hyperparams(s)["weight_decay"]) == 0.0
    with pytest.raises(KeyError, match=r"ambiguous; use one of \['groups/a/learning_rate', "):
        gradtx.set_hyperparams(state, learning_rate=0.1)
    with pytest.raises(KeyError, match="unknown hyperparameter 'c/learning_rate'"):
        gradtx.set_hyperparams(state, {"c/learning_rate": 0.1})
    with pytest.raises(KeyError, match="unknown hyperparameter 'momentum'"):
        gradtx.set_hyperparams(state, momentum=0.9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.named_chain(("inner_state", gradtx.adam(0.1))),
        lambda: gradtx.partition(
            {"inner_state": gradtx.adam(0.1), "b": gradtx.sgd(0.1)}, {"w": "inner_state"}
        ),
    ],
    ids=["named_chain", "partition"],
)
def test_inner_state_is_not_a_name_or_label(make):
    """Names skip path parts called inner_state (where wrappers keep their inner), so a
    group of that label listed its learning rate as plain 'learning_rate', and
    set_hyperparams('inner_state/learning_rate') was an unknown name."""
    with pytest.raises(ValueError, match=r"'inner_state' is reserved"):
        make()


def test_masked_state_in_named_chain():
    opt = gradtx.named_chain(
        ("decay", gradtx.masked(gradtx.add_l2(0.1), NO_BIAS)),
        ("sgd", gradtx.sgd(0.1)),
    )
    state = gradtx.set_hyperparams(opt.init(PARAMS), {"decay/weight_decay": 0.5})
    assert float(gradtx.get_hyperparams(state)["weight_decay"]) == 0.5


def test_same_names_at_one_place_keep_their_inner_state_segment():
    """A wrapper whose own and inner hyperparameters share a name stays addressable."""
    inner = gradtx.scale(2.0)

    def build(factor):
        # state: HyperparamsState(factor) > TrackNormsState > HyperparamsState(factor)
        monitored, outer_scale = gradtx.track_norms(inner), gradtx.scale(factor)

        def update(u, s, p=None, **extra):
            u, s = monitored.update(u, s, p)
            return outer_scale.update(u, gradtx.EmptyState(), p)[0], s

        return gradtx.GradientMap(monitored.init, update)

    outer = gradtx.hyperparameterized(build, {"factor": 3.0})
    state = outer.init(PARAMS)
    hp = gradtx.get_hyperparams(state)
    assert len(hp) == 2 and sorted(float(v) for v in hp.values()) == [2.0, 3.0]
    inner_key = next(k for k, v in hp.items() if float(v) == 2.0)
    assert "inner_state" in inner_key
    s = gradtx.set_hyperparams(state, {inner_key: 5.0})
    u, _ = outer.update(PARAMS, s, PARAMS)
    np.testing.assert_allclose(u["w"], 15.0)


def test_gradtx_schedules_in_groups_are_addressed_by_label_and_field():
    from gradtx import schedules

    opt = gradtx.partition(
        {
            "a": gradtx.apply_if_finite(gradtx.adam(schedules.cosine_decay(0.1, 100)), 3),
            "b": gradtx.sgd(schedules.cosine_decay(0.2, 100)),
        },
        {"w": "a", "b": "b"},
    )
    state = opt.init(PARAMS)
    hp = gradtx.get_hyperparams(state)
    assert float(hp["a/learning_rate"]) == pytest.approx(0.1)
    assert float(hp["b/learning_rate.init_value"]) == pytest.approx(0.2)
    state = gradtx.set_hyperparams(state, {"a/learning_rate.init_value": 0.5})
    hp = gradtx.get_hyperparams(state)
    assert float(hp["a/learning_rate"]) == pytest.approx(0.5)
    assert float(hp["b/learning_rate"]) == pytest.approx(0.2)
    with pytest.raises(KeyError, match="ambiguous"):
        gradtx.set_hyperparams(state, {"learning_rate.init_value": 0.5})


@pytest.mark.parametrize(
    "make, first, second",
    [
        (
            lambda: gradtx.named_chain(
                ("a/b", gradtx.sgd(0.1)), ("a", gradtx.named_chain(("b", gradtx.sgd(0.2))))
            ),
            r"\['a/b'\]",
            r"\['a'\]\['b'\]",
        ),
        (
            lambda: gradtx.partition(
                {"a/b": gradtx.sgd(0.1), "a": gradtx.named_chain(("b", gradtx.sgd(0.2)))},
                {"w": "a/b", "b": "a"},
            ),
            r"\['a'\]\['b'\]",
            r"\['a/b'\]",
        ),
    ],
    ids=["named_chain", "partition"],
)
def test_names_that_print_alike_are_an_error_naming_both_locations(make, first, second):
    """A '/' inside a name can print two locations alike: get_hyperparams kept one of the
    two learning rates (0.2) and set_hyperparams called the name ambiguous, listing it twice."""
    state = make().init(PARAMS)
    both = (
        rf"the hyperparameters at state paths {first} and {second} are both named "
        r"'a/b/learning_rate' \(a '/' inside"
    )
    with pytest.raises(ValueError, match=rf"^gradtx\.get_hyperparams: {both}"):
        gradtx.get_hyperparams(state)
    with pytest.raises(ValueError, match=rf"^gradtx\.set_hyperparams: {both}"):
        gradtx.set_hyperparams(state, {"a/b/learning_rate": 0.5})


def test_a_slash_inside_a_name_that_repeats_no_other_path_is_kept():
    opt = gradtx.named_chain(("a/b", gradtx.sgd(0.1)), ("c", gradtx.sgd(0.2)))
    state = gradtx.set_hyperparams(opt.init(PARAMS), {"a/b/learning_rate": 0.5})
    hp = gradtx.get_hyperparams(state)
    assert {k: float(v) for k, v in hp.items()} == {
        "b/learning_rate": 0.5,
        "c/learning_rate": float(np.float32(0.2)),
    }


@pytest.mark.parametrize("call", ["get_hyperparams", "set_hyperparams"])
@pytest.mark.parametrize("make", [lambda: gradtx.adam(1e-3), lambda: ("lr", gradtx.sgd(0.1))])
def test_an_optimizer_in_place_of_its_state_is_refused(call, make):
    # get_hyperparams(opt) gave {} and set_hyperparams(opt, ...) "unknown
    # hyperparameter": the optimizer's functions are leaves, no state is among them
    fn = getattr(gradtx, call)
    args = {"learning_rate": 0.1} if call == "set_hyperparams" else {}
    with pytest.raises(TypeError, match=rf"gradtx\.{call}: expected an optimizer state, got a "):
        fn(make(), **args)


def test_a_state_without_hyperparameters_still_reads_as_none():
    assert gradtx.get_hyperparams(gradtx.identity().init(PARAMS)) == {}
    assert gradtx.get_hyperparams(()) == {}


@pytest.mark.parametrize(
    "wrap",
    [lambda t: t, lambda t: gradtx.apply_if_finite(t, 2), lambda t: gradtx.lazy(t)],
    ids=["bare", "apply_if_finite", "lazy"],
)
def test_clashing_names_do_not_change_when_the_optimizer_is_wrapped(wrap):
    """mechanize(adam) names mechanize's eps 'eps' and Adam's 'inner_state/eps'.  Under
    apply_if_finite both names gained the wrapper's inner_state, so 'inner_state/eps'
    became mechanize's: set_hyperparams set the other eps, without a word."""
    state = wrap(gradtx.mechanize(gradtx.adam(0.1, eps=1e-8), eps=1e-3)).init({"w": jnp.ones(2)})
    assert {k for k in gradtx.get_hyperparams(state) if k.endswith("eps")} == {
        "eps",
        "inner_state/eps",
    }
    state = gradtx.set_hyperparams(state, {"inner_state/eps": 0.5})
    got = gradtx.get_hyperparams(state)
    np.testing.assert_allclose([got["eps"], got["inner_state/eps"]], [1e-3, 0.5], rtol=1e-7)
