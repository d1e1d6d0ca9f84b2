"""Differentiating through gradtx: derivatives of a loss after optimizer steps.

Meta-learning and hyperparameter tuning take ``jax.grad`` through ``update``.
Norms of a leaf that is exactly zero (a zero-initialised bias, a first step
with no distance travelled yet) used ``jnp.sqrt``, whose infinite derivative
at 0 times the zero that follows made NaN where the true derivative is
finite; ``_numerics.safe_sqrt`` keeps the values and gives 0 there.  The same held
for the roots of statistics (Adam's denominator) at a coordinate whose
gradient is always 0: NaN for 29 registry cases before.  References:
optax's same optimizer (its ``safe_norm``) and central finite differences.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.registry import REGISTRY


def _p0():
    return {"w": jnp.array([0.3, -0.7]), "b": jnp.zeros(1)}  # "b": a zero-initialised bias


def _loss(p):
    return (jnp.tanh(p["w"] @ jnp.array([1.0, 2.0]) + p["b"][0]) - 0.3) ** 2


def _after(opt, p, steps=1):
    state = opt.init(p)
    for _ in range(steps):
        u, state = opt.update(jax.grad(_loss)(p), state, p)
        p = jax.tree.map(jnp.add, p, u)
    return _loss(p)


PAIRS = {
    "lamb": (lambda: gradtx.lamb(0.05), lambda: optax.lamb(0.05)),
    "lars": (lambda: gradtx.lars(0.05), lambda: optax.lars(0.05)),
    "fromage": (lambda: gradtx.fromage(0.05), lambda: optax.fromage(0.05)),
    "scale_by_trust_ratio": (gradtx.scale_by_trust_ratio, optax.scale_by_trust_ratio),
    "adafactor": (
        lambda: gradtx.adafactor(0.1, convention="optax"),
        lambda: optax.adafactor(0.1),
    ),
    "scale_by_param_rms": (gradtx.scale_by_param_rms, optax.scale_by_param_block_rms),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_zero_leaf_has_optaxs_finite_derivative(x64, name):
    ours, theirs = PAIRS[name]
    p0 = _p0()
    got = jax.grad(lambda p: _after(ours(), p))(p0)
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        want = jax.grad(lambda p: _after(theirs(), p))(p0)
    assert np.all(np.isfinite(got["b"])), got
    for k in p0:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-14)


def _central(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_radams_derivative_in_b2_across_the_untractable_steps(x64):
    """The rectifier's sqrt(max(ratio, 0)) is evaluated (and not selected) while
    rho_t <= 5; its derivative there was NaN."""

    def f(b2):
        return _after(gradtx.radam(0.05, b2=b2), _p0(), steps=8)

    np.testing.assert_allclose(jax.grad(f)(0.9), _central(f, 0.9), rtol=1e-6)


def _one_sided(f, x, h=1e-5):
    return (-3 * f(x) + 4 * f(x + h) - f(x + 2 * h)) / (2 * h)


@pytest.mark.parametrize("which", ["b1", "b2"])
def test_adams_derivative_in_a_decay_rate_of_zero(x64, which):
    """1 - b^t is formed through log1p(b - 1), whose derivative is 0 * inf = NaN at
    b = 0 (Adam without momentum); the bias correction declares its own."""

    def f(b):
        return _after(gradtx.adam(0.05, **{which: b}), _p0(), steps=4)

    got = jax.grad(f)(0.0)
    assert np.isfinite(got) and got != 0
    np.testing.assert_allclose(got, _one_sided(f, 0.0), rtol=1e-6)


def test_radams_derivative_in_b2_of_zero(x64):
    """Below b2 = 2/3 rho_inf < 5: no step is rectified and the loss does not depend
    on b2 through the rectifier.  Its 1/ln(b2) terms made the derivative NaN at 0."""

    def f(b2):
        return _after(gradtx.radam(0.05, b2=b2), _p0(), steps=8)

    for b2 in (0.0, 1e-30, 0.3):
        np.testing.assert_allclose(jax.grad(f)(b2), _one_sided(f, b2), atol=1e-9)


def test_dogs_derivative_in_the_initial_params(x64):
    """DoG's first step divides by max(r_eps, ‖x_1 - x_0‖), a norm of zero at step 1
    (optax's contrib.dog is NaN here too)."""
    direction = jnp.array([0.6, -0.8])

    def f(s):
        p0 = _p0()
        p = {"w": p0["w"] + s * direction, "b": p0["b"]}
        return _after(gradtx.dog(), p, steps=3)

    got = jax.grad(f)(0.0)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, _central(f, 0.0), rtol=1e-5)


