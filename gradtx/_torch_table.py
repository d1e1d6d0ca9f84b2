"""Which ``torch.optim`` class each gradtx optimizer is, key by key.

One ``Entry`` per gradtx optimizer (``TABLE``): the torch class, and for every
key of torch's param group and per-parameter state the gradtx hyperparameter,
option or state field it is.  ``gradtx.torch_state`` reads only this table,
so covering another optimizer is one entry, and a reader checks an entry
against torch's source line by line.  Three hooks at the end convert the
state torch keeps in another form: Rprop's ``base``, ASGD's ``eta``/``mu``
and L-BFGS's history lists.

Param-group keys that choose how torch runs the same arithmetic
(``foreach``, ``fused``, ``capturable``, ``differentiable``) are not state:
``to_torch_state_dict`` writes torch's defaults for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx.transforms.adadelta import ScaleByAdadeltaState
from gradtx.transforms.averaging import PolyakAverageState
from gradtx.transforms.factored import ScaleByFactoredRmsState
from gradtx.transforms.infinity_norm import ScaleByInfinityNormState
from gradtx.transforms.momentum import AddMomentumState
from gradtx.transforms.momentum import AddNesterovMomentumState
from gradtx.transforms.rectify import RectifyState
from gradtx.transforms.rms import ScaleByRmsState
from gradtx.transforms.rprop import ScaleByRpropState
from gradtx.transforms.rprop import _step_size_ratio
from gradtx.transforms.rss import ScaleByRssState


def numpy_of(x: Any) -> np.ndarray:
    """A torch tensor (read without importing torch), JAX array or number as NumPy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        # A copy: .numpy() shares the tensor's memory, which torch's next step overwrites
        # in place, and jnp.asarray would keep sharing it on CPU.
        return np.array((x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy())
    return np.asarray(x)


# ------------------------------------------------------- hyperparameter codecs


class Scalar(NamedTuple):
    """A torch number <-> the gradtx hyperparameter ``name``."""

    name: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    def to_gradtx(self, value: Any) -> dict[str, Any]:
        return {self.name: float(numpy_of(value))}

    def to_torch(self, values: Mapping[str, Any]) -> Any:
        return float(values[self.name])


class Pair(NamedTuple):
    """A torch pair (``betas``, ``etas``) <-> two gradtx hyperparameters."""

    first: str
    second: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.first, self.second)

    def to_gradtx(self, value: Any) -> dict[str, Any]:
        return {self.first: float(numpy_of(value[0])), self.second: float(numpy_of(value[1]))}

    def to_torch(self, values: Mapping[str, Any]) -> Any:
        return (float(values[self.first]), float(values[self.second]))


class Vector(NamedTuple):
    """A torch tuple of numbers (Muon's ``ns_coefficients``) <-> one 1-D hyperparameter."""

    name: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    def to_gradtx(self, value: Any) -> dict[str, Any]:
        return {self.name: np.asarray([float(numpy_of(v)) for v in value])}

    def to_torch(self, values: Mapping[str, Any]) -> Any:
        return tuple(float(v) for v in np.ravel(values[self.name]))


class EpsPair(Vector):
    """Adafactor's ``(eps1 or None, eps2)`` <-> gradtx's stored ``(eps2,)`` or ``(eps1, eps2)``."""

    def to_gradtx(self, value: Any) -> dict[str, Any]:
        return super().to_gradtx([v for v in value if v is not None])

    def to_torch(self, values: Mapping[str, Any]) -> Any:
        stored = super().to_torch(values)
        return (None, *stored) if len(stored) == 1 else stored


Codec = Scalar | Pair | Vector


class Buffer(NamedTuple):
    """A per-parameter torch state key <-> a field of a gradtx stage's state.

    ``field`` is a tree like the params, or with ``scalar`` one number torch
    repeats in every parameter's state.  ``ndim``: which parameters torch
    keeps it for (``">1"``, ``"<=1"``; ``None``: all).  ``filled``: a bool
    field of the same state that is ``True`` once torch would have the buffer
    (SGD's with dampening, whose first step copies the gradient undamped).
    """

    state: type
    field: str
    ndim: str | None = None
    scalar: bool = False
    filled: str | None = None

    def applies(self, ndim: int) -> bool:
        return self.ndim is None or (ndim > 1) == (self.ndim == ">1")


