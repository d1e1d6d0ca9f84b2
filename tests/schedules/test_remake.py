"""A schedule class built directly skips its constructor's checks: a factory given
one rebuilds it by the constructor (``gradtx.schedules._remake``), as
``set_hyperparams`` does with fields it changes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.schedules._remake import remade
from tests.schedules.test_common import EXAMPLES


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_schedule_its_constructor_made_is_rebuilt_as_it_was(name):
    schedule = EXAMPLES[name](0.2)
    again = remade(schedule)
    assert jax.tree.structure(again) == jax.tree.structure(schedule)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(schedule)):
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))
    gradtx.sgd(schedule)  # taken by a factory


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_class_built_with_a_field_its_constructor_refuses_is_refused(name):
    """Each field set to -1 (a negative rate, step count or factor) on a schedule
    built directly: where its constructor refuses the fields, so does a factory, with
    the constructor's message; at least one field of every class is refused."""
    schedule = EXAMPLES[name](0.2)
    refused = []
    for field in dataclasses.fields(schedule):
        if field.name == "schedules":
            continue
        value = getattr(schedule, field.name)
        bad = np.full(np.shape(value), -1.0) if np.ndim(value) else -1.0
        built = dataclasses.replace(schedule, **{field.name: bad})
        try:
            remade(built)
        except (TypeError, ValueError) as err:
            why = str(err)
        else:
            gradtx.sgd(built)
            continue
        with pytest.raises((TypeError, ValueError)) as caught:
            gradtx.sgd(built)
        shown = f"gradtx.sgd(learning_rate={type(schedule).__name__}(...)): its fields, "
        assert str(caught.value) == f"{shown}rebuilt by its constructor, are refused: {why}"
        refused.append(field.name)
    if hasattr(schedule, "schedules"):  # a member's own fields
        member = schedule.schedules[0]
        first = dataclasses.fields(member)[0].name
        built = dataclasses.replace(
            schedule,
            schedules=[dataclasses.replace(member, **{first: -1.0}), *schedule.schedules[1:]],
        )
        with pytest.raises(
            ValueError, match=r"its fields, rebuilt by its constructor, are refused"
        ):
            gradtx.sgd(built)
        refused.append(f"schedules[0].{first}")
    assert refused, f"{name}: no field refused"


def test_non_finite_steps_and_16_bit_fields_are_checked_too():
    cosine = type(EXAMPLES["cosine_decay"](0.2))
    with pytest.raises(ValueError, match=r"decay_steps=nan\): decay_steps must be finite$"):
        gradtx.sgd(cosine(1.0, float("nan"), 0.0, 1.0, 0))
    with pytest.raises(ValueError, match=r"init_value=-1.0\): init_value must be in \[0, inf\)$"):
        gradtx.sgd(cosine(jnp.asarray(-1.0, jnp.bfloat16), 10, 0.0, 1.0, 0))
    piecewise = type(EXAMPLES["piecewise_constant"](0.2))
    with pytest.raises(TypeError, match=r"boundaries must be a 1-D array"):
        gradtx.sgd(piecewise(1.0, np.array(5.0), np.array(-1.0)))


def test_a_traced_field_is_data():
    cosine = type(EXAMPLES["cosine_decay"](0.2))
    opt = jax.jit(
        lambda v: gradtx.sgd(cosine(v, 10, 0.0, 1.0, 0)).init({"w": np.zeros(2, np.float32)})
    )
    opt(-1.0)


@pytest.mark.parametrize(
    ("name", "flag"),
    [("cosine_decay", "cycle"), ("exponential_decay", "staircase"), ("one_cycle", "three_phase"),
     ("one_cycle", "cosine"), ("one_cycle_momentum", "three_phase"),
     ("warmup_cosine_decay", "cycle"), ("swa_lr", "cosine")],
)  # fmt: skip
def test_a_flag_is_0_or_1(name, flag):
    """A 0/1 option field holding another number would be read as 1 by the formula:
    refused on a class built directly and by set_hyperparams; 0, 1 and bools taken."""
    schedule = EXAMPLES[name](0.2)
    state = gradtx.sgd(schedule).init({"w": jnp.zeros(2)})
    for bad in (0.5, -1.0, 2.0, float("nan"), jnp.asarray(0.5)):
        with pytest.raises(ValueError, match=rf"{flag} is a 0/1 option \(True or False\), got "):
            gradtx.sgd(dataclasses.replace(schedule, **{flag: bad}))
        with pytest.raises(ValueError, match=rf"^gradtx.set_hyperparams\(learning_rate.{flag}="):
            gradtx.set_hyperparams(state, {f"learning_rate.{flag}": bad})
    for good in (0, 1, 0.0, True, False, jnp.asarray(1.0)):
        gradtx.sgd(dataclasses.replace(schedule, **{flag: good}))
        new = gradtx.set_hyperparams(state, {f"learning_rate.{flag}": good})
        assert float(gradtx.get_hyperparams(new)[f"learning_rate.{flag}"]) == float(good)
