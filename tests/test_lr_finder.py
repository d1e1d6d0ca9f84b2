"""gradtx.lr_range_test: Smith's learning-rate range test as one compiled program."""

import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest

import gradtx
from gradtx import schedules

matplotlib.use("Agg")


def quadratic(c, noise=0.0, steps=100, seed=0):
    """0.5·Σ c_k (p_k - b_k)²: curvatures c, c/10, c/100; SGD diverges above 2/c."""
    curvature = jnp.asarray([c, c / 10, c / 100])  # JAX's default float dtype

    def loss_fn(p, b):
        return 0.5 * jnp.sum(curvature * (p - b) ** 2)

    targets = noise * jax.random.normal(jax.random.PRNGKey(seed), (steps, 3))
    return loss_fn, jnp.ones(3), targets


@pytest.mark.parametrize(
    "noise, num_steps", [(0.0, 100), (0.1, 100), (0.0, 6), (0.0, 10), (0.0, 20)]
)
@pytest.mark.parametrize("c", [1.0, 4.0, 100.0, 1e4])
def test_suggestion_and_max_bound_lie_below_the_divergence_point(c, noise, num_steps):
    # A loss is measured before its step's update: read against the rate of that step,
    # a few-step test put both at or above the divergence point.  (Few steps on noisy
    # targets need not find a descent at all.)
    loss_fn, params, batches = quadratic(c, noise)
    kwargs = {} if num_steps == 100 else {"min_lr": 1e-3 / c, "smoothing": 0.0}
    result = gradtx.lr_range_test(
        gradtx.sgd(0.1), loss_fn, params, batches, num_steps=num_steps, **kwargs
    )
    edge = 2.0 / c
    base, high = result.bounds
    assert edge / 100 < result.suggested_lr < edge
    assert edge / 100 < high < edge
    assert base < high


def test_linear_mode_finds_the_divergence_point_too():
    c = 4.0
    loss_fn, params, batches = quadratic(c, noise=0.1)
    result = gradtx.lr_range_test(
        gradtx.sgd(0.1), loss_fn, params, batches, mode="linear", min_lr=1e-3, max_lr=1.0
    )
    np.testing.assert_allclose(np.diff(result.learning_rates), (1.0 - 1e-3) / 99)
    assert result.steps < 100  # it diverged and stopped
    assert 2 / c / 100 < result.suggested_lr < result.bounds[1] < 2 / c