class Entry(NamedTuple):
    """How one gradtx optimizer maps onto one ``torch.optim`` class.

    Attributes:
      torch_class: the class name in ``torch.optim``.
      hyperparams: torch param-group key -> the gradtx hyperparameter(s).
      flags: torch param-group key -> the gradtx option of the same meaning
        (``amsgrad``, ``ns_steps``); the two must agree.
      stages: gradtx hyperparameter that may be left out (``None``) -> the
        torch value meaning "no such stage" (``weight_decay=0``).
      strict: stages whose presence must agree both ways (Adafactor's ``d``).
      inert: stage -> the stage without which torch ignores it (SGD's dampening
        without momentum): its value is not checked where neither side has that
        stage (a paused one, torch's momentum of 0, may resume).
        Other stages present in gradtx take torch's value, which is exact
        (``weight_decay=0`` adds zero; SGD's and RMSprop's momentum buffer
        pauses at a momentum of 0, as torch's).
      buffers: torch per-parameter state key -> the gradtx state field.
      step: torch keeps a per-parameter ``step`` (the gradtx ``count``).
      int_step: that ``step`` is a Python int (SparseAdam), not a tensor: one in
        torch's default float32 would round the bias corrections after a load.
      eager: torch builds the state with the optimizer (Adagrad).
      implied: options the gradtx factory fixes (``adamw``: decoupled decay).
      free: gradtx arguments torch has no counterpart of that are not its
        rule (storage and iteration dtypes).  Every other argument must be
        what the factory makes of its default (or one of ``accepted``).
      accepted: further values of such arguments that are torch's rule too.
      resolve: gradtx option -> the value torch stores for gradtx's ``None``.
      synonyms: torch flag key -> {value: the value it means} (Muon's
        ``adjust_lr_fn=None`` is ``"original"``), applied to both sides.
      hook: the key of ``HOOKS`` for state torch keeps in another form.
      hook_keys: the per-parameter state keys that hook reads.
      late: gradtx hyperparameter -> why torch's param group holds its value for
        the step after next, not the next (ASGD's next step uses the ``eta`` its
        last one computed from the lr of then); it is compared and written at
        the step count + 1, and the hook checks and writes the next step's.
    """

    torch_class: str
    hyperparams: Mapping[str, Codec]
    flags: Mapping[str, str] = {}
    stages: Mapping[str, float] = {}
    strict: tuple[str, ...] = ()
    inert: Mapping[str, str] = {}
    buffers: Mapping[str, Buffer] = {}
    step: bool = True
    int_step: bool = False
    eager: bool = False
    implied: Mapping[str, Any] = {}
    free: tuple[str, ...] = ()
    accepted: Mapping[str, tuple[Any, ...]] = {}
    resolve: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {}
    synonyms: Mapping[str, Mapping[Any, Any]] = {}
    hook: str | None = None
    hook_keys: tuple[str, ...] = ()
    late: Mapping[str, str] = {}


