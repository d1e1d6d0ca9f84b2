"""Bad input is a clear error: ValueError for bad values, TypeError for wrong kinds.

Construction-time checks are table-driven over every factory (plus generic
checks derived from each factory's signature); update-time misuse is checked
over the whole registry.
"""

from __future__ import annotations

import fractions
import inspect
import math
import os
import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
import gradtx.schedules as S
from tests.registry import IDS
from tests.registry import OPTIMIZER_NAMES
from tests.registry import REGISTRY

# Every public factory: optimizers, primitives and wrappers from gradtx.__all__
# (found by module, so new ones are covered automatically) and the schedules.
NOT_FACTORIES = {"get_norms", "schedule_free_eval_params", "averaged_params"}  # readers of a state
PRIMITIVES = tuple(
    name
    for name in gradtx.__all__
    if inspect.isfunction(getattr(gradtx, name))
    and getattr(gradtx, name).__module__.startswith(("gradtx.transforms", "gradtx.wrappers"))
    and name not in NOT_FACTORIES
)
SCHEDULES = tuple(
    f"schedules.{name}"
    for name in sorted(dir(S))
    if name[0].islower() and inspect.isfunction(getattr(S, name))
)
FACTORIES = OPTIMIZER_NAMES + PRIMITIVES + SCHEDULES

# Arguments a factory cannot be built without (e.g. the inner optimizer of a wrapper).
REQUIRED_ARGS = {
    "lookahead": {"inner": gradtx.sgd(0.1)},
    "dpsgd": {"seed": 0},
    "add_l2": {"weight_decay": 1e-3},
    "add_momentum": {"decay": 0.9},
    "bias_correct": {"decay": 0.9},
    "decoupled_weight_decay": {"weight_decay": 1e-3},
    "scale": {"factor": 0.5},
    "scale_by_learning_rate": {"learning_rate": 0.1},
    "accumulate_gradients": {"inner": gradtx.sgd(0.1), "every_k": 2},
    "apply_if_finite": {"inner": gradtx.sgd(0.1), "max_consecutive_errors": 2},
    "masked": {"inner": gradtx.sgd(0.1), "mask": {"w": True}},
    "flatten": {"tx": gradtx.sgd(0.1)},
    "partition": {"transforms": {"a": gradtx.sgd(0.1)}, "labels": "a"},
    "switch_to_sgd": {"adaptive": gradtx.scale_by_rms(0.9)},
    "when_rectified": {"inner": gradtx.sgd(0.1)},
    "clip": {"max_delta": 1.0},
    "scale_by_multipliers": {"multipliers": {"w": 2.0}},
    "clip_by_global_norm": {"max_norm": 1.0},
    "schedules.constant": {"value": 0.1},
    "schedules.constant_warmup": {"value": 0.1, "factor": 0.5, "warmup_steps": 5},
    "schedules.cosine_decay": {"init_value": 0.1, "decay_steps": 10},
    "schedules.cyclical": {"base_value": 0.1, "max_value": 1.0, "step_size": 5},
    "schedules.exponential_decay": {"init_value": 0.1, "transition_steps": 5, "decay_rate": 0.5},
    "schedules.inverse_sqrt_decay": {"init_value": 0.1},
    "schedules.inverse_time_decay": {"init_value": 0.1, "decay_steps": 10.0},
    "schedules.join": {"schedules": [S.constant(0.1), S.constant(0.2)], "boundaries": [5]},
    "schedules.linear": {"init_value": 0.1, "end_value": 0.0, "transition_steps": 10},
    "schedules.one_cycle": {"total_steps": 10, "peak_value": 0.1},
    "schedules.one_cycle_momentum": {"total_steps": 10},
    "schedules.piecewise_constant": {"init_value": 0.1},
    "schedules.polynomial": {
        "init_value": 0.1,
        "end_value": 0.0,
        "power": 1.0,
        "transition_steps": 10,
    },
    "schedules.product": {"schedules": [S.constant(0.1), S.linear(1.0, 0.5, 10)]},
    "schedules.sgdr": {"peak_value": 0.1, "first_period": 10},
    "schedules.swa_lr": {"init_value": 0.1, "swa_value": 0.05},
    "schedules.warmup_cosine_decay": {
        "init_value": 0.0,
        "peak_value": 0.1,
        "warmup_steps": 2,
        "decay_steps": 10,
    },
}