@pytest.mark.parametrize(
    "make", [lambda: gradtx.sgd(0.1, momentum=0.9), lambda: gradtx.adam(1e-3)], ids=["sgdm", "adam"]
)
def test_losses_equal_the_same_steps_run_by_hand(make, x64):
    key_w, key_x = jax.random.split(jax.random.PRNGKey(1))
    params = {"w": 0.3 * jax.random.normal(key_w, (4, 2)), "b": jnp.zeros(2)}
    xs = jax.random.normal(key_x, (7, 16, 4))  # 7 batches, reused cyclically
    batches = {"x": xs, "y": jnp.tanh(xs @ jnp.ones((4, 2)))}

    def loss_fn(p, batch):
        return jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)

    opt = make()
    result = gradtx.lr_range_test(
        opt, loss_fn, params, batches, min_lr=1e-5, max_lr=1e3, num_steps=60
    )
    n = result.steps
    assert 10 < n < 60  # stopped by the divergence rule
    assert np.isnan(result.losses[n:]).all() and np.isnan(result.smoothed_losses[n:]).all()

    @jax.jit
    def step(p, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(p, batch)
        updates, state = opt.update(grads, state, p)
        return gradtx.apply_updates(p, updates), state, loss

    state, p, by_hand = opt.init(params), params, []
    for i, lr in enumerate(result.learning_rates[:n]):
        state = gradtx.set_hyperparams(state, learning_rate=lr)
        p, state, loss = step(p, state, jax.tree.map(lambda b, i=i: b[i % 7], batches))
        by_hand.append(float(loss))
    np.testing.assert_allclose(result.losses[:n], by_hand, rtol=1e-12)

    # The stop rule, by hand: the debiased running average first exceeds 4x its best.
    alpha = 1 / (1 + 0.05 * 60)
    ema, weight, running = 0.0, 0.0, []
    for loss in by_hand:
        ema, weight = (1 - alpha) * ema + alpha * loss, (1 - alpha) * weight + alpha
        running.append(ema / weight)
    above = np.asarray(running) > 4 * np.minimum.accumulate(running)
    assert above[-1] and not above[:-1].any()


def test_the_step_is_traced_once_and_reruns_do_not_retrace():
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    traces = {"loss": 0, "update": 0}

    def counted_loss(p, b):
        traces["loss"] += 1
        return loss_fn(p, b)

    inner = gradtx.adam(1e-3)

    def update(updates, state, params=None):
        traces["update"] += 1
        return inner.update(updates, state, params)

    opt = optax.GradientTransformation(inner.init, update)
    gradtx.lr_range_test(opt, counted_loss, params, batches)
    assert traces == {"loss": 1, "update": 1}
    # Other ranges, smoothing and stop factor are data: the compiled test is reused.
    gradtx.lr_range_test(opt, counted_loss, params, batches, min_lr=1e-4, max_lr=1.0, smoothing=0.1)
    gradtx.lr_range_test(opt, counted_loss, params, batches, diverge_factor=10.0, mode="linear")
    assert traces == {"loss": 1, "update": 1}


def test_an_unhashable_loss_function_works():
    loss_fn, params, batches = quadratic(4.0, noise=0.1)

    class Loss:
        __hash__ = None  # e.g. a dataclass with eq=True

        def __call__(self, p, b):
            return loss_fn(p, b)

    result = gradtx.lr_range_test(gradtx.sgd(0.1), Loss(), params, batches)
    assert result.suggested_lr < 2 / 4.0


def test_vmap_params_gives_one_curve_per_run_and_a_band(x64):
    loss_fn, _, batches = quadratic(4.0, noise=0.1)
    starts = 1.0 + jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    result = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, starts, batches, vmap_params=True)
    assert result.losses.shape == result.smoothed_losses.shape == (3, 100)
    assert result.steps.shape == (3,)
    for run in range(3):
        alone = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, starts[run], batches)
        assert alone.steps == result.steps[run]
        np.testing.assert_allclose(result.losses[run], alone.losses, rtol=1e-12)
        np.testing.assert_allclose(result.smoothed_losses[run], alone.smoothed_losses, rtol=1e-12)
    assert 2 / 4.0 / 100 < result.suggested_lr < result.bounds[1] < 2 / 4.0


def test_a_schedule_on_the_learning_rate_is_replaced_by_the_driven_constant():
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    plain = gradtx.lr_range_test(gradtx.sgd(0.1, momentum=0.9), loss_fn, params, batches)
    scheduled = gradtx.sgd(schedules.one_cycle(1000, 0.1), momentum=0.9)
    result = gradtx.lr_range_test(scheduled, loss_fn, params, batches)
    np.testing.assert_array_equal(result.losses, plain.losses)
    # Other scheduled hyperparameters still follow their schedules.
    cycled = gradtx.sgd(0.1, momentum=schedules.one_cycle_momentum(100))
    assert not np.array_equal(
        gradtx.lr_range_test(cycled, loss_fn, params, batches).losses, plain.losses
    )


WRAPPERS = {
    "flatten": gradtx.flatten,
    "lookahead": gradtx.lookahead,
    "average_params": gradtx.average_params,
    "mechanize": gradtx.mechanize,
    "partition-flatten": lambda tx: gradtx.partition({"all": gradtx.flatten(tx)}, "all"),
}


