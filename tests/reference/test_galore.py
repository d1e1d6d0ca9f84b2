"""GaLore against optax.contrib.galore, step by step in float64: bases renewed every few
steps, both projection sides, a 3-D leaf as a matrix, default and custom inner optimizers."""

import jax
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax

# A tall, a wide and a 3-D leaf (projected as (2, 3·2) with dimension numbers), and a
# vector that Adam takes whole.
SHAPES = {"tall": (5, 3), "wide": (2, 6), "k": (2, 3, 2), "b": (4,)}


def _h(seed):
    rng = np.random.default_rng(970 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        rank=int(rng.integers(1, 3)),
        gap=int(rng.integers(2, 6)),
        scale=float(rng.uniform(0.5, 2.0)),
        weight_decay=float(rng.uniform(1e-3, 0.1)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_galore_matches_optax(x64, seed):
    h = _h(seed)
    args = h["lr"], h["rank"], h["gap"], h["scale"]
    kwargs = dict(weight_decay=h["weight_decay"], mask={"tall": True, "wide": True, "k": False,
                                                        "b": False})  # fmt: skip
    assert_matches_optax(
        gradtx.galore(*args, **kwargs), optax.contrib.galore(*args, **kwargs), seed, shapes=SHAPES
    )
    assert_matches_optax(  # optax defaults: rank 128 keeps every direction
        gradtx.galore(h["lr"]), optax.contrib.galore(h["lr"]), seed, shapes=SHAPES
    )


def test_galore_dimension_numbers_and_inner_optimizers(x64):
    """A 3-D leaf projected through dimension numbers (gradtx's and optax's spelling),
    with optax's scale_by_adam and an equal gradtx chain as the inner optimizer."""
    h = _h(2)
    theirs = optax.contrib.galore(
        h["lr"], h["rank"], h["gap"], base_optimizer=optax.scale_by_adam(h["b1"], h["b2"]),
        weight_dimension_numbers={"tall": optax.contrib.GaLoreDimensionNumbers(),
                                  "wide": None, "b": None,
                                  "k": optax.contrib.GaLoreDimensionNumbers(0, (1, 2))},
    )  # fmt: skip
    inner = gradtx.chain(
        gradtx.add_momentum(h["b1"], ema=True),
        gradtx.bias_correct(h["b1"]),
        gradtx.scale_by_rms(h["b2"], 1e-8, bias_correction=True),
    )
    numbers = {"tall": gradtx.GaLoreDimensionNumbers(), "wide": None, "b": None,
               "k": gradtx.GaLoreDimensionNumbers(0, (1, 2))}  # fmt: skip
    for base in (inner, optax.scale_by_adam(h["b1"], h["b2"])):
        ours = gradtx.galore(h["lr"], h["rank"], h["gap"], base_optimizer=base,
                             weight_dimension_numbers=numbers)  # fmt: skip
        with jax.numpy_dtype_promotion("standard"):  # optax's scale_by_adam is not strict-clean
            assert_matches_optax(ours, theirs, 2, shapes=SHAPES)


def test_galore_projects_to_low_rank_and_renews_the_basis(x64):
    """Adam's moments live on (r, n) projections, each step has rank <= r, and the basis
    changes only at multiples of the gap (so the comparisons above are not vacuous)."""
    opt = gradtx.galore(0.1, rank=1, update_proj_gap=3, svd_dtype=None)
    rng = np.random.default_rng(0)
    params = {"w": jax.numpy.asarray(rng.normal(size=(5, 3)))}
    state = opt.init(params)
    mu = jax.tree.leaves(state.inner_state[0].base_state)
    assert {x.shape for x in mu if x.ndim == 2} == {(1, 3)}
    bases = []
    for _ in range(7):
        g = {"w": jax.numpy.asarray(rng.normal(size=(5, 3)))}
        updates, state = opt.update(g, state, params)
        assert np.linalg.matrix_rank(np.asarray(updates["w"]), tol=1e-9) == 1
        bases.append(np.asarray(state.inner_state[0].projector["w"]))
    same = [np.allclose(a, b) for a, b in zip(bases, bases[1:])]
    assert same == [True, True, False, True, True, False]


def test_galore_errors_name_the_call():
    with pytest.raises(ValueError, match=r"gradtx.galore\(rank=0\)"):
        gradtx.galore(0.1, rank=0)
    with pytest.raises(TypeError, match=r"gradtx.galore\(base_optimizer=...\)"):
        gradtx.galore(0.1, base_optimizer="adam")
    bad = gradtx.galore(0.1, weight_dimension_numbers=gradtx.GaLoreDimensionNumbers(0, 0))
    with pytest.raises(ValueError, match="gradtx.galore: reduction axes .* must split"):
        bad.init({"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(TypeError, match="gradtx.galore: complex params are not supported"):
        gradtx.galore(0.1).init({"w": np.zeros((2, 3), np.complex64)})
    for wrong in (float("nan"), "rows", True, 3):
        with pytest.raises(TypeError, match=r"gradtx.galore\(weight_dimension_numbers=...\)"):
            gradtx.galore(0.1, weight_dimension_numbers=wrong)
    by_function = gradtx.galore(0.1, weight_dimension_numbers=lambda params: {"w": "rows"})
    with pytest.raises(TypeError, match="expected GaLoreDimensionNumbers .* got 'rows'"):
        by_function.init({"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(TypeError, match=r"pass static_args=\('svd_dtype',\)"):
        injected = optax.inject_hyperparams(gradtx.galore, static_args=("rank", "update_proj_gap"))
        injected(0.1).init({"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="cannot run inside gradtx.flatten"):
        gradtx.flatten(gradtx.galore(0.1)).init({"w": np.zeros((2, 3), np.float32)})


def test_dimension_numbers_take_integer_axes():
    # A float axis passed construction, then init failed with "'float' object is not iterable".
    with pytest.raises(TypeError, match=r"weight_dimension_numbers=.*axes must be ints"):
        gradtx.galore(1e-3, weight_dimension_numbers=gradtx.GaLoreDimensionNumbers(0.5, 1))


@pytest.mark.parametrize("make", [gradtx.galore, lambda lr, **kw: gradtx.scale_by_galore(**kw)])
def test_a_16_bit_svd_dtype_is_refused_at_construction(make):
    # XLA's SVD has no 16-bit kernel: the first update raised NotImplementedError.
    for dtype in ("bfloat16", "float16"):
        with pytest.raises(ValueError, match=rf"svd_dtype={dtype}\): svd_dtype must be float32"):
            make(1e-2, rank=2, svd_dtype=dtype)
