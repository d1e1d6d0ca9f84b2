"""The argument specs (gradtx/_specs.py): each kind's eager check, seen through the
factories that declare it (a decay rate, a static int, a storage dtype, a mask)."""

from __future__ import annotations

import fractions
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: gradtx.adam(b2=1 - 1e-8), "b2"),
        (lambda: gradtx.rmsprop(decay=1 - 1e-9), "decay"),
        (lambda: gradtx.scale_by_rms(1 - 1e-9), "decay"),
    ],
)
def test_decay_rates_that_round_to_one_are_rejected(make, arg):
    # In [0, 1) as written, 1.0 once stored: 1 - b2 = 0 gave NaN or inf steps.
    with pytest.raises(ValueError, match=rf"{arg} rounds to 1.0"):
        make().init({"w": jnp.ones(2)})


@pytest.mark.parametrize("value", [1e-40, 1e-50], ids=["subnormal", "zero"])
def test_a_positive_number_float32_stores_as_zero_or_subnormal_is_refused(value):
    """XLA on CPU flushes a subnormal float32 to 0, so alpha=1e-40 was COCOB's 0, outside
    (0, inf): refused at construction and, by a review's finding, by set_hyperparams."""
    how = r"(rounds to 0 stored in float32,|is a subnormal number in float32, .* to 0:)"
    with pytest.raises(ValueError, match=rf"alpha {how} outside \(0, inf\)"):
        gradtx.cocob(alpha=value)
    state = gradtx.cocob(alpha=100.0).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=rf"set_hyperparams\(alpha={value}\): alpha {how}"):
        gradtx.set_hyperparams(state, {"alpha": value})
    gradtx.cocob(alpha=2e-38)  # a normal number


@pytest.mark.parametrize("given", [lambda b: b, jnp.asarray], ids=["number", "array"])
def test_decay_rates_are_checked_in_the_precision_the_statistics_use(x64, given):
    opt = gradtx.adam(b2=given(1 - 1e-9))  # fine in float64 ...
    opt.init({"w": jnp.ones(2, jnp.float64)})
    # ... not for float32 params, whose moments would not decay (1 - b2 is formed in
    # float64: the message said it was 0)
    why = r"b2 rounds to 1.0 in the statistics' precision, float32, so the statistics, which"
    with pytest.raises(ValueError, match=why):
        opt.init({"w": jnp.ones(2, jnp.float32)})
    # traced, the value is not known: data
    jax.jit(lambda b: gradtx.adam(b2=b).init({"w": jnp.ones(2, jnp.float32)}))(1 - 1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: gradtx.accumulate_gradients(gradtx.sgd(0.1), every_k=n),
        lambda n: gradtx.lookahead(gradtx.sgd(0.1), sync_period=n),
        lambda n: gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=n),
        lambda n: gradtx.ranger(sync_period=n),
    ],
)
def test_integer_options_beyond_int32_are_rejected_at_construction(make):
    with pytest.raises(ValueError, match=r"must be in \[\d, 2147483647\]"):
        make(2**31)


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda v: gradtx.adam(v), "learning_rate"),
        (lambda v: gradtx.sgd(0.1, weight_decay=v), "weight_decay"),
        (lambda v: gradtx.adam(eps=v), "eps"),
        (lambda v: gradtx.clip_by_global_norm(v), "max_norm"),
        (lambda v: gradtx.scale(v), "factor"),
    ],
)
def test_a_finite_number_that_overflows_where_it_is_stored_is_rejected(make, arg):
    # 1e39 passed the finiteness check and was stored as inf: steps of -inf
    with pytest.raises(ValueError, match=rf"{arg}=1e\+39\): {arg} overflows to inf"):
        make(1e39)
    state = make(3e38).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=rf"set_hyperparams\({arg}=1e\+39\): .* overflows"):
        gradtx.set_hyperparams(state, {arg: 1e39})


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda n: gradtx.average_params(gradtx.sgd(0.1), start=n), "start"),
        (lambda n: gradtx.reduce_on_plateau(patience=n), "patience"),
        (lambda n: gradtx.sophia(1e-3, update_interval=n), "update_interval"),
    ],
)
def test_an_integer_that_float32_storage_would_round_is_rejected(make, arg):
    # start=2**24 + 1 was stored as 2**24: averaging began a step early
    with pytest.raises(ValueError, match=rf"{arg}=16777217\): .* rounds it to 16777216"):
        make(2**24 + 1)
    make(2**24)
    make(2**25)  # a larger integer that float32 holds exactly