@pytest.mark.parametrize("wrap", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_a_schedule_inside_a_wrapper_is_driven_as_outside(wrap):
    """The wrapped optimizer's state holds the driven number where init made a
    schedule; the wrappers' own state checks once refused it."""
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    plain = gradtx.lr_range_test(wrap(gradtx.sgd(0.1, momentum=0.9)), loss_fn, params, batches)
    scheduled = wrap(gradtx.sgd(schedules.one_cycle(1000, 0.1), momentum=0.9))
    result = gradtx.lr_range_test(scheduled, loss_fn, params, batches)
    np.testing.assert_array_equal(result.losses, plain.losses)
    # optax's tree_set does the same replacement, and the next steps use the number.
    state = optax.tree_utils.tree_set(scheduled.init(params), learning_rate=jnp.asarray(0.003))
    constant = wrap(gradtx.sgd(0.003, momentum=0.9))
    fixed = constant.init(params)
    for batch in batches[:3]:
        g = jax.grad(loss_fn)(params, batch)
        u, state = scheduled.update(g, state, params)
        v, fixed = constant.update(g, fixed, params)
        np.testing.assert_array_equal(u, v)


def test_parameter_groups_are_driven_by_name():
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    params = {"a": params, "b": params}
    two = gradtx.partition({"a": gradtx.sgd(0.1), "b": gradtx.sgd(0.1)}, {"a": "a", "b": "b"})

    def loss2(p, b):
        return loss_fn(p["a"], b) + loss_fn(p["b"], b)

    with pytest.raises(ValueError, match=r"gradtx.lr_range_test: .*'learning_rate'.*ambiguous"):
        gradtx.lr_range_test(two, loss2, params, batches)
    result = gradtx.lr_range_test(two, loss2, params, batches, hyperparam="a/learning_rate")
    assert 2 / 4.0 / 100 < result.suggested_lr < result.bounds[1] < 2 / 4.0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: gradtx.sgd(lambda count: 0.1), "plain Python callable"),
        (lambda: gradtx.scale(-0.1), "no single hyperparameter 'learning_rate'"),
        (lambda: gradtx.identity(), "no single hyperparameter 'learning_rate'"),
    ],
    ids=["python-callable", "scale", "identity"],
)
def test_an_optimizer_without_a_settable_learning_rate_is_a_clear_error(make, message):
    loss_fn, params, batches = quadratic(4.0)
    with pytest.raises(ValueError, match=r"^gradtx.lr_range_test: .*" + message):
        gradtx.lr_range_test(make(), loss_fn, params, batches)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"min_lr": 0.0}, ValueError, r"min_lr=0.0\): min_lr must be in \(0, inf\)"),
        ({"max_lr": 1e-8}, ValueError, r"max_lr must be in \(1e-07, inf\)"),
        ({"max_lr": math.nan}, ValueError, "max_lr must be in"),
        ({"max_lr": math.inf}, ValueError, r"max_lr=inf\): max_lr must be in \(1e-07, inf\)"),
        (
            {"min_lr": 1.0, "max_lr": 0.1},
            ValueError,
            r"max_lr must be in \(1, inf\) \(above min_lr",
        ),
        (
            {"min_lr": 1e-46},
            ValueError,
            r"min_lr=1e-46\): the learning rates are float32 .* at least 1.1754943508222875e-38",
        ),
        ({"num_steps": 3}, ValueError, "num_steps must be >= 4"),
        ({"num_steps": 10.0}, TypeError, "num_steps must be an int"),
        ({"mode": "log"}, ValueError, "mode must be 'exponential' or 'linear'"),
        ({"smoothing": 1.5}, ValueError, r"smoothing must be in \[0, 1\]"),
        ({"smoothing": "0.1"}, TypeError, "smoothing must be a real number"),
        ({"diverge_factor": 1.0}, ValueError, r"diverge_factor must be in \(1, inf\]"),
    ],
)
def test_bad_arguments_name_the_call(kwargs, error, message):
    loss_fn, params, batches = quadratic(4.0)
    with pytest.raises(error, match=r"^gradtx.lr_range_test\(.*" + message):
        gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, params, batches, **kwargs)