LR, EPS, WD = Scalar("learning_rate"), Scalar("eps"), Scalar("weight_decay")
_LBFGS_HISTORY = ("t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")
"""The keys torch's L-BFGS state holds beside its direction ``d`` once it has stepped."""
BETAS = Pair("b1", "b2")
NO_WD = {"weight_decay": 0.0}
MAXIMIZE = {"maximize": "maximize"}
DECOUPLED = {"decoupled_weight_decay": "decoupled_weight_decay"}
MOMENTS = {"exp_avg": Buffer(AddMomentumState, "mu"), "exp_avg_sq": Buffer(ScaleByRmsState, "nu")}
ADAM = Entry(
    "Adam", {"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD},
    flags={"amsgrad": "amsgrad", **DECOUPLED, **MAXIMIZE}, stages=NO_WD,
    buffers={**MOMENTS, "max_exp_avg_sq": Buffer(ScaleByRmsState, "nu_max")},
    free=("mu_dtype", "nu_dtype"), accepted={"max_of": ("v",)},
)  # fmt: skip

TABLE: dict[str, Entry] = {
    "sgd": Entry(
        "SGD", {"lr": LR, "momentum": Scalar("momentum"), "dampening": Scalar("dampening"),
                "weight_decay": WD},
        flags={"nesterov": "nesterov", **MAXIMIZE},
        stages={"momentum": 0.0, "dampening": 0.0, **NO_WD}, inert={"dampening": "momentum"},
        buffers={"momentum_buffer": Buffer(AddMomentumState, "mu", filled="started")},
        step=False, free=("accumulator_dtype",),
    ),
    "adam": ADAM,
    "adamw": ADAM._replace(torch_class="AdamW", implied={"decoupled_weight_decay": True}),
    "amsgrad": ADAM._replace(implied={"amsgrad": True, "decoupled_weight_decay": False}),
    "adagrad": Entry(
        "Adagrad", {"lr": LR, "lr_decay": Scalar("lr_decay"), "weight_decay": WD,
                    "initial_accumulator_value": Scalar("initial_accumulator_value"), "eps": EPS},
        flags=MAXIMIZE, stages=NO_WD, buffers={"sum": Buffer(ScaleByRssState, "sum_of_squares")},
        eager=True, accepted={"eps_in_sqrt": (False,)},
    ),
    "adadelta": Entry(
        "Adadelta", {"lr": LR, "rho": Scalar("rho"), "eps": EPS, "weight_decay": WD},
        flags=MAXIMIZE, stages=NO_WD,
        buffers={"square_avg": Buffer(ScaleByAdadeltaState, "e_g2"),
                 "acc_delta": Buffer(ScaleByAdadeltaState, "e_dx2")},
        free=("convention",),  # adadelta's conventions are one rule
    ),
    "rmsprop": Entry(
        "RMSprop", {"lr": LR, "momentum": Scalar("momentum"), "alpha": Scalar("decay"),
                    "eps": EPS, "weight_decay": WD},
        flags={"centered": "centered", **MAXIMIZE},
        stages={"momentum": 0.0, **NO_WD},
        buffers={"square_avg": Buffer(ScaleByRmsState, "nu"),
                 "momentum_buffer": Buffer(AddMomentumState, "mu"),
                 "grad_avg": Buffer(ScaleByRmsState, "mean")},
        accepted={"lr_in_momentum": (False,), "eps_in_sqrt": (False,)},
    ),
    "nadam": Entry(
        "NAdam", {"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD,
                  "momentum_decay": Scalar("momentum_decay")},
        flags={**DECOUPLED, **MAXIMIZE}, stages=NO_WD,
        buffers={"exp_avg": Buffer(AddNesterovMomentumState, "mu"),
                 "exp_avg_sq": Buffer(ScaleByRmsState, "nu"),
                 "mu_product": Buffer(AddNesterovMomentumState, "mu_product", scalar=True)},
        free=("mu_dtype", "nu_dtype"),
    ),
    "radam": Entry(
        "RAdam", {"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD},
        flags={**DECOUPLED, **MAXIMIZE}, stages=NO_WD,
        buffers={"exp_avg": Buffer(AddMomentumState, "mu"), "exp_avg_sq": Buffer(RectifyState, "nu")},
    ),
    "adamax": Entry(
        "Adamax", {"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD},
        flags=MAXIMIZE, stages=NO_WD,
        buffers={"exp_avg": Buffer(AddMomentumState, "mu"),
                 "exp_inf": Buffer(ScaleByInfinityNormState, "nu")},
    ),
    "rprop": Entry(
        "Rprop", {"lr": LR, "etas": Pair("eta_minus", "eta_plus"),
                  "step_sizes": Pair("min_step_size", "max_step_size")},
        flags=MAXIMIZE,
        buffers={"prev": Buffer(ScaleByRpropState, "prev"),
                 "step_size": Buffer(ScaleByRpropState, "step_size")},
        hook="rprop",
    ),
    "asgd": Entry(
        "ASGD", {"lr": LR, "lambd": Scalar("lambd"), "alpha": Scalar("alpha"), "t0": Scalar("t0"),
                 "weight_decay": WD},
        flags=MAXIMIZE, stages=NO_WD, buffers={"ax": Buffer(PolyakAverageState, "ax")},
        hook="asgd", hook_keys=("eta", "mu"),
        late={"learning_rate": "torch.optim.ASGD's step uses the eta computed at the end of "
              "the step before, from the lr of then (its first step, the lr), so the group's lr "
              "is the step after next's (at step 0, the first two steps'); a torch scheduler's "
              "rate read one step late is that: lambda k: s(jnp.maximum(k - 1, 0)) "
              "(docs/porting_from_pytorch.md, ASGD)"},
    ),
    "sparse_adam": Entry(
        "SparseAdam", {"lr": LR, "betas": BETAS, "eps": EPS}, flags=MAXIMIZE, buffers=MOMENTS,
        int_step=True,
    ),
    "lbfgs": Entry(
        "LBFGS", {"lr": LR, "tolerance_grad": Scalar("tolerance_grad"),
                  "tolerance_change": Scalar("tolerance_change")},
        flags={"max_iter": "max_iter", "max_eval": "max_eval", "history_size": "history_size",
               "line_search_fn": "line_search_fn"},
        step=False, resolve={"max_eval": lambda a: a["max_iter"] * 5 // 4}, hook="lbfgs",
        hook_keys=("func_evals", "n_iter", "d", *_LBFGS_HISTORY, "al"),
    ),
    "adafactor": Entry(
        "Adafactor", {"lr": LR, "beta2_decay": Scalar("beta2_decay"), "eps": EpsPair("eps"),
                      "d": Scalar("d"), "weight_decay": WD},
        flags=MAXIMIZE, stages={"d": math.inf, **NO_WD}, strict=("d",),
        buffers={"row_var": Buffer(ScaleByFactoredRmsState, "nu_row", ndim=">1"),
                 "col_var": Buffer(ScaleByFactoredRmsState, "nu_col", ndim=">1"),
                 "variance": Buffer(ScaleByFactoredRmsState, "nu", ndim="<=1")},
        free=("dtype_momentum",),
    ),
    "muon": Entry(
        "Muon", {"lr": LR, "weight_decay": WD, "momentum": Scalar("momentum"),
                 "ns_coefficients": Vector("ns_coefficients"), "eps": EPS},
        flags={"nesterov": "nesterov", "ns_steps": "ns_steps", "adjust_lr_fn": "adjust_lr_fn"},
        stages=NO_WD, buffers={"momentum_buffer": Buffer(AddMomentumState, "mu")}, step=False,
        free=("mu_dtype", "ns_dtype"), synonyms={"adjust_lr_fn": {None: "original"}},
    ),
}  # fmt: skip
"""gradtx optimizer name -> its ``torch.optim`` entry."""


# ------------------------------------------------ state torch keeps in another form
#
# ``hook_in(inner, states, current, count, call)`` -> the inner state, from torch's
# per-parameter ``states`` (by index); ``hook_out(inner, out, current, count, convert)``
# fills ``out`` (per-parameter dicts) and returns the inner state to export.
# ``current(name)`` is a hyperparameter's value for the next update.


def map_nodes(tree: Any, cls: type, fn: Callable[[Any], Any]) -> Any:
    """``tree`` with every node of type ``cls`` replaced by ``fn(node)``; containers
    without one are returned as they are (an ``OrderedDict`` of params stays one)."""
    if type(tree) is cls:
        return fn(tree)
    if isinstance(tree, (tuple, list, dict)):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        new = {k: map_nodes(v, cls, fn) for k, v in items}
        if all(
            new[k] is v for k, v in (tree.items() if isinstance(tree, dict) else enumerate(tree))
        ):
            return tree
        if isinstance(tree, dict):
            return type(tree)((k, new[k]) for k in tree)
        values = [new[i] for i in range(len(tree))]
        return type(tree)(*values) if hasattr(tree, "_fields") else type(tree)(values)
    return tree


def find_node(tree: Any, cls: type) -> Any:
    """The first node of type ``cls`` in ``tree`` (``None`` if there is none)."""
    found: list = []
    map_nodes(tree, cls, found.append)
    return found[0] if found else None


def _rprop_in(inner, states, current, count, call):
    """``base``, the learning rate torch's step sizes stand for: its current one.  Where
    torch holds no state (before its first step) the step sizes are set to that rate
    too, as ``init`` would with it, so Δ_0 is torch's lr to the bit.  (A state at step
    0 exists too, left by a ``step`` that raised after torch made it: its step sizes
    are lr, and base is set.)"""
    lr = current("learning_rate")
    if states:
        return map_nodes(inner, ScaleByRpropState, lambda s: s._replace(base=jnp.asarray(lr, s.base.dtype)))  # fmt: skip

    def fresh(s):
        sizes = jax.tree.map(lambda d: jnp.full_like(d, lr), s.step_size)
        return s._replace(step_size=sizes, base=jnp.asarray(lr, s.base.dtype))

    return map_nodes(inner, ScaleByRpropState, fresh)


def _rprop_out(inner, out, current, count, convert):
    """torch ignores a new lr; gradtx's next update rescales by lr / base: do it now."""
    lr = jnp.asarray(current("learning_rate"))

    def rescale(s):
        ratio = _step_size_ratio(lr, s.base)
        return s._replace(step_size=jax.tree.map(lambda d: d * ratio.astype(d.dtype), s.step_size))

    return map_nodes(inner, ScaleByRpropState, rescale)


def _asgd_terms(current, count):
    """torch's ``eta`` and ``mu`` for the next step: functions of the count in gradtx."""
    lr, lambd, alpha, t0 = (float(current(n)) for n in ("learning_rate", "lambd", "alpha", "t0"))
    return {"eta": lr / (1 + lambd * lr * count) ** alpha, "mu": 1 / max(1, count - t0)}


def _asgd_in(inner, states, current, count, call):
    for i, s in states.items():
        for key, want in _asgd_terms(current, count).items():
            if not np.isclose(float(numpy_of(s[key])), want, rtol=1e-6, atol=0):
                raise ValueError(
                    f"{call}: torch's {key}={float(numpy_of(s[key]))} (leaf {i}) is not "
                    f"{want}, gradtx's at step {count} from lr, lambd, alpha and t0: did the "
                    "learning rate change during the torch run? torch's eta follows it one "
                    "step late: under a torch scheduler give gradtx.asgd the schedule read "
                    "one step late, lambda k: s(jnp.maximum(k - 1, 0)) "
                    "(docs/porting_from_pytorch.md, ASGD)"
                )
    return inner


def _asgd_out(inner, out, current, count, convert):
    if count > 0:
        for s in out.values():
            s.update({k: convert.scalar(v) for k, v in _asgd_terms(current, count).items()})
    return inner


def _lbfgs_in(mem, states, current, count, call):
    """torch's lists (oldest pair first) into gradtx's ring buffer, from slot 0."""
    s = states.get(0, {})
    fields = {k: jnp.asarray(int(s[k]), jnp.int32) for k in ("n_iter", "func_evals") if k in s}
    if "d" in s:
        if missing := [key for key in _LBFGS_HISTORY if key not in s]:
            raise ValueError(
                f"{call}: torch's L-BFGS state has 'd' but no {missing}; "
                "LBFGS.state_dict() holds them all once it has stepped"
            )
        d, k = numpy_of(s["d"]), len(s["old_dirs"])
        if d.shape != mem.d.shape:
            raise ValueError(
                f"{call}: torch's d has shape {d.shape}; the flat params {mem.d.shape}"
            )

        def ring(buf, rows):
            rows = [numpy_of(r) for r in rows]
            return (
                buf.at[:k].set(jnp.asarray(np.reshape(rows, (k, *buf.shape[1:])), buf.dtype))
                if k
                else buf
            )

        like = {
            "t": "t",
            "H_diag": "gamma",
            "prev_flat_grad": "prev_grad",
            "prev_loss": "prev_loss",
        }
        fields |= {ours: jnp.asarray(numpy_of(s[key]), getattr(mem, ours).dtype) for key, ours in like.items()}  # fmt: skip
        fields |= dict(
            d=jnp.asarray(d, mem.d.dtype), s=ring(mem.s, s["old_stps"]),
            y=ring(mem.y, s["old_dirs"]), rho=ring(mem.rho, s["ro"]),
            num_pairs=jnp.asarray(k, jnp.int32), head=jnp.asarray(k % mem.rho.shape[0], jnp.int32),
        )  # fmt: skip
    return mem._replace(**fields)


def _lbfgs_out(mem, out, current, count, convert):
    """torch keeps L-BFGS's state on the first parameter; ``al`` is scratch, left out."""
    n_iter, evals = int(mem.n_iter), int(mem.func_evals)
    if n_iter or evals:
        out[0].update(func_evals=evals, n_iter=n_iter)
    if n_iter:
        m, k, head = mem.rho.shape[0], int(mem.num_pairs), int(mem.head)
        slots = [(head - k + i) % m for i in range(k)]  # oldest first
        t = convert.tensor
        out[0].update(
            d=t(mem.d), t=float(mem.t), H_diag=t(mem.gamma), prev_flat_grad=t(mem.prev_grad),
            prev_loss=float(mem.prev_loss), old_dirs=[t(mem.y[j]) for j in slots],
            old_stps=[t(mem.s[j]) for j in slots], ro=[t(mem.rho[j]) for j in slots],
        )  # fmt: skip
    return mem


HOOKS = {
    "rprop": (_rprop_in, _rprop_out),
    "asgd": (_asgd_in, _asgd_out),
    "lbfgs": (_lbfgs_in, _lbfgs_out),
}