def test_a_schedules_step_count_that_float32_would_round_is_rejected():
    # a schedule given for a hyperparameter is stored as data, its fields in float32
    late = gradtx.schedules.linear(1.0, 0.0, 2**24 + 1)
    with pytest.raises(ValueError, match=r"learning_rate.transition_steps=16777217\): .* rounds"):
        gradtx.sgd(late)
    gradtx.sgd(gradtx.schedules.linear(1.0, 0.0, 2**24))


def test_set_hyperparams_refuses_what_construction_refuses():
    state = gradtx.average_params(gradtx.sgd(gradtx.schedules.linear(1.0, 0.0, 8))).init(
        {"w": jnp.ones(2)}
    )
    for key in ("start", "learning_rate.transition_steps"):
        with pytest.raises(ValueError, match=rf"\({key}=16777217\): .* rounds it to 16777216"):
            gradtx.set_hyperparams(state, {key: 2**24 + 1})
        gradtx.set_hyperparams(state, {key: 2**25})
    with pytest.raises(ValueError, match=r"start overflows to inf"):
        gradtx.set_hyperparams(state, start=10**400)


@pytest.mark.parametrize(
    ("make", "shown", "fraction"),
    [
        # a schedule refuses it itself, as built (its fields are stored in float32)
        (lambda v: gradtx.sgd(gradtx.schedules.constant(v)), "value", (1, 10)),
        (lambda v: gradtx.sgd(gradtx.schedules.piecewise_constant(0.1, {0: v})),
         "boundaries_and_scales", (1, 2)),
        (lambda v: gradtx.muon(ns_coefficients=(3.4445, -4.775, v)), r"ns_coefficients\[2\]",
         (20315, 10000)),
        (lambda v: gradtx.adafactor(eps=(v, 1e-3)), r"eps\[0\]", (1, 10**30)),
        (lambda v: gradtx.dog(init_step=("distance", v)), r"init_step\[1\]", (1, 10)),
        (lambda v: gradtx.scale_by_multipliers({"w": v}), r"multipliers\[w\]", (1, 10)),
    ],
)  # fmt: skip
def test_numbers_inside_schedules_and_tuples_must_fit_where_they_are_stored(make, shown, fraction):
    # Each was accepted and stored as inf: params of -inf or NaN after one step.
    with pytest.raises(ValueError, match=rf"\({shown}=1e\+39\): {shown} overflows to inf"):
        make(1e39)
    # A Fraction is a number there too (it failed inside JAX at init).
    opt = make(fractions.Fraction(*fraction))
    params = {"w": jnp.ones((2, 3))}
    updates, _ = opt.update(params, opt.init(params), params)
    assert jnp.isfinite(updates["w"]).all()


def test_a_schedule_built_under_x64_is_checked_again_by_the_factory_without_it():
    with jax.enable_x64(True):
        schedule = gradtx.schedules.constant(1e39)
    with pytest.raises(
        ValueError, match=r"\(learning_rate.value=1e\+39\): learning_rate.value overflows to inf"
    ):
        gradtx.sgd(schedule)


def test_a_schedules_step_count_beyond_int32_is_refused():
    # The step counter is an int32: 2**31 failed at init with a bare OverflowError.
    with pytest.raises(ValueError, match=r"cosine_decay\(decay_steps=2147483648\): .* at most "
                                         r"2147483647, the largest step count an int32 holds"):  # fmt: skip
        gradtx.schedules.cosine_decay(0.1, 2**31)
    gradtx.schedules.cosine_decay(0.1, 2**31 - 1)  # (float32 storage then refuses it as rounded)