def test_bad_batches_and_stacked_params_are_errors():
    loss_fn, params, _ = quadratic(4.0)
    sgd = gradtx.sgd(0.1)
    with pytest.raises(ValueError, match="leading step axis"):
        gradtx.lr_range_test(sgd, loss_fn, params, jnp.float32(0.0))
    with pytest.raises(ValueError, match="differ in length"):
        gradtx.lr_range_test(
            sgd, lambda p, b: loss_fn(p, b[0]), params, (jnp.zeros((3, 3)), jnp.zeros(4))
        )
    with pytest.raises(ValueError, match="one leading run axis"):
        gradtx.lr_range_test(sgd, loss_fn, {"a": jnp.ones((2, 3)), "b": jnp.ones((3,))},
                             jnp.zeros((1, 3)), vmap_params=True)  # fmt: skip
    with pytest.raises(ValueError, match="one leading run axis"):  # a 0-d leaf has no runs
        gradtx.lr_range_test(sgd, lambda p, b: p["s"] ** 2, {"s": jnp.float32(1.0)},
                             jnp.zeros((1, 3)), vmap_params=True)  # fmt: skip
    with pytest.raises(ValueError, match="stack an iterator's or a list's batches"):
        gradtx.lr_range_test(sgd, loss_fn, params, iter([jnp.zeros(3)] * 5))
    per_step = [(jnp.zeros((4, 3)), jnp.zeros(4))] * 5  # (x, y) of one step each
    with pytest.raises(ValueError, match="a list of 5 pytrees .* one batch per step"):
        gradtx.lr_range_test(sgd, lambda p, b: loss_fn(p, b[0][0]), params, per_step)
    # one batch, or a smaller last batch: the rows were read as steps
    step = lambda p, b: loss_fn(p, b[0][0])  # noqa: E731
    with pytest.raises(ValueError, match="a list of 1 pytree of .* one batch per step"):
        gradtx.lr_range_test(sgd, step, params, per_step[:1])
    ragged = per_step[:2] + [(jnp.zeros((2, 3)), jnp.zeros(2))]
    with pytest.raises(ValueError, match="a list of 3 pytrees .* one batch per step"):
        gradtx.lr_range_test(sgd, step, params, ragged)
    # taken: a list of stacked pairs, one per source, every leaf 5 steps long
    sources = [(jnp.zeros((5, 4, 3)), jnp.zeros((5, 4))), (jnp.zeros((5, 2, 3)), jnp.zeros((5, 2)))]
    found = gradtx.lr_range_test(
        sgd, lambda p, b: loss_fn(p, b[1][0][0]), params, sources, num_steps=5
    )
    assert found.steps == 5
    # these failed inside JAX or NumPy
    with pytest.raises(ValueError, match="batches have no steps"):
        gradtx.lr_range_test(sgd, loss_fn, params, jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="of one or more runs"):
        gradtx.lr_range_test(sgd, loss_fn, jnp.ones((0, 3)), jnp.zeros((1, 3)), vmap_params=True)
    with pytest.raises(TypeError, match=r"hyperparam=None\): hyperparam must be a name"):
        gradtx.lr_range_test(sgd, loss_fn, params, jnp.zeros((1, 3)), hyperparam=None)


def test_a_run_that_ends_on_an_overflow_still_suggests_from_its_fall():
    """The last loss, inf (diverge_factor=inf always stops on one), made the whole curve
    unreadable: no suggestion, and a warning that the loss never fell."""
    loss_fn = lambda p, b: 2.0 * jnp.sum(p**2)  # noqa: E731  SGD diverges above 0.5
    run = lambda **kw: gradtx.lr_range_test(  # noqa: E731
        gradtx.sgd(0.1), loss_fn, jnp.ones(3), jnp.zeros((1,)), max_lr=1e4, **kw
    )
    endless = run(diverge_factor=math.inf)
    assert not np.isfinite(endless.losses[endless.steps - 1])
    stopped = run()
    assert endless.suggested_lr == stopped.suggested_lr < 0.5
    assert endless.bounds == stopped.bounds