def test_safe_sqrt_is_sqrt_bit_for_bit():
    x = jnp.array([0.0, -0.0, 1e-45, 1e-30, 2.0, jnp.inf, jnp.nan, -1.0], jnp.float32)
    got, want = np.asarray(gradtx._numerics.safe_sqrt(x)), np.asarray(jnp.sqrt(x))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert float(jax.grad(gradtx._numerics.safe_sqrt)(0.0)) == 0.0


# A coordinate whose gradient is 0 at every step (an input feature that is always 0,
# padding): its statistics stay exactly 0, and a bare sqrt or cbrt of them gave
# 0 · inf = NaN for the whole derivative (optax's adam and madgrad too).
def _dead_loss(p):
    x = jnp.array([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0], [2.0, 0.3, 0.0]])  # feature 3 always 0
    return jnp.mean((x @ p - jnp.array([1.0, 0.0, -1.0])) ** 2)


def _dead_after(case, lr, steps=3):
    opt = case.make(lr)
    p = jnp.array([0.1, -0.2, 0.3])
    state = opt.init(p)
    for _ in range(steps):
        u, state = opt.update(jax.grad(_dead_loss)(p), state, p, **case.keywords(_dead_loss, p))
        p = p + u
    return _dead_loss(p)


# L-BFGS's loop (lax.while_loop) has no reverse-mode derivative; DP-SGD's registry case
# takes per-example gradients.
_DIFFERENTIABLE = [c for c in REGISTRY if c.name not in ("lbfgs", "dpsgd")]


@pytest.mark.parametrize("case", _DIFFERENTIABLE, ids=[c.id for c in _DIFFERENTIABLE])
def test_a_dead_coordinate_leaves_the_learning_rate_derivative_finite(x64, case):
    lr = jnp.asarray(case.lr)
    got = jax.grad(lambda lr: _dead_after(case, lr))(lr)
    _, forward = jax.jvp(lambda lr: _dead_after(case, lr), (lr,), (jnp.ones_like(lr),))
    assert np.isfinite(got) and np.isfinite(forward), (case.id, got, forward)
    # float32 state (one case) rounds; COCOB does not depend on lr here (~1e-16)
    np.testing.assert_allclose(forward, got, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        gradtx.adam,
        gradtx.rmsprop,
        gradtx.adagrad,
        gradtx.prodigy,
        gradtx.madgrad,
        lambda lr: gradtx.mechanize(gradtx.adam(lr)),
    ],
    ids=["adam", "rmsprop", "adagrad", "prodigy", "madgrad", "mechanize"],
)
def test_a_dead_coordinate_has_the_finite_difference_derivative(x64, make):
    case = dataclasses.replace(REGISTRY[0], make=make, needs=())
    lr, h = 0.05, 1e-6
    got = jax.grad(lambda lr: _dead_after(case, lr))(lr)
    want = (_dead_after(case, lr + h) - _dead_after(case, lr - h)) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_second_derivatives_through_a_dead_coordinate_are_finite(x64):
    # The roots' rule at 0 is itself differentiated by grad-of-grad and hessian: the
    # rule must not use jnp.sqrt (inf at 0 again).  Against finite differences of the
    # first derivative.
    for make in (gradtx.adam, gradtx.adagrad, gradtx.rmsprop):
        case = dataclasses.replace(REGISTRY[0], make=make, needs=())

        def first(lr, case=case):
            return jax.grad(lambda lr: _dead_after(case, lr))(lr)

        lr, h = 0.05, 1e-6
        got = jax.grad(first)(lr)
        want = (first(lr + h) - first(lr - h)) / (2 * h)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert np.isfinite(jax.hessian(lambda lr, case=case: _dead_after(case, lr))(lr))
    for root in (gradtx._numerics.safe_sqrt, gradtx._numerics.safe_cbrt):
        assert float(jax.grad(jax.grad(root))(0.0)) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e200, 1e-200])