BAD_LEARNING_RATES = [
    (-0.1, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (np.float32(-1.0), ValueError),
    (np.float64(math.nan), ValueError),
    ("0.1", TypeError),
    (True, TypeError),
    (None, TypeError),
    (1j, TypeError),
    (jnp.ones(2), TypeError),
    (np.bool_(True), TypeError),
]

# (factory, kwargs, exception, argument named in the message)
TABLE = [
    ("sgd", dict(momentum=-0.1), ValueError, "momentum"),
    ("sgd", dict(learning_rate=lambda: 0.1), TypeError, "learning_rate"),  # no count taken
    ("sgd", dict(learning_rate=np.longdouble(0.1)), TypeError, "learning_rate"),  # no JAX dtype
    ("muon", dict(beta=jnp.asarray(1j)), TypeError, "beta"),  # raw float() errors before
    ("adafactor", dict(decay_rate=jnp.asarray(1j)), TypeError, "decay_rate"),
    ("adopt", dict(clip_value_fn=None), TypeError, "clip_value_fn"),  # failed at update
    ("nadam", dict(convention="optax", momentum_decay=0.3), ValueError, "momentum_decay"),
    ("sgd", dict(momentum=1.5), ValueError, "momentum"),
    ("sgd", dict(momentum="0.9"), TypeError, "momentum"),
    ("sgd", dict(nesterov=True), ValueError, "nesterov"),
    ("sgd", dict(momentum=0.9, nesterov=1), TypeError, "nesterov"),
    ("sgd", dict(momentum=0.9, nesterov=True, dampening=0.1), ValueError, "dampening"),
    ("sgd", dict(momentum=0.9, dampening=-0.5), ValueError, "dampening"),
    ("sgd", dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    ("sgd", dict(weight_decay=math.nan), ValueError, "weight_decay"),
    ("sgdw", dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    ("sgdw", dict(momentum=-1.0), ValueError, "momentum"),
    ("sgdw", dict(nesterov=True), ValueError, "nesterov"),
    ("adam", dict(b1=1.0), ValueError, "b1"),
    ("adam", dict(b1=-0.1), ValueError, "b1"),
    ("adam", dict(b2=1.5), ValueError, "b2"),
    ("adam", dict(b2="0.999"), TypeError, "b2"),
    ("adam", dict(b2=lambda t: 0.999), TypeError, "b2"),
    ("adam", dict(eps=-1e-8), ValueError, "eps"),
    ("adam", dict(eps_root=-1.0), ValueError, "eps_root"),
    ("adam", dict(weight_decay=-1.0), ValueError, "weight_decay"),
    ("adam", dict(amsgrad="yes"), TypeError, "amsgrad"),
    ("adam", dict(max_of="u"), ValueError, "max_of"),
    ("adam", dict(max_of=1), TypeError, "max_of"),
    ("adam", dict(mu_dtype="not a dtype"), TypeError, "mu_dtype"),
    ("adam", dict(nu_dtype=jnp.int32), ValueError, "nu_dtype"),
    ("amsgrad", dict(b2=1.0), ValueError, "b2"),
    ("amsgrad", dict(max_of="w"), ValueError, "max_of"),
    ("adamw", dict(weight_decay=-1e-2), ValueError, "weight_decay"),
    ("adamw", dict(b1=math.nan), ValueError, "b1"),
    ("adamw", dict(mask={"w": True}, mask_fn=lambda p: p), ValueError, "mask_fn"),
    ("adamw", dict(mask_fn=3), TypeError, "mask_fn"),
    ("adagrad", dict(lr_decay=-1.0), ValueError, "lr_decay"),
    ("adagrad", dict(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value"),
    ("adagrad", dict(eps=-1e-10), ValueError, "eps"),
    ("adagrad", dict(weight_decay=-1.0), ValueError, "weight_decay"),
    ("rmsprop", dict(decay=1.0), ValueError, "decay"),
    ("rmsprop", dict(momentum=-0.1), ValueError, "momentum"),
    ("rmsprop", dict(nesterov=True), ValueError, "nesterov"),
    ("rmsprop", dict(centered=True, init_from_first=True), ValueError, "init_from_first"),
    ("rmsprop", dict(initial_scale=-1.0), ValueError, "initial_scale"),
    ("adadelta", dict(rho=1.0), ValueError, "rho"),
    ("adadelta", dict(rho=-0.5), ValueError, "rho"),
    ("adadelta", dict(eps=-1e-6), ValueError, "eps"),
    ("nadam", dict(b1=1.0), ValueError, "b1"),
    ("nadam", dict(momentum_decay=-1.0), ValueError, "momentum_decay"),
    ("nadam", dict(weight_decay=-1.0), ValueError, "weight_decay"),
    ("nadam", dict(mu_dtype="not a dtype"), TypeError, "mu_dtype"),
    ("nadam", dict(decoupled_weight_decay="yes"), TypeError, "decoupled_weight_decay"),
    (
        "nadam",
        dict(decoupled_weight_decay=True, mask={"w": True}, mask_fn=lambda p: p),
        ValueError,
        "mask_fn",
    ),
    ("nadam", dict(decoupled_weight_decay=True, mask_fn=3), TypeError, "mask_fn"),
    ("radam", dict(b2=1.0), ValueError, "b2"),
    ("radam", dict(threshold=math.nan), ValueError, "threshold"),
    ("radam", dict(compare="<"), ValueError, "compare"),
    ("radam", dict(untractable="adam"), ValueError, "untractable"),
    ("radam", dict(eps_on="m"), ValueError, "eps_on"),
    ("lookahead", dict(sync_period=0), ValueError, "sync_period"),
    ("lookahead", dict(sync_period=2.5), TypeError, "sync_period"),
    ("lookahead", dict(sync_period=True), TypeError, "sync_period"),
    ("lookahead", dict(slow_step_size=1.5), ValueError, "slow_step_size"),
    ("lookahead", dict(slow_step_size=-0.1), ValueError, "slow_step_size"),
    ("lookahead", dict(inner="adam"), TypeError, "inner"),
    ("ranger", dict(sync_period=0), ValueError, "sync_period"),
    ("ranger", dict(slow_step_size=2.0), ValueError, "slow_step_size"),
    ("ranger", dict(b1=1.0), ValueError, "b1"),
    ("ranger", dict(gradient_centralization=1), TypeError, "gradient_centralization"),
    ("ranger", dict(channel_axis="x"), TypeError, "channel_axis"),
    ("adabound", dict(final_lr=-0.1), ValueError, "final_lr"),
    ("adabound", dict(gamma=-1.0), ValueError, "gamma"),
    ("adabound", dict(b1=1.0), ValueError, "b1"),
    ("adabound", dict(learning_rate=0.0), ValueError, "learning_rate"),
    ("adabound", dict(base_lr=0.0), ValueError, "base_lr"),
    ("adabound", dict(amsbound="no"), TypeError, "amsbound"),
    ("amsbound", dict(b2=1.0), ValueError, "b2"),
    ("amsbound", dict(eps=-1.0), ValueError, "eps"),
    ("swats", dict(b1=1.0), ValueError, "b1"),
    ("swats", dict(eps=-1e-9), ValueError, "eps"),
    ("swats", dict(weight_decay=-1.0), ValueError, "weight_decay"),
    ("swats", dict(per_leaf="yes"), TypeError, "per_leaf"),
    ("reduce_on_plateau", dict(factor=1.0), ValueError, "factor"),
    ("reduce_on_plateau", dict(patience=-1), ValueError, "patience"),
    ("reduce_on_plateau", dict(threshold_mode="relative"), ValueError, "threshold_mode"),
    ("accumulate_gradients", dict(every_k=0), ValueError, "every_k"),
    ("apply_if_finite", dict(max_consecutive_errors=-1), ValueError, "max_consecutive_errors"),
    ("clip", dict(max_delta=-1.0), ValueError, "max_delta"),
    ("clip_by_global_norm", dict(max_norm=0.0), ValueError, "max_norm"),
    ("centralize", dict(channel_axis="a"), TypeError, "channel_axis"),
    ("schedules.cosine_decay", dict(decay_steps=0), ValueError, "decay_steps"),
    ("schedules.cosine_decay", dict(decay_steps=2.5), TypeError, "decay_steps"),
    ("schedules.linear", dict(transition_steps=0), ValueError, "transition_steps"),
    ("schedules.exponential_decay", dict(transition_steps=0), ValueError, "transition_steps"),
    ("schedules.sgdr", dict(first_period=0), ValueError, "first_period"),
    ("schedules.cyclical", dict(step_size=0), ValueError, "step_size"),
    ("schedules.one_cycle", dict(total_steps=0), ValueError, "total_steps"),
    ("schedules.one_cycle", dict(anneal="x"), ValueError, "anneal"),
    ("schedules.polynomial", dict(transition_steps=0), ValueError, "transition_steps"),
    ("schedules.warmup_cosine_decay", dict(decay_steps=0), ValueError, "decay_steps"),
    ("schedules.inverse_time_decay", dict(decay_steps=0.0), ValueError, "decay_steps"),
    ("scale", dict(factor="2"), TypeError, "factor"),
    ("scale_by_learning_rate", dict(learning_rate=-1.0), ValueError, "learning_rate"),
    ("scale_by_learning_rate", dict(flip_sign=1), TypeError, "flip_sign"),
    ("add_momentum", dict(decay=-0.5), ValueError, "decay"),
    ("add_momentum", dict(decay=0.9, ema=True, dampening=0.1), ValueError, "dampening"),
    ("add_momentum", dict(decay=0.9, dtype="floaty"), TypeError, "dtype"),
    ("bias_correct", dict(decay=1.0), ValueError, "decay"),
    ("scale_by_rms", dict(decay=1.0), ValueError, "decay"),
    ("scale_by_rms", dict(eps=-1.0), ValueError, "eps"),
    ("scale_by_rms", dict(centered="no"), TypeError, "centered"),
    ("scale_by_rms", dict(max_of="x"), ValueError, "max_of"),
    ("scale_by_rms", dict(dtype=jnp.int8), ValueError, "dtype"),
    ("add_l2", dict(weight_decay=-1.0), ValueError, "weight_decay"),
    ("decoupled_weight_decay", dict(weight_decay=math.inf), ValueError, "weight_decay"),
]


def _factory(name):
    module, _, attr = name.rpartition(".")
    return getattr(S if module == "schedules" else gradtx, attr)


def _specs(name):
    """A factory's declared specs (``gradtx.factory``), or {} for one without."""
    return getattr(_factory(name), "specs", {})


def _valid(spec):
    """A value the spec accepts, for a required argument."""
    if isinstance(spec, gradtx.Transform):
        return gradtx.sgd(0.1)
    if isinstance(spec, gradtx.Int):
        return max(spec.low or 0, 1)
    assert isinstance(spec, gradtx.Hyper), spec
    low = 0.0 if spec.low is None else spec.low
    return low + 0.5 if spec.high is None else (low + spec.high) / 2


def _required(name):
    """Values for the arguments a factory cannot be built without."""
    params = inspect.signature(_factory(name)).parameters.values()
    specs = _specs(name)
    given = REQUIRED_ARGS.get(name, {})
    auto = {
        p.name: _valid(specs[p.name])
        for p in params
        if p.default is inspect.Parameter.empty and p.name in specs and p.name not in given
    }
    return {**auto, **given}


def _build(name, **kwargs):
    return _factory(name)(**{**_required(name), **kwargs})


def _expect(name, arg, exc, fn):
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith(f"gradtx.{name}("), msg
    assert re.search(rf"\b{re.escape(arg)}\b", msg), msg


def test_every_factory_can_be_built_and_every_optimizer_declares_its_specs():
    for name in OPTIMIZER_NAMES:
        assert _specs(name), f"gradtx.{name} is not declared with @optimizer"
    for name in FACTORIES:
        required = [
            p.name
            for p in inspect.signature(_factory(name)).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
        ]
        missing = set(required) - set(_required(name))
        assert not missing, f"add {name}'s required arguments {missing} to REQUIRED_ARGS"
        _build(name)


def _spec_cases():
    """Bad values derived from each declared spec: every argument of every factory
    built with ``gradtx.factory`` (all optimizers and primitives) is covered."""
    out = []
    for name in FACTORIES:
        for arg, spec in _specs(name).items():
            bad = []
            if isinstance(spec, gradtx.Hyper):
                bad += [(math.nan, ValueError), ("0.5", TypeError), (False, TypeError)]
                bad += [(np.ones(4), TypeError), (1j, TypeError)]  # 4: not a pair or triple either
                if spec.finite:
                    bad.append((math.inf, ValueError))
                if spec.low is not None:
                    bad.append((spec.low if spec.low_open else spec.low - 0.5, ValueError))
                if spec.high is not None:
                    bad.append((spec.high if spec.high_open else spec.high + 0.5, ValueError))
                if not spec.schedule:
                    bad.append((lambda t: 0.1, TypeError))
                if not (spec.optional or spec.nullable):
                    bad.append((None, TypeError))
                if spec.integer:
                    bad.append((2.5, TypeError))
            elif isinstance(spec, gradtx.Flag):
                bad += [(1, TypeError), ("True", TypeError)]
            elif isinstance(spec, gradtx.Choice):
                bad += [("no-such-mode", ValueError), (0, TypeError)]
            elif isinstance(spec, gradtx.DType):
                bad += [(jnp.int32, ValueError), ("floaty", TypeError), (jnp.ones(2), TypeError)]
            elif isinstance(spec, gradtx.Int):
                bad += [(2.5, TypeError), (True, TypeError), (2**31, ValueError)]
                if spec.low is not None:
                    bad.append((spec.low - 1, ValueError))
            elif isinstance(spec, gradtx.Mask):
                bad += [({"w": 1}, TypeError), (jnp.ones(2), TypeError)]
            elif isinstance(spec, (gradtx.Function, gradtx.Transform)):
                bad += [(3, TypeError)]
            for value, exc in bad:
                shown = (
                    "<function>" if callable(value) and not isinstance(value, type) else repr(value)
                )
                out.append(pytest.param(name, arg, value, exc, id=f"{name}-{arg}-{shown}"[:60]))
    return out


@pytest.mark.parametrize(("name", "arg", "value", "exc"), _spec_cases())
def test_every_declared_argument_rejects_bad_values(name, arg, value, exc):
    _expect(name, arg, exc, lambda: _build(name, **{arg: value}))


@pytest.mark.parametrize(("name", "kwargs", "exc", "arg"), TABLE, ids=lambda v: str(v)[:30])
def test_bad_argument_table(name, kwargs, exc, arg):
    _expect(name, arg, exc, lambda: _build(name, **kwargs))


def _factories_with(kind):
    """(factory, parameter) for every parameter whose default is of ``kind``, in the
    factories that declare no specs (schedules, wrappers): the others are covered above."""
    out = []
    for name in FACTORIES:
        if _specs(name):
            continue
        for p in inspect.signature(_factory(name)).parameters.values():
            if type(p.default) is kind:
                out.append(pytest.param(name, p.name, id=f"{name}-{p.name}"))
    return out


@pytest.mark.parametrize(("value", "exc"), BAD_LEARNING_RATES, ids=repr)
@pytest.mark.parametrize("name", [n for n in FACTORIES if "learning_rate" in _specs(n)])
def test_bad_learning_rate(name, value, exc):
    _expect(name, "learning_rate", exc, lambda: _build(name, learning_rate=value))


@pytest.mark.parametrize(("name", "arg"), _factories_with(float))
def test_every_float_argument_rejects_nan_and_strings(name, arg):
    _expect(name, arg, ValueError, lambda: _build(name, **{arg: math.nan}))
    _expect(name, arg, TypeError, lambda: _build(name, **{arg: "0.5"}))
    _expect(name, arg, TypeError, lambda: _build(name, **{arg: False}))


@pytest.mark.parametrize(("name", "arg"), _factories_with(bool))
def test_every_flag_rejects_non_bools(name, arg):
    _expect(name, arg, TypeError, lambda: _build(name, **{arg: 1}))
    _expect(name, arg, TypeError, lambda: _build(name, **{arg: "True"}))


@pytest.mark.parametrize(("name", "arg"), _factories_with(str))
def test_every_mode_rejects_unknown_strings(name, arg):
    _expect(name, arg, ValueError, lambda: _build(name, **{arg: "no-such-mode"}))
    _expect(name, arg, TypeError, lambda: _build(name, **{arg: 0}))


def test_numbers_of_other_python_types():
    """An int beyond float's range names the call (it was a bare OverflowError); a Fraction
    is a number everywhere (fromage failed inside JAX); set_hyperparams takes an int beyond
    int32 for a float slot (it failed converting to int32)."""
    with pytest.raises(ValueError, match=r"^gradtx.adam\(learning_rate=1000.*must be finite"):
        gradtx.adam(10**400)
    params, grads = {"w": jnp.ones(2)}, {"w": jnp.asarray([1.0, -2.0])}
    a, b = gradtx.fromage(fractions.Fraction(1, 10)), gradtx.fromage(0.1)
    chex.assert_trees_all_equal(
        a.update(grads, a.init(params), params)[0], b.update(grads, b.init(params), params)[0]
    )
    state = gradtx.set_hyperparams(gradtx.adam(0.1).init(params), learning_rate=2**40)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 2.0**40


def test_known_arrays_are_range_checked_and_traced_ones_are_data():
    gradtx.sgd(jnp.asarray(0.1))
    with pytest.raises(ValueError, match=r"^gradtx.sgd\(learning_rate=-0.1 as a float32 array\): "
                       r"learning_rate must be in \[0, inf\)$"):  # fmt: skip
        gradtx.sgd(jnp.asarray(-0.1, jnp.float32))
    with pytest.raises(ValueError, match=r"^gradtx.adam\(b1=nan as a float32 array\): b1 must not"):
        gradtx.adam(b1=jnp.asarray(jnp.nan, jnp.float32))
    # a known array is taken as the number it holds, and checked as one
    with pytest.raises(ValueError, match=r"^gradtx.schedules.cosine_decay\(init_value=-1.0 as a "
                       r"float32 array\): init_value must be in \[0, inf\)$"):  # fmt: skip
        gradtx.schedules.cosine_decay(jnp.asarray(-1.0, jnp.float32), 10)
    with pytest.raises(ValueError, match=r"^gradtx.schedules.warmup_cosine_decay\(warmup_steps=10, "
                       r"decay_steps=5\): decay_steps counts the warmup"):  # fmt: skip
        gradtx.schedules.warmup_cosine_decay(0.0, 1.0, jnp.asarray(10), jnp.asarray(5))
    with pytest.raises(TypeError, match=r"^gradtx.reduce_on_plateau\(patience=5.5 as a float32 "
                       r"array\): patience must be an int$"):  # fmt: skip
        gradtx.reduce_on_plateau(patience=jnp.asarray(5.5, jnp.float32))
    with pytest.raises(ValueError, match=r"^gradtx.sgd\(learning_rate=-1 as an int32 array\)"):
        gradtx.sgd(jnp.asarray(-1, jnp.int32))
    # checks across arguments, and of each number of an array argument
    with pytest.raises(ValueError, match=r"^gradtx.rprop\(min_step_size=1.0 as a float32 array, "
                       r"max_step_size=0.5\): min_step_size must not exceed max_step_size$"):  # fmt: skip
        gradtx.rprop(0.1, min_step_size=jnp.asarray(1.0, jnp.float32), max_step_size=0.5)
    # compared as stored: a float32 array of 0.1 is the number 0.1 there
    gradtx.rprop(0.1, min_step_size=jnp.asarray(0.1, jnp.float32), max_step_size=0.1)
    with pytest.raises(ValueError, match=r"^gradtx.muon\(ns_coefficients\[0\]=nan\)"):
        gradtx.muon(0.1, ns_coefficients=jnp.asarray([jnp.nan, 1.0, 2.0]))
    # an array stays bound in its own dtype: an int32 count above 2**24 is exact there,
    # but not once a float step (t0) takes it as float32
    gradtx.average_params(gradtx.sgd(0.1), start=jnp.asarray(2**25 + 1, jnp.int32))
    with pytest.raises(ValueError, match=r"^gradtx.polyak_average\(t0=33554433\): t0 is stored "
                       r"in float32, which rounds it to 33554432"):  # fmt: skip
        gradtx.polyak_average(jnp.asarray(2**25 + 1, jnp.int32))
    # a known fraction of a step is data, and compared with the other fields
    with pytest.raises(ValueError, match=r"warmup_steps=10.5, decay_steps=10\): decay_steps"):
        gradtx.schedules.warmup_cosine_decay(0.0, 1.0, jnp.asarray(10.5), 10)
    # traced, a value is not known (jit, vmap): data, taken as given
    params = {"w": jnp.ones(2)}
    jax.jit(lambda lr: gradtx.sgd(lr).init(params))(-0.1)
    jax.vmap(lambda lr: gradtx.sgd(lr).init(params))(jnp.asarray([0.1, -0.1]))


def test_a_16_bit_decay_rate_that_rounds_to_one_is_refused_or_warned_of(monkeypatch):
    """optax.inject_hyperparams stores numbers in the params' dtype: bfloat16 holds
    b2 = 0.999 as 1.0, and every Adam step was NaN.  Known, the value is refused, with
    the hint where rounding may have moved it out of range; traced (a jitted init or
    update), a 16-bit decay rate is warned of, once per process."""
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    with pytest.raises(ValueError, match=r"^gradtx.adam\(b2=1.0 as a bfloat16 array\): b2 must be "
                       r"in \[0, 1\) \(a bfloat16 number this close to the bound may be one "
                       r"rounded across it; .*hyperparam_dtype=jnp.float32\)$"):  # fmt: skip
        optax.inject_hyperparams(gradtx.adam)(learning_rate=1e-3).init(params)
    with pytest.raises(ValueError, match=r"^gradtx.asgd\(t0=inf as a float16 array\): t0 must be "
                       r"finite \(float16 holds no finite number beyond 65504; "):  # fmt: skip
        optax.inject_hyperparams(gradtx.asgd)().init({"w": jnp.ones(3, jnp.float16)})
    with pytest.raises(ValueError, match=r"^gradtx.sgd\(learning_rate=-1.0 as a bfloat16 array\): "
                       r"learning_rate must be in \[0, inf\)$"):  # fmt: skip
        gradtx.sgd(jnp.asarray(-1.0, jnp.bfloat16))  # far from the bound: no rounding hint
    monkeypatch.setattr(gradtx._stored, "_WARNED", set())
    injected = optax.inject_hyperparams(gradtx.adam)(learning_rate=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.jit(injected.init)(params)
        jax.jit(injected.init)(params)  # the same call and arguments: not again
    assert [str(w.message).split(" is ")[0] for w in caught] == [
        "gradtx.adam(b1=...): b1",
        "gradtx.adam(b2=...): b2",
    ]
    assert not caught[0].filename.startswith(os.path.dirname(gradtx.__file__))  # the caller's
    assert re.search(r"b2 is a bfloat16 array whose value is not known here \(traced, or held by "
                     r"other processes\); bfloat16 "
                     r"holds no number between 0.996094 and 1, .*hyperparam_dtype=jnp.float32\)",
                     str(caught[1].message))  # fmt: skip
    # set traced into a state made with float32 numbers: the same warning
    state = gradtx.adam().init(params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.jit(lambda s, b: gradtx.set_hyperparams(s, b2=b))(
            state, jnp.asarray(0.99, jnp.bfloat16)
        )
        jax.jit(lambda s, lr: gradtx.set_hyperparams(s, learning_rate=lr))(
            state, jnp.asarray(0.1, jnp.bfloat16)
        )  # not a decay rate: no warning
    assert [str(w.message).split(" is ")[0] for w in caught] == [
        "gradtx.set_hyperparams(b2=...): b2"
    ]
    wide = optax.inject_hyperparams(gradtx.adam, hyperparam_dtype=jnp.float32)(learning_rate=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 rates, and a bfloat16 learning rate: no warning
        state = wide.init(params)
        updates, _ = jax.jit(wide.update)(params, state, params)
        jax.jit(lambda lr: gradtx.sgd(lr).init(params))(jnp.asarray(0.1, jnp.bfloat16))
    assert jnp.isfinite(updates["w"]).all()


def test_a_16_bit_number_collapsed_onto_a_bound_is_warned_of_or_refused(monkeypatch):
    """bfloat16 holds a momentum of 0.999 as 1.0 (SGD's momentum may be 1: an undamped
    heavy ball that never settles) and float16 an eps of 1e-8 as 0 (Adan's steps 41%
    longer at small gradients).  In range, and the number given is not known (inject
    rounded it): warned of, once per process; a momentum traced in 16 bits is warned of
    as a decay rate is.  set_hyperparams, which sees the number, refuses it."""
    monkeypatch.setattr(gradtx._stored, "_WARNED", set())
    bf16 = {"w": jnp.ones(3, jnp.bfloat16)}
    f16 = {"w": jnp.ones(3, jnp.float16)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = optax.inject_hyperparams(gradtx.sgd)(0.01, momentum=0.999).init(bf16)
        optax.inject_hyperparams(gradtx.adan)(0.05).init(f16)
        optax.inject_hyperparams(gradtx.sgd)(0.01, momentum=0.999).init(bf16)  # not again
        jax.jit(lambda m: gradtx.rmsprop(0.01, momentum=m).init(bf16))(
            jnp.asarray(0.9, jnp.bfloat16)
        )
    messages = [str(w.message) for w in caught]
    assert [m.split(":")[0] for m in messages] == [
        "gradtx.sgd(momentum=1.0 as a bfloat16 array)",
        "gradtx.adan(eps=0.0 as a float16 array)",
        "gradtx.adan(eps_root=0.0 as a float16 array)",
        "gradtx.rmsprop(momentum=...)",
    ]
    assert messages[0].endswith(
        "bfloat16 holds no number between 0.996094 and 1, so a momentum closer to 1 is 1.0.  "
        "If that is not the number you gave, give it in float32 (optax.inject_hyperparams "
        "stores numbers in the params' dtype unless given hyperparam_dtype=jnp.float32).  "
        "Shown once per process"
    )
    assert (
        "float16 holds no positive number below 5.96046e-08, so a smaller eps (the "
        "default, 1e-08, is one) is 0." in messages[1]
    )
    assert not caught[0].filename.startswith(os.path.dirname(gradtx.__file__))
    with pytest.raises(ValueError, match=r"^gradtx.set_hyperparams\(momentum=0.999\): momentum "
                       r"is 1 stored in bfloat16, as this state keeps it \(optax.inject_hyperparams "
                       r"stores numbers in the params' dtype unless given "
                       r"hyperparam_dtype=jnp.float32\)$"):  # fmt: skip
        gradtx.set_hyperparams(state, momentum=0.999)
    with pytest.raises(ValueError, match=r"learning_rate=1e-50\): learning_rate is 0 stored"):
        gradtx.set_hyperparams(state, learning_rate=1e-50)
    with pytest.raises(ValueError, match=r"learning_rate=1e-39\): learning_rate is 0 stored"):
        gradtx.set_hyperparams(state, learning_rate=1e-39)  # bfloat16's subnormal: XLA flushes it
    optax_state = optax.inject_hyperparams(optax.adam)(1e-3).init(bf16)  # rates known by name
    for name in ("b1", "b2"):
        with pytest.raises(ValueError, match=rf"{name} is 1 stored in bfloat16"):
            gradtx.set_hyperparams(optax_state, **{name: 0.999})
    with pytest.warns(UserWarning, match=r"^gradtx.set_hyperparams\(momentum=1.0 as a bfloat16 "
                      r"array\): bfloat16 holds no number between"):  # fmt: skip
        gradtx.set_hyperparams(state, momentum=jnp.asarray(0.999, jnp.bfloat16))
    f16_state = optax.inject_hyperparams(optax.adam)(1e-3).init(f16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults held, a zero default, float32 numbers
        optax.inject_hyperparams(gradtx.adam)(0.01, b2=0.99).init(bf16)  # eps_root: default 0
        gradtx.sgd(0.1, momentum=jnp.asarray(1.0))
        gradtx.set_hyperparams(state, momentum=0.9)
        gradtx.set_hyperparams(state, learning_rate=0.999)  # 1.0: not a rate, just rounded
        # float16's subnormals are kept (XLA computes float16 in float32): 1e-5 is 1.0014e-5
        gradtx.set_hyperparams(f16_state, learning_rate=1e-5)
        # 1 is an ordinary weight, not a momentum: not warned of, known or traced
        gradtx.lookahead(gradtx.sgd(0.1), slow_step_size=jnp.asarray(1.0, jnp.bfloat16))
        jax.jit(lambda a: gradtx.lookahead(gradtx.sgd(0.1), slow_step_size=a).init(bf16))(
            jnp.asarray(0.5, jnp.bfloat16)
        )


# ----------------------------------------------------------- update-time misuse


def _params():
    return {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_updates_tree_differs_from_params(case):
    opt = case.make(case.lr)
    params = _params()
    state = opt.init(params)
    for bad in ({"w": jnp.ones((2, 3))}, [jnp.ones((2, 3)), jnp.zeros(3)]):
        with pytest.raises(ValueError, match="does not match") as info:
            opt.update(bad, state, params)
        msg = str(info.value)
        assert msg.startswith(f"gradtx.{case.name}.update"), msg
        assert str(jax.tree.structure(bad)) in msg
        assert str(jax.tree.structure(params)) in msg


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_updates_tree_differs_from_init_without_params(case):
    opt = case.make(case.lr)
    state = opt.init(_params())
    bad = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError) as info:
        jax.jit(opt.update)(bad, state, bad)
    assert "does not match" in str(info.value)
    with pytest.raises(ValueError) as info:
        jax.jit(opt.update)(bad, state)
    msg = str(info.value)
    # names the call and says what differs (checked before params are needed)
    assert msg.startswith(f"gradtx.{case.name}.update: the "), msg
    assert "does not match" in msg and "initialised with" in msg, msg


@pytest.mark.parametrize(
    "opt",
    [
        gradtx.sgdw(0.1, 0.9),
        gradtx.adamw(0.1),
        gradtx.sgd(0.1, weight_decay=1e-3),
        gradtx.adam(0.1, weight_decay=1e-3),
        gradtx.add_l2(1e-3),
        gradtx.decoupled_weight_decay(1e-3),
    ],
    ids=["sgdw", "adamw", "sgd-l2", "adam-l2", "add_l2", "decoupled_weight_decay"],
)
def test_missing_params_where_needed(opt):
    state = opt.init(_params())
    with pytest.raises(ValueError, match=r"^gradtx\.\w+: update needs params"):
        opt.update(_params(), state)


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_and_boolean_leaves_are_rejected(case, dtype):
    opt = case.make(case.lr)
    bad = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3, dtype)}
    with pytest.raises(TypeError, match=rf"params leaf \['b'\] has dtype {jnp.dtype(dtype)}"):
        opt.init(bad)
    state = opt.init(_params())
    with pytest.raises(TypeError, match=rf"updates leaf \['b'\] has dtype {jnp.dtype(dtype)}"):
        jax.jit(opt.update)(bad, state, _params())


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_leaves_that_are_not_arrays_are_rejected_naming_the_leaf(case):
    """A string in the params was JAX's own TypeError, naming neither call nor leaf."""
    opt = case.make(case.lr)
    bad = {"w": jnp.ones((2, 3)), "b": "bias"}
    with pytest.raises(
        TypeError, match=r"^gradtx\.\w+: params leaf \['b'\] is not an array \(a str\)"
    ):
        opt.init(bad)
    if case.id == "dpsgd":
        return  # the registry's one_example makes each leaf an array before dpsgd sees it
    state = opt.init(_params())
    with pytest.raises(TypeError, match=r"^gradtx\.\w+: updates leaf \['b'\] is not an array"):
        loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))  # noqa: E731
        opt.update(bad, state, _params(), **case.keywords(loss, _params()))


def test_set_hyperparams_rejects_non_numbers():
    state = gradtx.adam(0.1).init(_params())
    with pytest.raises(TypeError, match=r"set_hyperparams\(learning_rate=...\)"):
        gradtx.set_hyperparams(state, learning_rate="0.1")
    with pytest.raises(TypeError, match="expected a number, got NoneType"):
        gradtx.set_hyperparams(state, learning_rate=None)
    with pytest.raises(KeyError, match="unknown hyperparameter 'lr'"):
        gradtx.set_hyperparams(state, lr=0.1)


@pytest.mark.parametrize(
    ("values", "keywords", "message"),
    [
        ({"opt/b2": 0.99, "b2": 0.98}, {}, "name the same hyperparameter"),
        ({"learning_rate": 0.2}, {"learning_rate": 0.3}, "both in values and as a keyword"),
        (
            {"learning_rate": gradtx.schedules.cosine_decay(0.2, 9), "learning_rate.alpha": 0.1},
            {},
            "name the same hyperparameter",
        ),
    ],
)
def test_set_hyperparams_refuses_two_keys_for_one_number(values, keywords, message):
    # one of the two used to win silently
    opt = gradtx.named_chain(("opt", gradtx.adam(gradtx.schedules.cosine_decay(0.1, 9))))
    state = opt.init(_params())
    with pytest.raises((TypeError, ValueError), match=message):
        gradtx.set_hyperparams(state, values, **keywords)
    ok = gradtx.set_hyperparams(state, {"learning_rate.init_value": 0.2, "b1": 0.5})
    assert float(gradtx.get_hyperparams(ok)["b1"]) == 0.5


def _set(opt, values):
    return gradtx.set_hyperparams(opt.init(_params()), values)


@pytest.fixture
def custom_sgd():
    """A user's factory, declared for this test only (declarations and makers are
    process-wide: a wrapper of ``sgd`` makes states of ``sgd``'s structure)."""
    from gradtx._factory import DECLARED
    from gradtx._factory import TAKES
    from gradtx._hyperparameterized import MAKERS

    before = len(DECLARED)

    @gradtx.factory(learning_rate=gradtx.Hyper(), momentum=gradtx.Hyper(low=-1.0, high=2.0))
    def custom_sgd(learning_rate=0.1, momentum=0.5):
        return gradtx.sgd(learning_rate, momentum)

    yield custom_sgd
    del DECLARED[before:]
    TAKES.pop("custom_sgd", None)
    for makers in MAKERS.values():
        for key in [k for k in makers if k[0] == "custom_sgd"]:
            del makers[key]


@pytest.fixture
def unknown_makers():
    """As in a fresh process that restored a state before any ``init``: no maker known."""
    from gradtx._hyperparameterized import MAKERS

    kept = dict(MAKERS)
    MAKERS.clear()
    yield
    MAKERS.clear()
    MAKERS.update(kept)


_AS_ADAM = r", as gradtx.adam, which made this state, takes it$"


@pytest.mark.parametrize(
    ("make", "values", "error", "message"),
    [
        (lambda: gradtx.adam(0.1), {"learning_rate": -0.1}, ValueError,
         r"learning_rate=-0.1\): learning_rate must be in \[0, inf\)" + _AS_ADAM),
        (lambda: gradtx.adam(0.1), {"learning_rate": np.float32(-2)}, ValueError,
         r"must be in \[0, inf\)" + _AS_ADAM),
        (lambda: gradtx.adam(0.1), {"b1": 1.0}, ValueError,
         r"b1=1.0\): b1 must be in \[0, 1\)" + _AS_ADAM),
        (lambda: gradtx.adam(0.1), {"b2": 0.99999999}, ValueError,
         r"b2 rounds to 1 stored in float32, so 1 - b2 is 0, outside \[0, 1\) \(jax_enable"),
        (lambda: gradtx.schedule_free_sgd(0.1), {"b1": 1e-50}, ValueError,
         r"b1 rounds to 0 stored in float32, outside \(0, 1\] \(jax_enable_x64"),
        (lambda: gradtx.adam(0.1), {"b1": math.nan}, ValueError, r"b1=nan\): b1 must not be NaN$"),
        (lambda: gradtx.adam(0.1), {"eps": math.inf}, ValueError,
         r"eps=inf\): eps must be in \[0, inf\)" + _AS_ADAM),
        (lambda: gradtx.adam(lambda c: 0.1), {"b1": 1.0}, ValueError,
         r"b1 must be in \[0, 1\)" + _AS_ADAM),
        (lambda: gradtx.sm3(0.1, momentum=0.5), {"momentum": 1.0}, ValueError,
         r"momentum must be in \[0, 1\), as gradtx.sm3, which made this state, takes it$"),
        (lambda: gradtx.bias_correct(0.9), {"decay": 1.0}, ValueError,
         r"decay must be in \[0, 1\), as gradtx.bias_correct, which made this state, takes"),
        (lambda: gradtx.prodigy(), {"betas": (0.9, 1.5)}, ValueError,
         r"betas must be in \[0, 1\), as gradtx.prodigy, which made this state, takes it$"),
        (lambda: gradtx.reduce_on_plateau(), {"patience": 2.5}, TypeError,
         r"patience=2.5\): patience must be an int$"),
        (lambda: gradtx.adam(S.cosine_decay(0.1, 100)), {"learning_rate.init_value": -1.0},
         ValueError, r"init_value=...\): the CosineDecay schedule reaches -1 at step 0; "
         r"learning_rate must be in \[0, inf\)" + _AS_ADAM),
        (lambda: gradtx.adam(S.cosine_decay(0.1, 100)), {"learning_rate.alpha": math.nan},
         ValueError, r"alpha=...\): the CosineDecay schedule reaches nan at step 0; "),
        (lambda: gradtx.sgd(0.1, momentum=S.constant(0.5)), {"momentum.value": -math.inf},
         ValueError, r"momentum.value=-inf\): momentum.value must be finite$"),
        (lambda: gradtx.adam(S.constant(0.1)), {"learning_rate": S.Constant(math.inf)},
         ValueError, r"learning_rate=...\): learning_rate must be finite$"),
        (lambda: gradtx.adam(S.exponential_decay(0.1, 10, 0.9)),
         {"learning_rate.decay_rate": 1.1}, ValueError,
         r"the ExponentialDecay schedule reaches inf at step \d+; learning_rate must be in"),
        (lambda: gradtx.sgd(0.1, momentum=S.linear(0.5, 0.9, 10)),
         {"momentum": S.linear(0.5, 1.5, 10)}, ValueError,
         r"the Linear schedule reaches 1.1 at step 6; momentum must be in \[0, 1\], as "
         r"gradtx.sgd, which made this state, takes it$"),
        (lambda: gradtx.scale_by_multipliers({"w": S.constant(1.0), "b": 1.0}),
         {"w/multiplier.value": math.nan}, ValueError,
         r"the Constant schedule reaches nan at step 0; w/multiplier must be in \[0, inf\), "
         r"as gradtx.scale_by_multipliers, which made this state, takes it$"),
        (lambda: optax.inject_hyperparams(optax.adam)(0.1), {"learning_rate": math.nan},
         ValueError, r"learning_rate must not be NaN$"),
        (lambda: gradtx.asgd(0.1), {"t0": jnp.asarray(2**25 + 1, jnp.int32)}, ValueError,
         r"t0=33554433 as an int32 array\): t0 is stored in float32, which rounds it to "
         r"33554432 "),
        (lambda: gradtx.sgd(S.linear(0.1, 0.0, 100)),
         {"learning_rate.transition_steps": jnp.asarray(2**25 + 1, jnp.int32)}, ValueError,
         r"transition_steps is stored in float32, which rounds it to 33554432 "),
        (lambda: gradtx.swats(1e-3), {"switch_step": jnp.asarray(2.5)}, TypeError,
         r"switch_step=2.5 as a float32 array\): switch_step must be an int$"),
        (lambda: gradtx.swats(1e-3), {"switch_step": jnp.asarray(math.nan)}, TypeError,
         r"switch_step must be an int$"),
        (lambda: gradtx.swats(1e-3), {"switch_step": jnp.asarray(1e10)}, ValueError,
         r"switch_step is stored in int32, which holds \[-2147483648, 2147483647\]$"),
        (lambda: gradtx.sgd(S.cosine_decay(0.1, 10)), {"learning_rate.cycle": math.nan},
         ValueError, r"the CosineDecay schedule it makes is one its constructor refuses: cycle "
         r"is a 0/1 option \(True or False\), got nan$"),
    ],
    ids=["negative-lr", "numpy-lr", "adam-b1-one", "b2-rounds-to-one", "rounds-to-zero",
         "nan", "inf", "callable-lr-beside", "sm3-momentum-one", "bias-correct-one", "array-slot",
         "int-count",
         "schedule-field", "schedule-field-nan", "schedule-field-inf", "schedule-with-inf",
         "schedule-grows-to-inf", "schedule-leaves-range",
         "multiplier-schedule-nan", "optax-inject-nan", "int-array-rounded",
         "int-array-schedule-step-rounded", "fraction-array-int-slot", "nan-array-int-slot",
         "array-beyond-int-slot", "schedule-flag-nan"],
)  # fmt: skip
def test_set_hyperparams_refuses_what_the_factory_would(make, values, error, message):
    """A concrete value is checked as the factory that made the state checks it at
    construction: range, NaN, infinities, ints for counts, rounding where stored, a
    schedule leaving the range.  The maker is known by the state's structure (sm3's
    momentum may not be 1, SGD's may); the message names it."""
    with pytest.raises(error, match=r"^gradtx.set_hyperparams\(" + f".*{message}"):
        _set(make(), values)


def test_set_hyperparams_keeps_what_the_factory_accepts():
    for opt, key in [
        (gradtx.lion(0.1), "b1"),  # Lion's b1 is in [0, 1]
        (gradtx.simplified_ademamix(0.1), "b1"),
        (gradtx.simplified_ademamix(0.1, alpha=jnp.asarray(5.0)), "b1"),  # alpha not stored
        (gradtx.sgd(0.1, momentum=0.5), "momentum"),
        (gradtx.add_momentum(0.9), "decay"),
    ]:
        assert float(gradtx.get_hyperparams(_set(opt, {key: 1.0}))[key]) == 1.0
    fraction = _set(gradtx.adam(0.1), {"learning_rate": fractions.Fraction(1, 4)})
    assert float(gradtx.get_hyperparams(fraction)["learning_rate"]) == 0.25  # as factories do
    # optax's own states take any number but NaN; a traced JAX array is data (as at
    # construction), and a known one is checked as a number is
    injected = _set(optax.inject_hyperparams(optax.adam)(0.1), {"learning_rate": -1.0})
    assert float(gradtx.get_hyperparams(injected)["learning_rate"]) == -1.0
    state = gradtx.adam(0.1).init(_params())
    traced = jax.jit(lambda s, v: gradtx.set_hyperparams(s, learning_rate=v))(state, -1.0)
    assert float(gradtx.get_hyperparams(traced)["learning_rate"]) == -1.0
    with pytest.raises(ValueError, match=r"b2=1.0 as a bfloat16 array\): b2 must be in "
                       r"\[0, 1\), as gradtx.adam, which made this state, takes it$"):  # fmt: skip
        gradtx.set_hyperparams(state, b2=jnp.asarray(0.999, jnp.bfloat16))
    with pytest.raises(ValueError, match=r"learning_rate=nan as a float32 array\): learning_rate "
                       r"must not be NaN$"):  # fmt: skip
        gradtx.set_hyperparams(injected, learning_rate=jnp.asarray(jnp.nan, jnp.float32))


def test_set_hyperparams_takes_the_ranges_of_a_users_factory(custom_sgd):
    custom = _set(custom_sgd(), {"momentum": 1.5, "learning_rate": -0.1})
    assert float(gradtx.get_hyperparams(custom)["momentum"]) == 1.5
    with pytest.raises(ValueError, match=r"momentum=2.5\): momentum must be in \[-1, 2\], as "
                       r"custom_sgd, gradtx.sgd, which made this state, takes it$"):  # fmt: skip
        _set(custom_sgd(), {"momentum": 2.5})


def test_set_hyperparams_infers_the_ranges_where_no_init_made_the_state(unknown_makers):
    """A state restored before any ``init`` of its structure: the ranges are those of
    the declarations whose numbers the state holds, and the message says so.  Adam's
    ``b1 = 1`` is still refused (no factory with exactly Adam's numbers takes it); sm3's
    ``momentum = 1`` is taken, since SGD holds the same names and takes it."""
    adam = gradtx.adam(0.1).init(_params())
    sm3 = gradtx.sm3(0.1, momentum=0.5).init(_params())
    from gradtx._hyperparameterized import MAKERS

    MAKERS.clear()
    with pytest.raises(ValueError, match=r"b1=1.0\): b1 must be in \[0, 1\) \(as for "
                       r"gradtx.acprop, gradtx.adabelief, gradtx.adam and 5 more, the factories "
                       r"whose numbers this state holds; a JAX array is taken unchecked\)$"):  # fmt: skip
        gradtx.set_hyperparams(adam, b1=1.0)
    assert float(gradtx.get_hyperparams(gradtx.set_hyperparams(sm3, momentum=1.0))["momentum"]) == 1
    # an inferred range is not the maker's: a JAX array is the way past it
    past = gradtx.set_hyperparams(adam, b1=jnp.asarray(1.0))
    assert float(gradtx.get_hyperparams(past)["b1"]) == 1
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\] \(as for gradtx.sgd"):
        gradtx.set_hyperparams(sm3, momentum=1.5)


def test_a_number_that_rounds_out_of_its_range_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"^gradtx.rprop\(eta_plus=1.00000001\): eta_plus "
                       r"rounds to 1 stored in float32, outside \(1, inf\)"):  # fmt: skip
        gradtx.rprop(0.1, eta_plus=1.00000001)
    with pytest.raises(ValueError, match=r"max_norm rounds to 0 stored in float32, outside"):
        gradtx.clip_by_global_norm(1e-50)
    # a count of steps given as a 0-d NumPy array is a number like any other
    with pytest.raises(TypeError, match=r"^gradtx.average_params\(start=array\(0.5\)\): start "
                       r"must be an int"):  # fmt: skip
        gradtx.average_params(gradtx.sgd(0.1), start=np.array(0.5))


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_set_hyperparams_takes_back_every_value_the_factory_stored(case, unknown_makers):
    """Every number, array and schedule field of every registry optimizer, at its
    registry settings, set back to what it holds, is taken: with the maker known by
    the state's structure, and with the ranges inferred from the names alone."""
    from gradtx._hyperparameterized import MAKERS

    state = case.make(case.lr).init(_params())
    assert MAKERS, "init records the state's maker"
    shown = gradtx.get_hyperparams(state)
    settable = [
        key
        for key, value in shown.items()
        if not key.endswith("()")  # a plain callable's value, read-only
        and not any(k.startswith(key + ".") for k in shown)  # a schedule: set its fields
        and not (case.name == "reduce_on_plateau" and key.endswith("scale"))
    ]
    assert settable, shown
    for known in (True, False):
        if not known:
            MAKERS.clear()
        for key in settable:
            value = np.asarray(shown[key])
            given = value.tolist() if value.dtype != np.bool_ else bool(value)
            try:
                gradtx.set_hyperparams(state, {key: given})
            except ValueError as err:
                if "computed by the transform" not in str(err):
                    raise


def _loss_of(p):
    return jnp.sum(p["w"] ** 2)


@pytest.mark.parametrize(
    ("make", "extra", "error", "message"),
    [
        (lambda: gradtx.lbfgs(), dict(value=jnp.ones(2), value_fn=_loss_of), ValueError,
         r"gradtx.lbfgs: value must be the scalar loss, got shape \(2,\)"),
        (lambda: gradtx.lbfgs(), dict(value=1.0, value_fn=3), TypeError,
         "gradtx.lbfgs: value_fn must be a function of the params, got int"),
        (lambda: gradtx.lbfgs(line_search_fn="strong_wolfe", convention="optax"),
         dict(value=1.0, value_fn=lambda p: p["w"]),
         ValueError, r"value_fn must return the scalar loss, got shape \(3,\)"),
        (lambda: gradtx.sophia(0.1), dict(obj_fn=lambda p: p["w"]), ValueError,
         r"gradtx.sophia.update: obj_fn must return the scalar loss, got shape \(3,\)"),
        (lambda: gradtx.sophia(0.1), dict(obj_fn=3), TypeError, "obj_fn must be a function"),
        (lambda: gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True),
         dict(grad_fn=lambda p, i: _loss_of(p)), TypeError,
         r"sam\(opaque_mode=True\).update: grad_fn must return the gradient, a tree like"),
        (lambda: gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True),
         dict(grad_fn=lambda p, i: {"w": p["w"][:2]}), TypeError,
         r"grad_fn returned float32\[2\] at leaf \['w'\], where the param is float32\[3\]"),
        (lambda: gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True),
         dict(grad_fn=3), TypeError, "grad_fn must be a function"),
        (lambda: gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True),
         dict(grad_fn=lambda p, i: {"w": p["w"].astype(jnp.bfloat16)}), TypeError,
         r"grad_fn returned bfloat16\[3\] at leaf \['w'\], where the param is float32"),
    ],
)  # fmt: skip
def test_update_time_functions_and_losses_are_checked_naming_the_call(make, extra, error, message):
    # each failed deep inside JAX or inside the inner optimizer, naming neither
    opt, p = make(), {"w": jnp.array([1.0, -2.0, 3.0])}
    with pytest.raises(error, match=message):
        opt.update({"w": jnp.ones(3)}, opt.init(p), p, **extra)


def test_sams_grad_fn_may_return_a_wider_float_than_bfloat16_params():
    # a mixed-precision loss gives float32 gradients; the inner optimizer takes them
    p = {"w": jnp.ones(3, jnp.bfloat16)}
    opt = gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), opaque_mode=True, sync_period=2)
    widened = lambda q, i: jax.tree.map(lambda x: x.astype(jnp.float32), q)  # noqa: E731
    u, _ = opt.update(p, opt.init(p), p, grad_fn=widened)
    assert u["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: gradtx.adafactor(eps=jnp.array([1e-30, 1e-3])),
            r"eps must be a pair \(eps1, eps2\) or a number, got an array of shape \(2,\)",
        ),  # fmt: skip
        (
            lambda: gradtx.prodigy(betas=np.array([[0.9, 0.99]])),
            r"betas must be a pair \(b1, b2\)$",
        ),  # fmt: skip
        (
            lambda: gradtx.prodigy(betas=(0.9, (0.99, 0.5))),
            r"betas\[1\]=\(0.99, 0.5\)\): betas\[1\] must be a real number, got tuple$",
        ),  # fmt: skip
    ],
)
def test_a_pair_given_as_an_array_of_another_form_is_named_a_pair(make, message):
    # "must be a real scalar": the error named a scalar where a pair was wanted
    with pytest.raises(TypeError, match=message):
        make()


def test_adafactors_eps_pair_may_be_a_numpy_array(x64):
    params = jnp.ones((3, 2))
    a, b = gradtx.adafactor(eps=np.array([1e-30, 1e-3])), gradtx.adafactor(eps=(1e-30, 1e-3))
    np.testing.assert_array_equal(a.update(params, a.init(params), params)[0],
                                  b.update(params, b.init(params), params)[0])  # fmt: skip


def test_rprops_bounds_are_ordered_inside_a_users_factory_too():
    # derive runs for the outer factory only; the body still checks numbers.  The
    # declaration is process-wide (as custom_sgd's): removed after the test.
    from gradtx._factory import DECLARED
    from gradtx._factory import TAKES

    before = len(DECLARED)
    try:

        @gradtx.factory(learning_rate=gradtx.Hyper(low=0.0))
        def my_rprop(learning_rate=0.1):
            return gradtx.scale_by_rprop(learning_rate, min_step_size=1.0, max_step_size=0.5)

        with pytest.raises(ValueError, match=r"^my_rprop\(min_step_size=1.0, "
                           r"max_step_size=0.5\): min_step_size must not exceed"):  # fmt: skip
            my_rprop()
    finally:
        del DECLARED[before:]
        TAKES.pop("my_rprop", None)