def test_a_hyperparameter_whose_range_excludes_zero_is_driven():
    """The check that the name can be set tried 0, outside max_norm's range, and blamed
    a plain Python callable."""
    opt = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.sgd(0.01))
    loss_fn, params, batches = quadratic(4.0)
    found = gradtx.lr_range_test(
        opt, loss_fn, params, batches, hyperparam="max_norm", min_lr=0.01, max_lr=10.0
    )
    assert found.learning_rates[0] == 0.01 and np.isfinite(found.losses[0])
    # and a concrete JAX scalar is a number
    gradtx.lr_range_test(opt, loss_fn, params, batches, hyperparam="max_norm",
                         min_lr=jnp.float32(0.01), max_lr=10.0)  # fmt: skip


def test_the_suggestion_does_not_depend_on_where_the_test_stops(x64):
    # The stop rule and a constant added to the loss change nothing up to the best
    # point; the curve the rules read ends there (the blow-up after it used to be
    # averaged back into the descent, moving the bounds with diverge_factor).
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    sgd = gradtx.sgd(0.1)
    base = gradtx.lr_range_test(sgd, loss_fn, params, batches)
    assert base.steps < 100 and base.bounds[1] < 0.5  # it stopped, past the minimum
    for factor in (1e3, 1e6, math.inf):
        other = gradtx.lr_range_test(sgd, loss_fn, params, batches, diverge_factor=factor)
        assert other.steps > base.steps
        assert (other.suggested_lr, other.bounds) == (base.suggested_lr, base.bounds)
    for shift in (-1.0, -100.0):
        shifted = gradtx.lr_range_test(
            sgd, lambda p, b, c=shift: loss_fn(p, b) + c, params, batches
        )
        assert shifted.suggested_lr == base.suggested_lr
        np.testing.assert_allclose(shifted.bounds, base.bounds, rtol=1e-12)


def test_a_sweep_that_diverges_within_ten_steps_still_suggests(x64):
    # lr grows 12x a step: the loss falls from 6 to 0.23, then blows up at steps 8-9.
    # The blow-up averaged back used to hide the fall (no suggestion, a warning).
    loss_fn, params, _ = quadratic(4.0)
    result = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, params, jnp.zeros((10, 3)),
                                  max_lr=1e100)  # fmt: skip
    assert result.steps == 10 and np.isfinite(result.suggested_lr)
    assert result.bounds[0] < result.suggested_lr <= result.bounds[1] < 0.5  # SGD diverges above


def test_no_suggestion_warnings_say_what_went_wrong():
    with pytest.warns(UserWarning, match="the loss at the initial params is not finite"):
        gradtx.lr_range_test(
            gradtx.sgd(0.1), lambda p, b: jnp.sum(p) * jnp.nan, jnp.ones(2), jnp.zeros((1,))
        )
    with pytest.warns(UserWarning, match=r"diverged after 2 of 100 steps.*lower max_lr"):
        gradtx.lr_range_test(  # curvature 4e30: the first step already diverges
            gradtx.sgd(0.1), lambda p, b: 2e30 * jnp.sum(p**2), jnp.ones(2), jnp.zeros((1,))
        )


@pytest.mark.parametrize(
    "opt, kwargs, error, message",
    [
        (gradtx.adam(0.1), {"hyperparam": "b1", "max_lr": 1.5}, ValueError,
         r"\(max_lr=1.5\): b1 cannot take it: .*b1 must be in \[0, 1\)"),
        (gradtx.sgd(0.1), {"max_lr": 1e39}, ValueError,
         r"\(max_lr=1e\+39\): learning_rate cannot take it: .*overflows to inf"),
        # sweep values beyond float64 (inf) are not looked at for fractions first
        (gradtx.sgd(0.1), {"min_lr": 1e-10, "max_lr": 1e300, "num_steps": 4}, ValueError,
         r"\(max_lr=1e\+300\): learning_rate cannot take it: .*overflows to inf"),
        (gradtx.sgd(0.1), {"vmap_params": 1}, TypeError,
         r"\(vmap_params=1\): vmap_params must be a bool"),
        # an integer hyperparameter between whole ends: its steps were truncated silently
        (gradtx.average_params(gradtx.sgd(0.1)),
         {"hyperparam": "every", "min_lr": 1.0, "max_lr": 10.0, "num_steps": 8}, TypeError,
         r"\(a step's value=1.38949.*\): every cannot take it: .*every must be an int"),
    ],
)  # fmt: skip
def test_the_sweep_must_stay_in_the_hyperparameters_range(opt, kwargs, error, message):
    loss_fn, params, batches = quadratic(4.0)
    with pytest.raises(error, match=r"^gradtx.lr_range_test" + message):
        gradtx.lr_range_test(opt, loss_fn, params, batches, **kwargs)