@pytest.mark.parametrize(
    ("make", "key", "value"),
    [
        (lambda: gradtx.prodigy(), "betas", 0.5),
        (lambda: gradtx.muon(), "ns_coefficients", 2.0),
        (lambda: gradtx.adam(0.1), "learning_rate", (0.1, 0.2)),
    ],
)
def test_set_hyperparams_takes_only_the_stored_shape(make, key, value):
    # betas=0.5 was broadcast to (0.5, 0.5): b2 silently set to b1.
    state = make().init({"w": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match=rf"set_hyperparams\({key}=...\): value of shape"):
        gradtx.set_hyperparams(state, {key: value})


def test_integers_are_stored_exactly_in_float64(x64):
    gradtx.average_params(gradtx.sgd(0.1), start=2**24 + 1)
    gradtx.sgd(gradtx.schedules.linear(1.0, 0.0, 2**24 + 1))


def test_storage_dtypes_must_be_dtypes_not_values():
    with pytest.raises(TypeError, match=r"gradtx.adam\(mu_dtype=...\): mu_dtype must be a dtype"):
        gradtx.adam(mu_dtype=jnp.ones(2))
    with pytest.raises(ValueError, match=r"dtype must be a floating or complex dtype"):
        gradtx.accumulate_gradients(gradtx.sgd(0.1), 2, dtype=jnp.int32)
    for factory in (gradtx.scale_by_rss, gradtx.scale_by_adadelta, gradtx.rectify):
        with pytest.raises(ValueError, match=r"dtype must be a floating"):
            factory(dtype=jnp.int8)
        with pytest.raises(TypeError, match=r"dtype must be a dtype"):
            factory(dtype=-1.0)
    # complex moments for complex params are fine (optax accepts them too)
    gradtx.sgd(0.1, 0.9, accumulator_dtype=jnp.complex64)


def test_a_mask_of_arrays_is_rejected_at_construction():
    with pytest.raises(TypeError, match=r"gradtx.masked\(mask=...\): mask must be a pytree of"):
        gradtx.masked(gradtx.sgd(0.1), {"w": jnp.array([True, False])})
    with pytest.raises(TypeError, match=r"gradtx.adamw\(mask=...\): mask must be a pytree of"):
        gradtx.adamw(mask={"w": 1})
    # optax's adamw takes a function as mask; gradtx's takes it as mask_fn (a callable
    # pytree, an Equinox module, can be a mask), and the error says so.
    with pytest.raises(TypeError, match=r"adamw\(mask=<function>\).*as mask_fn"):
        gradtx.adamw(mask=lambda p: {"w": True})


def test_a_function_argument_of_another_arity_is_refused_at_construction():
    # each was built, and its first init raised Python's own "takes 0 positional arguments"
    with pytest.raises(TypeError, match=r"^gradtx\.adamw\(mask_fn=<function>\): mask_fn takes "
                       r"one argument, the params$"):  # fmt: skip
        gradtx.adamw(0.1, weight_decay=0.5, mask_fn=lambda: True)
    with pytest.raises(TypeError, match=r"^gradtx\.adopt\(clip_value_fn=<function>\): "
                       r"clip_value_fn takes one argument, the step count$"):  # fmt: skip
        gradtx.adopt(0.1, clip_value_fn=lambda: 1.0)
    with pytest.raises(TypeError, match=r"^gradtx\.masked\(mask_fn=<function>\): mask_fn takes"):
        gradtx.masked(gradtx.sgd(0.1), mask_fn=lambda a, b: True)
    with pytest.raises(TypeError, match=r"^gradtx\.partition\(labels_fn=<function>\): labels_fn"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, labels_fn=lambda: "a")
    with pytest.raises(TypeError, match=r"^gradtx\.partition\(labels_fn=3\): labels_fn must be"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, labels_fn=3)

    # a functools.wraps wrapper shows the wrapped function's signature: its own decides
    def two(params, keep):
        return {"w": keep}

    wrapped = functools.wraps(two)(lambda params: two(params, True))
    gradtx.adamw(0.1, weight_decay=0.5, mask_fn=wrapped)
    gradtx.sgd(functools.wraps(two)(lambda count: 0.1))
    # one argument with defaults or *args after it is one argument
    params = {"w": jnp.ones(2)}
    opt = gradtx.adamw(0.1, weight_decay=0.5, mask_fn=lambda p, *rest, k=1: {"w": True})
    opt.update(params, opt.init(params), params)


def test_a_rejected_number_is_shown_as_given():
    with pytest.raises(ValueError, match=r"^gradtx\.reduce_on_plateau\(patience=-1\): patience"):
        gradtx.reduce_on_plateau(patience=-1)
    with pytest.raises(ValueError, match=r"^gradtx\.adam\(b1=Fraction\(3, 2\)\): b1 must"):
        gradtx.adam(b1=fractions.Fraction(3, 2))


def test_a_schedule_leaving_the_range_is_refused_at_construction():
    S = gradtx.schedules
    with pytest.raises(ValueError, match=r"sgd\(momentum=Linear\(...\)\): the schedule reaches "
                                         r"1\.1 at step 6; momentum must be in \[0, 1\]"):  # fmt: skip
        gradtx.sgd(0.1, momentum=S.linear(0.5, 1.5, 10))
    # A momentum that leaves the range at a join's boundary, past the dense steps.
    late = S.join([S.constant(0.9), S.constant(1.2)], [100_000])
    with pytest.raises(ValueError, match=r"momentum=Join\(...\)\): .* 1\.2 at step 100000;"):
        gradtx.sgd(0.1, momentum=late)
    # The same inside jit, where a factory may be called.
    with pytest.raises(ValueError, match=r"sgd\(momentum=Linear\(...\)\): the schedule"):
        jax.jit(lambda x: gradtx.sgd(0.1, momentum=S.linear(0.5, 1.5, 10)).init(x))(jnp.ones(2))
    # Within range: accepted (a cosine to 0, a one-cycle momentum, a warm-up), and a
    # decay that underflows to 0 far out is not taken for a max_norm of 0.
    gradtx.sgd(S.cosine_decay(1.0, 100), momentum=S.one_cycle_momentum(1000))
    gradtx.adam(S.warmup_cosine_decay(0.0, 1e-3, 10, 1000))
    gradtx.clip_by_global_norm(S.exponential_decay(10.0, 1000, 0.9))
    # An open high end is excluded: a b1 reaching 1 would make 1 - b1^t zero (inf steps).
    with pytest.raises(ValueError, match=r"adam\(b1=Linear\(...\)\): the schedule reaches "
                                         r"1 at step 3; b1 must be in \[0, 1\)"):  # fmt: skip
        gradtx.adam(b1=S.linear(0.9, 1.0, 3))
    gradtx.adam(b1=S.linear(0.9, 0.99, 3))


def test_set_hyperparams_takes_a_tuple_in_the_form_the_factory_takes():
    """Adafactor keeps eps=(None, eps2) as (eps2,): the pair was refused ('expected a
    number, got tuple') and only the stored form [eps2] was taken."""
    params = {"w": jnp.ones((4, 3))}
    state = gradtx.adafactor(0.01).init(params)
    want = gradtx.get_hyperparams(gradtx.adafactor(0.01, eps=(None, 2e-3)).init(params))["eps"]
    for given in ((None, 2e-3), [2e-3], jnp.asarray([2e-3])):
        got = gradtx.get_hyperparams(gradtx.set_hyperparams(state, eps=given))["eps"]
        assert got.shape == want.shape == (1,) and float(got[0]) == float(want[0])
    # checked by the factory's own spec, as construction checks it
    with pytest.raises(ValueError, match=r"set_hyperparams\(eps\[1\]=-1.0\): eps\[1\] must be in"):
        gradtx.set_hyperparams(state, eps=(None, -1.0))
    with pytest.raises(TypeError, match=r"set_hyperparams\(betas=\(0.5,\)\): betas must be a pair"):
        gradtx.set_hyperparams(gradtx.prodigy().init(params), betas=(0.5,))
    # a pair of traced values is data, taken as it is (it crashed in the form check)
    prodigy = gradtx.prodigy().init(params)
    set_pair = jax.jit(lambda s, a, b: gradtx.set_hyperparams(s, betas=(a, b)))
    got = gradtx.get_hyperparams(set_pair(prodigy, 0.8, 0.9))["betas"]
    assert got.tolist() == pytest.approx([0.8, 0.9])


@pytest.mark.parametrize(
    "value, shown",
    [(np.array([0.1]), r"float64\[1\]"), (jnp.ones((2, 3)), r"float32\[2, 3\]"),
     (jnp.array(1 + 1j), "complex64"), (np.array(True), "bool")],
)  # fmt: skip
def test_an_array_that_is_no_real_scalar_is_shown_with_its_shape(value, shown):
    # a (1,)-shaped array said "got float64", as if its dtype were the problem
    with pytest.raises(
        TypeError,
        match=rf"^gradtx\.scale_by_learning_rate\(learning_rate=\.\.\.\): learning_rate must "
        rf"be a real scalar, got {shown}$",
    ):
        gradtx.scale_by_learning_rate(value)


@pytest.mark.parametrize("flag", [np.True_, np.False_, True, False])
def test_an_optional_flag_is_stored_as_a_python_bool(flag):
    # a factory may test ``is False``, which np.False_ is not
    taken = gradtx._specs.OptionalFlag().check("gradtx.f", "flag", flag)
    assert type(taken) is bool
    assert taken is bool(flag)
    assert gradtx._specs.OptionalFlag().check("gradtx.f", "flag", None) is None


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: gradtx.adam(1e-3, mu_dtype=np.longdouble), r"adam\(mu_dtype=float128\)"),
        (lambda: gradtx.adam(1e-3, nu_dtype="complex256"), r"adam\(nu_dtype=complex256\)"),
        (
            lambda: gradtx.accumulate_gradients(gradtx.sgd(0.1), 2, dtype=np.longdouble),
            r"accumulate_gradients\(dtype=float128\)",
        ),
    ],
)
def test_a_storage_dtype_jax_cannot_hold_is_refused_at_construction(make, shown):
    # init failed inside JAX ("JAX only supports number, bool, and string dtypes")
    with pytest.raises(
        ValueError, match=rf"^gradtx\.{shown}: \w+ must be a dtype JAX holds \(at most float64"
    ):
        make()


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (np.str_("0.1"), "str"),
        (np.bytes_(b"0.1"), "bytes"),
        (np.datetime64("2020"), r"datetime64\[Y\]"),
        (np.timedelta64(1), "timedelta64"),
        (np.array(0.1, dtype=object), "object"),
    ],
)
def test_a_numpy_value_that_is_no_number_gets_gradtxs_message(value, kind):
    # JAX's own message ("data type '.1' not understood") named neither call nor argument
    with pytest.raises(
        TypeError,
        match=rf"^gradtx\.adam\(learning_rate=.*\): learning_rate must be a real "
        rf"number, got {kind}$",
    ):
        gradtx.adam(value)
    state = gradtx.adam(1e-3).init({"w": jnp.ones(2)})
    with pytest.raises(
        TypeError, match=r"^gradtx\.set_hyperparams\(learning_rate=\.\.\.\): expected a number, got"
    ):
        gradtx.set_hyperparams(state, learning_rate=value)