def test_the_overflow_proof_norm_has_the_norms_derivative(x64, scale):
    # Mechanize's norms: past float64's range (or below its normals) the sum of squares
    # is taken scaled by the largest entry, u ‖x / u‖; u's own derivative must not
    # count (the product does not depend on u), or the largest entry's slope is off
    # by ‖x‖ / u (1e200) or NaN (1e-200).
    from gradtx.transforms._sums import tree_norm_scaled

    x = [jnp.array([3.0, -4.0]) * scale, jnp.array([[12.0]]) * scale]
    got = jax.grad(lambda x: tree_norm_scaled(x, jnp.float64))(x)
    for g, leaf in zip(got, x):
        np.testing.assert_allclose(g, leaf / (13 * scale), rtol=1e-14)


def _fd(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_adabound_without_an_upper_bound_has_the_learning_rate_derivative(x64):
    # gamma = 0 selects an infinite upper bound; the 1/(gamma t) of the branch not
    # taken must not reach the derivative (it made d/dlr NaN).
    def after(lr):
        # a traced learning rate does not tell the initial one: base_lr follows it here
        return _after(gradtx.adabound(lr, final_lr=0.1, gamma=0.0, base_lr=lr), _p0(), steps=3)

    got = jax.grad(after)(0.05)
    np.testing.assert_allclose(got, _fd(after, 0.05), rtol=1e-6)


def test_a_leaf_whose_update_is_zero_keeps_the_trust_ratios_derivatives(x64):
    # A leaf the loss reads through a dead unit (here: times 0) gets a zero update, so
    # its trust ratio is 1 by rule; c ‖θ‖ / ‖u‖ of the branch not taken must not make
    # its derivatives NaN (optax's LARS and LAMB give NaN there).
    x = jnp.array([1.0, 2.0])

    def loss(p):
        return (jnp.tanh(p["w"] @ x + 0.0 * jnp.sum(p["v"])) - 0.3) ** 2

    def after(opt, p):
        state = opt.init(p)
        for _ in range(2):
            u, state = opt.update(jax.grad(loss)(p), state, p)
            p = jax.tree.map(jnp.add, p, u)
        return loss(p) + jnp.sum(p["v"] ** 2)  # the final loss reads v directly

    p0 = {"w": jnp.array([0.3, -0.7]), "v": jnp.array([0.5, -1.5])}
    for opt in (gradtx.lars(0.1), gradtx.lamb(0.1, weight_decay=0.0)):
        got = jax.grad(lambda p, opt=opt: after(opt, p))(p0)
        np.testing.assert_allclose(got["v"], 2 * p0["v"], rtol=1e-12)  # v never moves
        for i in range(2):
            e = jnp.zeros(2).at[i].set(1.0)
            want = _fd(lambda h, opt=opt: after(opt, {**p0, "w": p0["w"] + h * e}), 0.0)
            np.testing.assert_allclose(got["w"][i], want, rtol=1e-6)

    def in_c(c):
        return after(gradtx.lars(0.1, trust_coefficient=c), p0)

    np.testing.assert_allclose(jax.grad(in_c)(0.001), _fd(in_c, 0.001, 1e-7), rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.radam(0.05, eps=0.0),
        lambda: gradtx.ranger(0.05, eps=0.0),
        lambda: gradtx.swats(0.05, eps=0.0),
        lambda: gradtx.dowg(1.0, eps=0.0),
        lambda: gradtx.chain(gradtx.scale_by_sm3(eps=0.0), gradtx.scale(-0.3)),
        lambda: gradtx.adopt(0.03, eps=0.0),
        lambda: gradtx.adamax(0.03, eps=0.0),
        lambda: gradtx.dadapt_adamw(1.0, eps=0.0),
    ],
    ids=["radam", "ranger", "swats", "dowg", "scale_by_sm3", "adopt", "adamax", "dadapt_adamw"],
)
def test_eps_0_reverse_mode_equals_forward_mode(x64, make):
    """With eps = 0 a coordinate whose gradient is always 0 (or ADOPT's first step) is a
    0/0 the step takes as 0.  Guards that selected on the quotient left x/0 in the
    branch not taken, and jax.grad made 0 * inf = NaN of it where jacfwd was finite."""
    x = jnp.array([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0]])  # the third weight's gradient is 0

    def loss(w):
        return jnp.sum((jnp.tanh(x @ w) - jnp.array([0.3, -0.2])) ** 2)

    def after(w):
        opt = make()
        state = opt.init(w)
        for _ in range(2):
            u, state = opt.update(jax.grad(loss)(w), state, w)
            w = w + u
        return loss(w)

    w0 = jnp.array([0.3, -0.7, 0.2])
    reverse, forward = jax.grad(after)(w0), jax.jacfwd(after)(w0)
    assert np.isfinite(np.asarray(reverse)).all(), reverse
    np.testing.assert_allclose(reverse, forward, rtol=1e-10, atol=1e-14)