def test_no_descent_warns_and_the_helpers_say_why():
    with pytest.warns(UserWarning, match="never fell"):
        result = gradtx.lr_range_test(
            gradtx.sgd(0.1), lambda p, b: jnp.sum(p) * 0 + 1.0, jnp.ones(2), jnp.zeros((1,))
        )
    assert math.isnan(result.suggested_lr) and all(math.isnan(b) for b in result.bounds)
    with pytest.raises(ValueError, match="LRRangeTest.one_cycle: the test found no bounds"):
        result.one_cycle(100)


def test_schedule_helpers_use_the_bounds():
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    result = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, params, batches)
    base, high = result.bounds
    cycle = result.one_cycle(1000)
    assert isinstance(cycle, schedules.OneCycle)
    np.testing.assert_allclose([float(cycle(0)), float(cycle(299))], [base, high], rtol=1e-5)
    assert float(result.one_cycle(1000, div_factor=10.0)(0)) == pytest.approx(high / 10, rel=1e-5)
    wave = result.cyclical(50, mode="triangular2")
    np.testing.assert_allclose([float(wave(0)), float(wave(50))], [base, high], rtol=1e-5)
    opt = gradtx.sgd(cycle, momentum=0.9)  # trains with it
    stored = float(gradtx.get_hyperparams(opt.init(params))["learning_rate"])  # float32
    assert stored == pytest.approx(base, rel=1e-5)
    assert "LRRangeTest(steps=" in repr(result)