def test_set_hyperparams_names_a_complex_number_and_takes_a_whole_fraction_for_a_count():
    """A Python complex was shown as complex64 (and NumPy's warned that the imaginary part
    was dropped on the way); a whole Fraction for an int slot was "not a number"."""
    state = gradtx.adam(1e-3).init({"w": jnp.ones(2)})
    for value, kind in (
        (1e-3 + 0j, "complex"),
        (np.complex64(1e-3), "complex64"),
        (np.array(0.9 + 0j), "an array of complex128"),
        (jnp.asarray(1e-3 + 0j, jnp.complex64), "an array of complex64"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ComplexWarning on the way
            with pytest.raises(TypeError, match=rf"expected a real number, got {kind}$"):
                gradtx.set_hyperparams(state, learning_rate=value)
    state = gradtx.swats().init({"w": jnp.ones(2)})
    state = gradtx.set_hyperparams(state, switch_step=fractions.Fraction(10, 2))
    assert int(gradtx.get_hyperparams(state)["switch_step"]) == 5
    with pytest.raises(TypeError, match=r"switch_step=Fraction\(11, 2\)\): switch_step must be"):
        gradtx.set_hyperparams(state, switch_step=fractions.Fraction(11, 2))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: gradtx.prodigy(betas=(0.9, 1.0)),
            ValueError,
            r"prodigy\(betas\[1\]=1\.0\): betas\[1\] must be in \[0, 1\)$",
        ),
        (
            lambda: gradtx.dadapt_adamw(betas=(True, 0.9)),
            TypeError,
            r"dadapt_adamw\(betas\[0\]=True\): betas\[0\] must be a real number, got bool$",
        ),
        (
            lambda: gradtx.prodigy(betas=(0.99999999, 0.9)),
            ValueError,
            r"prodigy\(betas\[0\]=0\.99999999\): betas\[0\] rounds to 1\.0 stored in float32",
        ),
        (
            lambda: gradtx.muon(0.02, ns_coeffs=(3.0, float("nan"), 2.0)),
            ValueError,
            r"muon\(ns_coeffs\[1\]=nan\): ns_coeffs\[1\] must not be NaN$",
        ),
        (
            lambda: gradtx.muon(0.02, ns_coeffs=((3.0, 1.0, 2.0), (3.0, 1.0, "2"))),
            TypeError,
            r"muon\(ns_coeffs\[1\]\[2\]='2'\): ns_coeffs\[1\]\[2\] must be a real number",
        ),
        (
            lambda: gradtx.dog(init_step=("distance", -1.0)),
            ValueError,
            r"dog\(init_step\[1\]=-1\.0\): init_step\[1\] must be in \[0, inf\)$",
        ),
    ],
)
def test_a_bad_element_of_a_pair_or_triple_is_named_by_its_index(make, error, message):
    # as adafactor's eps[1]: "betas=1.0" read as if the whole pair were 1.0
    with pytest.raises(error, match=r"^gradtx\." + message):
        make()