def _central_difference(f, x, direction, h=1e-6):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def test_sophias_clipped_first_step_with_eps_0_has_the_finite_difference_derivative(x64):
    """With eps = 0 and no curvature yet, u/0 = ±inf is clipped to ±threshold, a locally
    constant step; the inf tangent times the clip's 0 made grad and jvp NaN."""
    x = jnp.array([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0], [2.0, 0.3, 0.0]])

    def loss(w):
        return jnp.mean((jnp.tanh(x @ w) - jnp.array([1.0, 0.0, -1.0])) ** 2)

    def after(w):
        opt = gradtx.sophia(0.01, eps=0.0)
        state = opt.init(w)
        for _ in range(4):
            u, state = opt.update(jax.grad(loss)(w), state, w, obj_fn=loss)
            w = w + u
        return loss(w)

    w0, d = jnp.array([0.1, -0.2, 0.3]), jnp.array([0.6, -0.8, 0.5])
    want = _central_difference(after, w0, d)
    np.testing.assert_allclose(jax.grad(after)(w0) @ d, want, rtol=1e-7)
    np.testing.assert_allclose(jax.jvp(after, (w0,), (d,))[1], want, rtol=1e-7)


@pytest.mark.parametrize(
    "make, lr",
    [
        (lambda lr: gradtx.adamax(lr, eps=0.0), 0.05),
        (lambda lr: gradtx.adopt(lr, eps=0.0, use_clipping=False), 0.05),
        (lambda lr: gradtx.dadapt_adamw(lr, eps=0.0), 0.5),
    ],
    ids=["adamax", "adopt", "dadapt_adamw"],
)
def test_floored_quotients_have_derivatives_with_eps_0(x64, make, lr):
    """The floored denominators' quotient (``_numerics.quotient``) at a never-moved coordinate:
    JAX's quotient rule multiplied the zero tangent by 1/tiny² = inf, so jax.jvp was NaN
    (D-Adapt's, where jax.grad and finite differences agree); a tangent divided by the
    floor was transposed by jax.grad into a plain division, whose own derivative made
    jax.hessian NaN."""
    x = jnp.array([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0], [2.0, 0.3, 0.0]])  # w[2]'s gradient is 0

    def loss(w):
        return jnp.mean((jnp.tanh(x @ w) - jnp.array([1.0, 0.0, -1.0])) ** 2)

    def after(lr):
        opt, w = make(lr), jnp.array([0.1, -0.2, 0.3])
        state = opt.init(w)
        for _ in range(4):
            u, state = opt.update(jax.grad(loss)(w), state, w)
            w = w + u
        return loss(w)

    forward = jax.jvp(after, (lr,), (1.0,))[1]
    np.testing.assert_allclose(forward, jax.grad(after)(lr), rtol=1e-10)
    np.testing.assert_allclose(forward, _central_difference(after, lr, 1.0, 1e-7), rtol=1e-4)
    want = _central_difference(jax.grad(after), lr, 1.0, 1e-6 * lr)
    for second in (jax.hessian(after), jax.jacfwd(jax.jacfwd(after)), jax.grad(jax.grad(after))):
        np.testing.assert_allclose(second(lr), want, rtol=1e-5)


def test_lbfgs_first_scaling_of_a_zero_gradient_has_a_finite_tangent(x64):
    """optax's rule scales the first step by min(1, 1/‖g‖): at g = 0 that is 1, but the
    0/0 tangent of 1/‖g‖ made forward-mode derivatives (L-BFGS's only ones) NaN."""

    def after(w):
        opt = gradtx.chain(gradtx.scale_by_lbfgs(), gradtx.scale(-0.1))
        state = opt.init(w)
        for k in range(3):
            g = jax.grad(lambda v: jnp.sum(jnp.sin(v) * v))(w) * float(k > 0)  # zero at first
            u, state = opt.update(g, state, w)
            w = w + u
        return jnp.sum(w**2)

    w0, d = jnp.array([0.3, -0.7]), jnp.array([1.0, 0.5])
    want = _central_difference(after, w0, d)
    np.testing.assert_allclose(jax.jvp(after, (w0,), (d,))[1], want, rtol=1e-7)