def test_plot_marks_the_suggestion_on_a_log_axis(tmp_path):
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    result = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, params, batches)
    fig = result.plot(title="quadratic")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("steepest descent") for label in labels)
    assert any(label.startswith("bounds") for label in labels)
    fig.savefig(tmp_path / "one.png")
    starts = 1.0 + jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    band = gradtx.lr_range_test(gradtx.sgd(0.1), loss_fn, starts, batches, vmap_params=True)
    fig2 = band.plot()
    labels = [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
    assert "smoothed, 3 runs (min to max)" in labels
    fig2.savefig(tmp_path / "band.png")
    assert (tmp_path / "band.png").stat().st_size > 10_000
    matplotlib.pyplot.close("all")


def test_one_groups_schedule_is_driven_and_the_others_run_on(x64):
    """``hyperparam="a/learning_rate"`` replaces group a's schedule only: group b's
    schedule, under the same name, runs as usual.  Every learning_rate schedule was
    replaced, which set_hyperparams refused to drive."""
    loss_fn, params, batches = quadratic(4.0, noise=0.1)
    params = {"a": params, "b": params}

    def loss2(p, b):
        return loss_fn(p["a"], b) + loss_fn(p["b"], b)

    b_lr = schedules.linear(0.2, 0.0, 20)
    opt = gradtx.partition(
        {"a": gradtx.sgd(schedules.cosine_decay(0.1, 100)), "b": gradtx.sgd(b_lr)},
        {"a": "a", "b": "b"},
    )
    result = gradtx.lr_range_test(
        opt, loss2, params, batches, num_steps=30, hyperparam="a/learning_rate"
    )
    # by hand: group a at each planned rate, group b on its schedule
    by_hand_opt = gradtx.partition(
        {"a": gradtx.sgd(0.1), "b": gradtx.sgd(b_lr)}, {"a": "a", "b": "b"}
    )
    state, p, by_hand = by_hand_opt.init(params), params, []
    for i, lr in enumerate(result.learning_rates[: result.steps]):
        state = gradtx.set_hyperparams(state, {"a/learning_rate": lr})
        loss, grads = jax.value_and_grad(loss2)(p, batches[i])
        updates, state = by_hand_opt.update(grads, state, p)
        p = gradtx.apply_updates(p, updates)
        by_hand.append(float(loss))
    assert result.steps > 20
    np.testing.assert_allclose(result.losses[: result.steps], by_hand, rtol=1e-12)


def test_a_loss_that_is_not_one_number_names_the_call():
    # It failed inside jax.grad ("Gradient only defined for scalar-output functions").
    with pytest.raises(ValueError, match=r"^gradtx.lr_range_test: loss_fn\(params, batch\) "
                                         r"must return one real number, got float32\[3\]"):  # fmt: skip
        gradtx.lr_range_test(gradtx.sgd(0.1), lambda p, b: p**2, jnp.ones(3), jnp.zeros((1,)))


def test_the_helpers_refuse_what_they_cannot_draw_or_pass_on():
    """plot(log_loss=True) of negative losses failed in matplotlib, and one_cycle with
    peak_value in TypeError's words ('multiple values')."""
    loss_fn, params, batches = quadratic(4.0)
    found = gradtx.lr_range_test(
        gradtx.sgd(0.1), lambda p, b: loss_fn(p, b) - 100.0, params, batches
    )
    with pytest.raises(ValueError, match=r"plot\(log_loss=True\): the smoothed losses are not"):
        found.plot(log_loss=True)
    with pytest.raises(TypeError, match="one_cycle: peak_value is the test's max_lr"):
        found.one_cycle(1000, peak_value=0.1)


def test_a_loss_unbounded_below_gives_no_suggestion_and_a_min_lr_out_of_range_is_named():
    """Cut at its first non-finite point, a curve falling to -inf read the divergence as
    descent; a min_lr outside the range blamed a plain Python callable."""
    from gradtx._lr_sweep import suggest_rates

    lrs = np.geomspace(1e-3, 1.0, 8)
    assert math.isnan(suggest_rates(lrs, np.array([1, 0.9, 0.8, 0.7, 0.6, 0.5, -1e30, -np.inf]))[0])
    assert math.isfinite(suggest_rates(lrs, np.array([1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.7, np.inf]))[0])
    _, _, batches = quadratic(4.0)
    with pytest.raises(ValueError, match=r"\(min_lr=0.5\): d cannot take it: .*d must be in \[1"):
        gradtx.lr_range_test(gradtx.adafactor(0.01), lambda p, b: jnp.sum(p**2), jnp.ones((3, 3)),
                             batches, hyperparam="d", min_lr=0.5, max_lr=2.0)  # fmt: skip


def test_complex_params_descend_as_their_real_and_imaginary_parts_do():
    # The finder handed jax.grad's gradient to the optimizer, not its conjugate (the
    # convention gradtx's updates take): the loss rose to NaN, suggested_lr NaN.
    target = jnp.asarray([1 + 2j, -0.5 + 1j, 2 - 1j, 0.3j], jnp.complex64)
    pairs = jnp.stack([target.real, target.imag], -1)
    batches = jnp.ones((40, 1))

    def complex_loss(p, b):
        return jnp.sum(jnp.abs(p - target) ** 2)

    def real_loss(p, b):
        return jnp.sum((p - pairs) ** 2)

    kwargs = {"min_lr": 1e-3, "max_lr": 1.0, "num_steps": 40}
    on_complex = gradtx.lr_range_test(
        gradtx.sgd(0.1), complex_loss, jnp.zeros(4, jnp.complex64), batches, **kwargs
    )
    on_pairs = gradtx.lr_range_test(
        gradtx.sgd(0.1), real_loss, jnp.zeros((4, 2)), batches, **kwargs
    )
    np.testing.assert_allclose(on_complex.losses, on_pairs.losses, rtol=1e-5)
    assert on_complex.suggested_lr == on_pairs.suggested_lr and math.isfinite(on_pairs.suggested_lr)
