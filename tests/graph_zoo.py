"""A zoo of RL-shaped linen models for the traced graph planner, and the surgery cases on them.

No tests here. A `Case` names an old and a new model, the old input shapes, the IDs that change
and the preset; `build(case)` instantiates it: old variables, new template, the `apply` and
`example` arguments and every other `make_plan` keyword, plus the inputs each side sees, computed
here by plain index arithmetic (`embed`, `restrict`), never by jsurgery. `compare_outputs` and
`check_leaf` are the reference checks the tests apply to what jsurgery produced.

Variables are drawn with NumPy on the structure `jax.eval_shape` gives (keys in creation order),
so building a case compiles nothing; `forward(model)` is one jitted `apply` per model, shared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jsurgery

OBS = ["x", "x_dot", "theta", "theta_dot"]
A2 = ["left", "right"]
A3 = ["left", "noop", "right"]
RGB = ["r", "g", "b"]
PRESETS = {"preserving": jsurgery.PRESERVING, "transplant": jsurgery.TRANSPLANT}
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


def pos(n_old: int, n_new: int) -> tuple[list, list]:
    """IDs of units matched by position: `n_old` old units, `n_new` new ones."""
    return list(range(n_old)), list(range(n_new))


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


class Body(nn.Module):
    """An MLP: Dense(h) + activation for each hidden width, then Dense(out) (`Dense_i`)."""

    hidden: Sequence[int]
    out: int
    act: str = "relu"

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = ACTIVATIONS[self.act](nn.Dense(h)(x))
        return nn.Dense(self.out)(x)


class ActorCritic(nn.Module):
    """PPO style: separate `actor/Dense_i` and `critic/Dense_i` MLPs; (logits, value (B,))."""

    actions: int
    actor: Sequence[int] = (4, 4)
    critic: Sequence[int] = (4, 4)

    @nn.compact
    def __call__(self, x):
        logits = Body(self.actor, self.actions, "tanh", name="actor")(x)
        value = Body(self.critic, 1, "tanh", name="critic")(x)
        return logits, jnp.squeeze(value, axis=-1)


class SharedTorso(nn.Module):
    """A shared ReLU torso (`Dense_0`, `Dense_1`); policy head `Dense_2`, value head `Dense_3`."""

    actions: int
    hidden: Sequence[int] = (6, 4)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.actions)(x), nn.Dense(1)(x)


class DuelingQ(nn.Module):
    """Dueling DQN: Q = V + A - mean(A) over the actions."""

    actions: int
    hidden: Sequence[int] = (6,)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        v = nn.Dense(1, name="value")(x)
        a = nn.Dense(self.actions, name="advantage")(x)
        return v + a - a.mean(axis=-1, keepdims=True)


class GaussianPolicy(nn.Module):
    """A tanh MLP for the mean and a loose state-independent `log_std` of shape (actions,)."""

    actions: int
    hidden: Sequence[int] = (6,)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.tanh(nn.Dense(h)(x))
        mean = nn.Dense(self.actions)(x)
        log_std = self.param("log_std", nn.initializers.zeros, (self.actions,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class NatureCNN(nn.Module):
    """Nature-DQN shape, small: conv 3x3 stride 2, conv 3x3, flatten, Dense, Dense (VALID)."""

    actions: int
    channels: Sequence[int] = (4, 4)
    dense: int = 8

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.channels[0], (3, 3), strides=(2, 2), padding="VALID")(x))
        x = nn.relu(nn.Conv(self.channels[1], (3, 3), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.dense)(x))
        return nn.Dense(self.actions)(x)


class ImpalaBlock(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    channels: int

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.channels, (3, 3))(nn.relu(x))
        h = nn.Conv(self.channels, (3, 3))(nn.relu(h))
        return x + h


class ImpalaCNN(nn.Module):
    """IMPALA stage, small: conv, max-pool 3x3 stride 2, two residual blocks, Dense, Dense."""

    actions: int
    channels: int = 4
    dense: int = 8

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.channels, (3, 3))(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = ImpalaBlock(self.channels)(x)
        x = ImpalaBlock(self.channels)(x)
        x = nn.relu(x).reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.dense)(x))
        return nn.Dense(self.actions)(x)


class BNResBlock(nn.Module):
    """ResNet basic block with BatchNorm; a 1x1 projection shortcut when the shape changes."""

    channels: int
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        bn = lambda: nn.BatchNorm(use_running_average=True)
        s = (self.strides, self.strides)
        h = nn.relu(bn()(nn.Conv(self.channels, (3, 3), strides=s)(x)))
        h = bn()(nn.Conv(self.channels, (3, 3))(h))
        if self.strides != 1 or x.shape[-1] != self.channels:
            x = bn()(nn.Conv(self.channels, (1, 1), strides=s)(x))
        return nn.relu(x + h)


class BNResNet(nn.Module):
    """Stem conv + BN, an identity-shortcut block, a projection block, global mean pool, Dense."""

    actions: int
    widths: Sequence[int] = (4, 6)
    strides: int = 2  # of the projection block

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.widths[0], (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
        x = BNResBlock(self.widths[0])(x)
        x = BNResBlock(self.widths[1], self.strides)(x)
        return nn.Dense(self.actions)(x.mean(axis=(1, 2)))


class TwoEncoders(nn.Module):
    """`obs_encoder(obs)` and `goal_encoder(goal)` concatenated, then an MLP head."""

    actions: int
    encoders: Sequence[int] = (4, 4)
    head: Sequence[int] = (6,)

    @nn.compact
    def __call__(self, obs, goal):
        a = nn.relu(nn.Dense(self.encoders[0], name="obs_encoder")(obs))
        b = nn.relu(nn.Dense(self.encoders[1], name="goal_encoder")(goal))
        x = jnp.concatenate([a, b], axis=-1)
        for h in self.head:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.actions)(x)


class ConvStack(nn.Module):
    """SAME 3x3 ReLU convs, flatten, Dense(actions)."""

    convs: Sequence[int]
    actions: int

    @nn.compact
    def __call__(self, x):
        for c in self.convs:
            x = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x))
        return nn.Dense(self.actions)(x.reshape((x.shape[0], -1)))


class ResBlockMLP(nn.Module):
    """x + Dense(relu(Dense_inner(relu(x))))."""

    inner: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.inner)(nn.relu(x))
        return x + nn.Dense(x.shape[-1])(nn.relu(h))


class ResMLP(nn.Module):
    """Dense stem, residual blocks (inner widths differ, so an insertion has one place), head."""

    actions: int
    width: int = 4
    inner: Sequence[int] = (3, 5)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        for w in self.inner:
            x = ResBlockMLP(w)(x)
        return nn.Dense(self.actions)(nn.relu(x))


class NormMLP(nn.Module):
    """Dense -> LayerNorm or BatchNorm (running averages) -> ReLU -> Dense."""

    hidden: int
    actions: int
    norm: str = "batch"

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.hidden)(x)
        if self.norm == "layer":
            x = nn.LayerNorm()(x)
        else:
            x = nn.BatchNorm(use_running_average=True)(x)
        return nn.Dense(self.actions)(nn.relu(x))


class Torso(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return x


@dataclass(frozen=True)
class SplitActorCritic:
    """Three separately held linen modules; params `{"torso": ..., "actor": ..., "critic": ...}`.

    Quacks like a linen module for this file: `init(key, x)` and `apply(params, x)`, where
    `apply` composes the three (logits, value)."""

    actions: int
    torso: tuple = (4,)
    actor: tuple = (4,)
    critic: tuple = (4,)

    def modules(self):
        return Torso(self.torso), Body(self.actor, self.actions), Body(self.critic, 1)

    def init(self, key, x):
        torso, actor, critic = self.modules()
        k1, k2, k3 = jax.random.split(key, 3)
        t = torso.init(k1, x)
        h = torso.apply(t, x)
        return {
            "torso": t["params"],
            "actor": actor.init(k2, h)["params"],
            "critic": critic.init(k3, h)["params"],
        }

    def apply(self, params, x):
        torso, actor, critic = self.modules()
        h = torso.apply({"params": params["torso"]}, x)
        return (
            actor.apply({"params": params["actor"]}, h),
            critic.apply({"params": params["critic"]}, h),
        )


# ----------------------------------------------------------------------------------------------
# Random DAG MLPs for the property tests: one interpreter, three algebras
# ----------------------------------------------------------------------------------------------


def run_dag(stem: int, body: tuple, heads: tuple, ops, x):
    """The forward pass of a drawn DAG, for any `ops` (linen, NumPy, or unit-ID bookkeeping).

    `body` holds ("dense", width), ("res", inner) for x = relu(x + Dense(relu(Dense_inner(x)))),
    and ("cat", w1, w2) for concat(relu(Dense_w1(x)), relu(Dense_w2(x))). Two Dense heads."""
    x = ops.relu(ops.dense(stem, x))
    for op in body:
        if op[0] == "dense":
            x = ops.relu(ops.dense(op[1], x))
        elif op[0] == "res":
            h = ops.relu(ops.dense(op[1], x))
            x = ops.relu(ops.add(x, ops.dense(None, h, like=x)))
        else:
            x = ops.concat(ops.relu(ops.dense(op[1], x)), ops.relu(ops.dense(op[2], x)))
    return ops.dense(heads[0], x, head=0), ops.dense(heads[1], x, head=1)


class _LinenOps:
    relu = staticmethod(nn.relu)

    def dense(self, width, x, like=None, head=None):
        return nn.Dense(width if width is not None else like.shape[-1])(x)

    def add(self, a, b):
        return a + b

    def concat(self, a, b):
        return jnp.concatenate([a, b], axis=-1)


class _NumpyOps:
    """Float64 NumPy forward over the params dict, consuming `Dense_i` in creation order."""

    def __init__(self, params):
        self.params, self.n = params, 0

    relu = staticmethod(lambda x: np.maximum(x, 0.0))

    def dense(self, width, x, like=None, head=None):
        p = self.params[f"Dense_{self.n}"]
        self.n += 1
        return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)

    def add(self, a, b):
        return a + b

    def concat(self, a, b):
        return np.concatenate([a, b], axis=-1)


class _IdOps:
    """Unit-ID bookkeeping: records `{layer path: (row IDs, column IDs)}` of every Dense kernel.

    Hidden units are named `(layer path, position)` (matched by position); a residual Dense's
    outputs are the units of the stream it is added to; a concat's units are its parts'."""

    def __init__(self, head_ids):
        self.head_ids, self.n, self.layers = head_ids, 0, {}

    relu = staticmethod(lambda x: x)

    def dense(self, width, x, like=None, head=None):
        path = f"Dense_{self.n}"
        self.n += 1
        if head is not None:
            cols = list(self.head_ids[head])
        elif like is not None:
            cols = list(like)
        else:
            cols = [(path, k) for k in range(width)]
        self.layers[path] = (list(x), cols)
        return cols

    def add(self, a, b):
        assert a == b
        return a

    def concat(self, a, b):
        return a + b


class DagMLP(nn.Module):
    stem: int
    body: tuple
    heads: tuple

    @nn.compact
    def __call__(self, x):
        return run_dag(self.stem, self.body, self.heads, _LinenOps(), x)


def dag_forward(model: DagMLP, variables, x):
    """`model.apply(variables, x)` in float64 NumPy."""
    return run_dag(
        model.stem,
        model.body,
        model.heads,
        _NumpyOps(variables["params"]),
        np.asarray(x, np.float64),
    )


def dag_unit_ids(model: DagMLP, in_ids, head_ids) -> dict:
    """`{"Dense_i": (row IDs, column IDs)}` of each kernel of `model`."""
    ops = _IdOps(head_ids)
    run_dag(model.stem, model.body, model.heads, ops, list(in_ids))
    return ops.layers


# ----------------------------------------------------------------------------------------------
# Variables without compiling: eval_shape for the structure, NumPy for the values
# ----------------------------------------------------------------------------------------------


def _structure(tree):
    """Nested dicts of ShapeDtypeStructs, keeping the (creation) key order."""
    if isinstance(tree, Mapping):
        return {k: _structure(v) for k, v in tree.items()}
    return jax.ShapeDtypeStruct(tree.shape, tree.dtype)


def _value(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    normal = rng.normal(size=shape)
    if name == "kernel":
        return normal / np.sqrt(max(int(np.prod(shape[:-1])), 1))
    if name == "scale":
        return 1.0 + 0.2 * normal
    if name == "var":
        return 0.5 + rng.random(size=shape)
    if name == "log_std":
        return 0.3 * normal - 0.5
    return 0.3 * normal  # biases, running means


def _fill(tree, rng, name=""):
    if isinstance(tree, Mapping):
        return {k: _fill(v, rng, str(k)) for k, v in tree.items()}
    return jnp.asarray(_value(name, tree.shape, rng).astype(tree.dtype))


def shapes(model, arg_shapes: Sequence[tuple]):
    """The variables' structure (ShapeDtypeStructs, creation order) for inputs of these shapes."""
    captured = []

    def init():
        args = [jnp.zeros((1, *s), jnp.float32) for s in arg_shapes]
        captured.append(_structure(model.init(jax.random.key(0), *args)))

    jax.eval_shape(init)
    return captured[0]


def variables(model, arg_shapes: Sequence[tuple], seed: int):
    """Random variables of `model` (non-zero biases, BatchNorm statistics and loose params, so
    that every copy is visible); NumPy draws on `shapes(model, arg_shapes)`."""
    return _fill(shapes(model, arg_shapes), np.random.default_rng(seed))


_JITTED: dict = {}


def forward(model) -> Callable:
    """One jitted `model.apply` per model configuration, shared by all tests."""
    key = repr(model)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(model.apply)
    return _JITTED[key]


# ----------------------------------------------------------------------------------------------
# Reference index arithmetic
# ----------------------------------------------------------------------------------------------


def kept(old_ids, new_ids) -> tuple[np.ndarray, np.ndarray]:
    """(new positions, old positions) of the IDs both sides have, in new order."""
    pairs = [(j, list(old_ids).index(u)) for j, u in enumerate(new_ids) if u in old_ids]
    new_pos = np.asarray([j for j, _ in pairs], dtype=np.int64)
    old_pos = np.asarray([i for _, i in pairs], dtype=np.int64)
    return new_pos, old_pos


def fresh(old_ids, new_ids) -> np.ndarray:
    """New positions of the IDs only the new side has."""
    return np.asarray([j for j, u in enumerate(new_ids) if u not in old_ids], dtype=np.int64)


def embed(x, old_ids, new_ids) -> np.ndarray:
    """Old features (last axis) at their new positions, zeros at new features."""
    x = np.asarray(x)
    out = np.zeros((*x.shape[:-1], len(new_ids)), x.dtype)
    new_pos, old_pos = kept(old_ids, new_ids)
    out[..., new_pos] = x[..., old_pos]
    return out


def restrict(x, old_ids, new_ids) -> np.ndarray:
    """`x` with the features the new side dropped set to zero (the subspace both see)."""
    x = np.array(x)
    gone = [i for i, u in enumerate(old_ids) if u not in new_ids]
    x[..., gone] = 0.0
    return x


def as_dict(pair_or_dict) -> dict:
    """`{index: (old_ids, new_ids)}` from a pair (index 0) or a dict; {} for None."""
    if pair_or_dict is None:
        return {}
    if isinstance(pair_or_dict, Mapping):
        return dict(pair_or_dict)
    return {0: pair_or_dict}


def compare_outputs(y_old, y_new, outputs: dict, atol: float) -> None:
    """Every output leaf: named ones on the IDs both sides have, the others whole."""
    old_leaves, new_leaves = jax.tree.leaves(y_old), jax.tree.leaves(y_new)
    assert len(old_leaves) == len(new_leaves)
    for k, (a, b) in enumerate(zip(old_leaves, new_leaves, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        if k in outputs:
            new_pos, old_pos = kept(*outputs[k])
            a, b = a[..., old_pos], b[..., new_pos]
        assert a.shape == b.shape, f"output {k}: {a.shape} vs {b.shape}"
        np.testing.assert_allclose(b, a, atol=atol, rtol=0, err_msg=f"output {k}")


def get(tree, path: tuple):
    for k in path:
        tree = tree[k]
    return tree


@dataclass(frozen=True)
class LeafCheck:
    """What one leaf of the transplanted tree must hold (TRANSPLANT-style cases).

    `axes`: `{axis: (old_ids, new_ids)}`; along the other axes old and new have equal sizes and
    are compared whole. Entries whose IDs are all old equal the old leaf (`old_path`, default
    `path`) at the old positions; entries with a new ID on any listed axis are the template's
    (zero for optimizer moments). `rows`: for a Dense after a flatten, the number of spatial
    positions; the kernel is viewed as (rows, channels, out) and `axes` index that view.
    `expected`: a constant the whole leaf equals instead (an inserted identity layer)."""

    path: tuple
    axes: dict = field(default_factory=dict)
    old_path: tuple | None = None
    rows: int = 1
    expected: Any = None


def check_leaf(check: LeafCheck, old, out, fresh_source=None) -> None:
    """Asserts `check` on `out` (made from `old`); new entries equal `fresh_source` (the template),
    or zero when it is None."""
    b = np.asarray(get(out, check.path))
    if check.expected is not None:
        np.testing.assert_array_equal(b, check.expected, err_msg=str(check.path))
        return
    a = np.asarray(get(old, check.old_path or check.path))
    t = np.zeros_like(b) if fresh_source is None else np.asarray(get(fresh_source, check.path))
    if check.rows > 1:
        a, b, t = (v.reshape(check.rows, -1, *v.shape[1:]) for v in (a, b, t))
    new_idx, old_idx = [], []
    for axis in range(b.ndim):
        if axis in check.axes:
            n, o = kept(*check.axes[axis])
        else:
            assert a.shape[axis] == b.shape[axis], (check.path, a.shape, b.shape)
            n = o = np.arange(b.shape[axis])
        new_idx.append(n)
        old_idx.append(o)
    np.testing.assert_array_equal(
        b[np.ix_(*new_idx)], a[np.ix_(*old_idx)], err_msg=f"copied entries of {check.path}"
    )
    for axis, pair in check.axes.items():
        f = fresh(*pair)
        if len(f):
            np.testing.assert_array_equal(
                b.take(f, axis),
                t.take(f, axis),
                err_msg=f"new entries of {check.path}, axis {axis}",
            )


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A surgery: old and new model (the same object: one `apply` serves both), the old input
    shapes without the batch axis, the IDs that change, the preset and keyword overrides."""

    id: str
    old: Any
    new: Any
    shapes: tuple
    inputs: Any = None  # a pair, or {arg index: pair}
    outputs: Any = None  # a pair, or {output index: pair}
    hidden: dict | None = None
    layers: dict | None = None
    preset: str = "preserving"
    options: dict = field(default_factory=dict)
    checks: tuple = ()
    atol: float = 1e-5
    example: str = "struct"  # "struct": jax.ShapeDtypeStruct examples; "array": the batch itself


@dataclass
class Built:
    case: Case
    old_vars: Any
    new_template: Any
    x_old: tuple  # a batch for the old network
    x_seen: tuple  # the same with the features the new network lost set to zero
    x_new: tuple  # the same batch in the new network's input space
    inputs: dict  # {arg index: (old_ids, new_ids)}
    outputs: dict  # {output index: (old_ids, new_ids)}
    kwargs: dict  # every make_plan keyword, apply and example included

    def params_only_kwargs(self) -> dict:
        return {k: v for k, v in self.kwargs.items() if k not in ("apply", "example")}

    def old_outputs(self):
        return forward(self.case.old)(self.old_vars, *self.x_seen)

    def new_outputs(self, new_vars):
        return forward(self.case.new)(new_vars, *self.x_new)


def _rand(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def build(case: Case, batch: int = 6) -> Built:
    inputs, outputs = as_dict(case.inputs), as_dict(case.outputs)
    new_shapes = tuple(
        (*s[:-1], len(inputs[i][1])) if i in inputs else s for i, s in enumerate(case.shapes)
    )
    x_old = tuple(_rand((batch, *s), 100 + i) for i, s in enumerate(case.shapes))
    x_seen = tuple(restrict(x, *inputs[i]) if i in inputs else x for i, x in enumerate(x_old))
    x_new = tuple(embed(x, *inputs[i]) if i in inputs else x for i, x in enumerate(x_old))
    if case.example == "struct":
        example = tuple(
            tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in xs) for xs in (x_old, x_new)
        )
    else:
        example = (x_old, x_new)
    apply = case.old.apply if case.old is case.new else (case.old.apply, case.new.apply)
    kwargs = {"apply": apply, "example": example, **PRESETS[case.preset], **case.options}
    for name in ("inputs", "outputs", "hidden", "layers"):
        if getattr(case, name) is not None:
            kwargs[name] = getattr(case, name)
    return Built(
        case=case,
        old_vars=variables(case.old, case.shapes, seed=0),
        new_template=variables(case.new, new_shapes, seed=1),
        x_old=x_old,
        x_seen=x_seen,
        x_new=x_new,
        inputs=inputs,
        outputs=outputs,
        kwargs=kwargs,
    )


def _p(*path):
    return ("params", *path)


def _ac_cases() -> list[Case]:
    ac = ActorCritic(2)
    new_in = ["x_dot", "theta"], OBS
    return [
        Case(
            "actor-critic/inputs-added-permuted",
            ac,
            ac,
            ((2,),),
            inputs=(["x_dot", "theta"], ["theta", "x", "x_dot", "theta_dot"]),
        ),
        Case(
            "actor-critic/inputs-removed",
            ac,
            ac,
            ((4,),),
            inputs=(OBS, ["theta_dot", "x", "theta"]),
        ),
        Case(
            "actor-critic/actions-added",
            ActorCritic(2),
            ActorCritic(3),
            ((4,),),
            outputs={0: (A2, ["noop", "left", "right"])},
        ),
        Case(
            "actor-critic/actions-removed-permuted",
            ActorCritic(3),
            ActorCritic(2),
            ((4,),),
            outputs={0: (A3, ["right", "left"])},
        ),
        Case(
            "actor-critic/hidden-widened", ActorCritic(2), ActorCritic(2, (6, 5), (4, 7)), ((4,),)
        ),
        Case(
            "actor-critic/hidden-named",
            ActorCritic(2),
            ActorCritic(2, (5, 4)),
            ((4,),),
            hidden={"actor/Dense_0": (list("abcd"), list("dbeac"))},
        ),
        Case(
            "actor-critic/transplant-all",
            ActorCritic(2),
            ActorCritic(3, (6, 4), (4, 5)),
            ((2,),),
            inputs=new_in,
            outputs={0: (A2, A3)},
            preset="transplant",
            checks=(
                LeafCheck(_p("actor", "Dense_0", "kernel"), {0: new_in, 1: pos(4, 6)}),
                LeafCheck(_p("actor", "Dense_0", "bias"), {0: pos(4, 6)}),
                LeafCheck(_p("actor", "Dense_1", "kernel"), {0: pos(4, 6)}),
                LeafCheck(_p("actor", "Dense_2", "kernel"), {1: (A2, A3)}),
                LeafCheck(_p("actor", "Dense_2", "bias"), {0: (A2, A3)}),
                LeafCheck(_p("critic", "Dense_0", "kernel"), {0: new_in}),
                LeafCheck(_p("critic", "Dense_1", "kernel"), {1: pos(4, 5)}),
                LeafCheck(_p("critic", "Dense_2", "kernel"), {0: pos(4, 5)}),
                LeafCheck(_p("critic", "Dense_2", "bias")),
            ),
        ),
        Case(
            "actor-critic/transplant-narrowed",
            ActorCritic(3, (6, 6), (6, 6)),
            ActorCritic(3, (4, 6), (6, 3)),
            ((4,),),
            inputs=(OBS, ["theta", "x"]),
            preset="transplant",
            checks=(
                LeafCheck(
                    _p("actor", "Dense_0", "kernel"), {0: (OBS, ["theta", "x"]), 1: pos(6, 4)}
                ),
                LeafCheck(_p("actor", "Dense_1", "kernel"), {0: pos(6, 4)}),
                LeafCheck(_p("actor", "Dense_2", "kernel")),
                LeafCheck(_p("critic", "Dense_0", "kernel"), {0: (OBS, ["theta", "x"])}),
                LeafCheck(_p("critic", "Dense_1", "kernel"), {1: pos(6, 3)}),
                LeafCheck(_p("critic", "Dense_1", "bias"), {0: pos(6, 3)}),
                LeafCheck(_p("critic", "Dense_2", "kernel"), {0: pos(6, 3)}),
            ),
        ),
    ]


def _torso_and_dueling_cases() -> list[Case]:
    torso, dueling = SharedTorso(2), DuelingQ(3)
    fire = ["right", "fire", "left"]
    return [
        Case(
            "shared-torso/actions-added",
            SharedTorso(2),
            SharedTorso(3),
            ((4,),),
            outputs={0: (A2, A3)},
        ),
        Case(
            "shared-torso/inputs-removed-and-added",
            torso,
            torso,
            ((4,),),
            inputs=(OBS, ["theta", "omega", "x_dot"]),
        ),
        Case("shared-torso/widened", SharedTorso(2), SharedTorso(2, (8, 6)), ((4,),)),
        Case(
            "shared-torso/transplant",
            SharedTorso(2),
            SharedTorso(3, (6, 5)),
            ((4,),),
            outputs={0: (A2, fire)},
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel")),
                LeafCheck(_p("Dense_1", "kernel"), {1: pos(4, 5)}),
                LeafCheck(_p("Dense_2", "kernel"), {0: pos(4, 5), 1: (A2, fire)}),
                LeafCheck(_p("Dense_2", "bias"), {0: (A2, fire)}),
                LeafCheck(_p("Dense_3", "kernel"), {0: pos(4, 5)}),
                LeafCheck(_p("Dense_3", "bias")),
            ),
        ),
        Case(
            "dueling/actions-permuted",
            dueling,
            dueling,
            ((4,),),
            outputs=(A3, ["right", "left", "noop"]),
        ),
        Case("dueling/inputs-added", dueling, dueling, ((2,),), inputs=(["x", "theta"], OBS)),
        Case("dueling/widened", DuelingQ(3), DuelingQ(3, (9,)), ((4,),)),
        Case(
            "dueling/transplant-action-added",
            DuelingQ(2),
            DuelingQ(3),
            ((4,),),
            outputs=(A2, A3),
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel")),
                LeafCheck(_p("value", "kernel")),
                LeafCheck(_p("advantage", "kernel"), {1: (A2, A3)}),
                LeafCheck(_p("advantage", "bias"), {0: (A2, A3)}),
            ),
        ),
    ]


def _gaussian_cases() -> list[Case]:
    two, three = ["ax", "ay"], ["ax", "az", "ay"]
    return [
        Case(
            "gaussian/actions-added",
            GaussianPolicy(2),
            GaussianPolicy(3),
            ((4,),),
            outputs={0: (two, three), 1: (two, three)},
        ),
        Case(
            "gaussian/actions-removed-permuted",
            GaussianPolicy(3),
            GaussianPolicy(2),
            ((4,),),
            outputs={0: (["ax", "ay", "az"], ["az", "ax"]), 1: (["ax", "ay", "az"], ["az", "ax"])},
        ),
        Case(
            "gaussian/widened-inputs-added",
            GaussianPolicy(2, (4,)),
            GaussianPolicy(2, (7,)),
            ((2,),),
            inputs=(["x", "y"], ["y", "z", "x"]),
        ),
        Case(
            "gaussian/transplant",
            GaussianPolicy(2),
            GaussianPolicy(3),
            ((4,),),
            outputs={0: (two, three), 1: (two, three)},
            preset="transplant",
            checks=(
                LeafCheck(_p("log_std"), {0: (two, three)}),
                LeafCheck(_p("Dense_0", "kernel")),
                LeafCheck(_p("Dense_1", "kernel"), {1: (two, three)}),
                LeafCheck(_p("Dense_1", "bias"), {0: (two, three)}),
            ),
        ),
    ]


def _cnn_cases() -> list[Case]:
    nature, impala = NatureCNN(2), ImpalaCNN(2)
    rgba = ["b", "alpha", "g", "r"]
    return [
        Case(
            "nature-cnn/channel-added",
            nature,
            nature,
            ((10, 10, 3),),
            inputs=(RGB, [*RGB, "depth"]),
        ),
        Case(
            "nature-cnn/channels-permuted-removed",
            nature,
            nature,
            ((10, 10, 3),),
            inputs=(RGB, ["b", "r"]),
        ),
        Case("nature-cnn/widened", NatureCNN(2), NatureCNN(2, (6, 5), 10), ((10, 10, 3),)),
        Case(
            "nature-cnn/actions-added",
            NatureCNN(2),
            NatureCNN(3),
            ((10, 10, 3),),
            outputs=(A2, ["noop", "right", "left"]),
        ),
        Case(
            "nature-cnn/transplant-narrowed",
            NatureCNN(2),
            NatureCNN(2, (4, 3)),
            ((10, 10, 3),),
            preset="transplant",
            checks=(
                LeafCheck(_p("Conv_0", "kernel")),
                LeafCheck(_p("Conv_1", "kernel"), {3: pos(4, 3)}),
                LeafCheck(_p("Conv_1", "bias"), {0: pos(4, 3)}),
                LeafCheck(_p("Dense_0", "kernel"), {1: pos(4, 3)}, rows=4),
                LeafCheck(_p("Dense_1", "kernel")),
            ),
        ),
        Case("impala/channels-widened", ImpalaCNN(2), ImpalaCNN(2, 6), ((8, 8, 3),)),
        Case(
            "impala/input-channels-added-permuted", impala, impala, ((8, 8, 3),), inputs=(RGB, rgba)
        ),
        Case("impala/actions-added", ImpalaCNN(2), ImpalaCNN(3), ((8, 8, 3),), outputs=(A2, A3)),
        Case(
            "impala/transplant-widened",
            ImpalaCNN(2),
            ImpalaCNN(2, 5),
            ((8, 8, 3),),
            preset="transplant",
            checks=(
                LeafCheck(_p("Conv_0", "kernel"), {3: pos(4, 5)}),
                LeafCheck(_p("ImpalaBlock_0", "Conv_0", "kernel"), {2: pos(4, 5), 3: pos(4, 5)}),
                LeafCheck(_p("ImpalaBlock_1", "Conv_1", "kernel"), {2: pos(4, 5), 3: pos(4, 5)}),
                LeafCheck(_p("ImpalaBlock_1", "Conv_1", "bias"), {0: pos(4, 5)}),
                LeafCheck(_p("Dense_0", "kernel"), {1: pos(4, 5)}, rows=16),
            ),
        ),
    ]


def _bn_resnet_cases() -> list[Case]:
    shape = ((8, 8, 3),)
    block0, block1 = ("BNResBlock_0",), ("BNResBlock_1",)
    return [
        Case("bn-resnet/widened", BNResNet(2), BNResNet(2, (6, 8)), shape, atol=1e-4),
        Case(
            "bn-resnet/input-channel-added",
            BNResNet(2),
            BNResNet(2),
            shape,
            inputs=(RGB, ["depth", *RGB]),
            atol=1e-4,
        ),
        Case(
            "bn-resnet/stride-1-projection-widened-actions-added",
            BNResNet(2, (4, 6), 1),
            BNResNet(3, (5, 7), 1),
            shape,
            outputs=(A2, A3),
            atol=1e-4,
        ),
        Case(
            "bn-resnet/transplant-widened",
            BNResNet(2),
            BNResNet(2, (5, 6)),
            shape,
            preset="transplant",
            atol=1e-4,
            checks=(
                LeafCheck(_p("Conv_0", "kernel"), {3: pos(4, 5)}),
                LeafCheck(_p("BatchNorm_0", "scale"), {0: pos(4, 5)}),
                LeafCheck(("batch_stats", "BatchNorm_0", "mean"), {0: pos(4, 5)}),
                LeafCheck(("batch_stats", "BatchNorm_0", "var"), {0: pos(4, 5)}),
                LeafCheck(_p(*block0, "Conv_0", "kernel"), {2: pos(4, 5), 3: pos(4, 5)}),
                LeafCheck(("batch_stats", *block0, "BatchNorm_1", "mean"), {0: pos(4, 5)}),
                LeafCheck(_p(*block1, "Conv_0", "kernel"), {2: pos(4, 5)}),
                LeafCheck(_p(*block1, "Conv_2", "kernel"), {2: pos(4, 5)}),
                LeafCheck(("batch_stats", *block1, "BatchNorm_2", "var")),
                LeafCheck(_p("Dense_0", "kernel")),
            ),
        ),
    ]


def _encoder_cases() -> list[Case]:
    enc = TwoEncoders(2)
    shape = ((3,), (2,))
    cat_old = [("obs", i) for i in range(4)] + [("goal", i) for i in range(3)]
    cat_new = [("obs", i) for i in range(4)] + [("goal", i) for i in range(5)]
    return [
        Case(
            "two-encoders/obs-added-goal-permuted",
            enc,
            enc,
            shape,
            inputs={0: (["x", "y", "z"], ["x", "vx", "y", "z"]), 1: (["gx", "gy"], ["gy", "gx"])},
        ),
        Case(
            "two-encoders/obs-encoder-widened", TwoEncoders(2), TwoEncoders(2, (6, 4), (7,)), shape
        ),
        Case(
            "two-encoders/goal-feature-removed", enc, enc, shape, inputs={1: (["gx", "gy"], ["gy"])}
        ),
        Case(
            "two-encoders/transplant-goal-encoder-widened",
            TwoEncoders(2, (4, 3)),
            TwoEncoders(2, (4, 5)),
            shape,
            preset="transplant",
            checks=(
                LeafCheck(_p("obs_encoder", "kernel")),
                LeafCheck(_p("goal_encoder", "kernel"), {1: pos(3, 5)}),
                LeafCheck(_p("goal_encoder", "bias"), {0: pos(3, 5)}),
                LeafCheck(_p("Dense_0", "kernel"), {0: (cat_old, cat_new)}),
                LeafCheck(_p("Dense_1", "kernel")),
            ),
        ),
    ]


def _insertion_cases() -> list[Case]:
    dqn_old, dqn_new = Body((6, 4), 2), Body((6, 6, 4), 2)
    conv_old, conv_new = ConvStack((3, 4), 2), ConvStack((3, 3, 4), 2)
    res_old, res_new = ResMLP(2), ResMLP(2, 4, (3, 6, 5))
    blocks = lambda new, old: tuple(
        LeafCheck(_p(new, d, leaf), old_path=_p(old, d, leaf))
        for d in ("Dense_0", "Dense_1")
        for leaf in ("kernel", "bias")
    )
    return [
        Case("dqn/layer-inserted", dqn_old, dqn_new, ((3,),), example="array"),
        Case(
            "dqn/layer-inserted-actions-added",
            dqn_old,
            Body((6, 6, 4), 3),
            ((3,),),
            outputs=(A2, A3),
        ),
        Case(
            "dqn/transplant-layer-inserted",
            dqn_old,
            dqn_new,
            ((3,),),
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel")),
                LeafCheck(_p("Dense_1", "kernel"), expected=np.eye(6, dtype=np.float32)),
                LeafCheck(_p("Dense_1", "bias"), expected=np.zeros(6, np.float32)),
                LeafCheck(_p("Dense_2", "kernel"), old_path=_p("Dense_1", "kernel")),
                LeafCheck(_p("Dense_3", "kernel"), old_path=_p("Dense_2", "kernel")),
                LeafCheck(_p("Dense_3", "bias"), old_path=_p("Dense_2", "bias")),
            ),
        ),
        Case("conv-stack/conv-inserted", conv_old, conv_new, ((5, 5, 2),), example="array"),
        Case(
            "conv-stack/transplant-conv-inserted",
            conv_old,
            conv_new,
            ((5, 5, 2),),
            preset="transplant",
            checks=(
                LeafCheck(_p("Conv_0", "kernel")),
                LeafCheck(_p("Conv_2", "kernel"), old_path=_p("Conv_1", "kernel")),
                LeafCheck(_p("Conv_2", "bias"), old_path=_p("Conv_1", "bias")),
                LeafCheck(_p("Dense_0", "kernel")),
            ),
        ),
        Case("res-mlp/block-inserted", res_old, res_new, ((3,),)),
        Case("res-mlp/stream-widened", ResMLP(2), ResMLP(2, 6, (4, 5)), ((3,),)),
        Case(
            "res-mlp/inputs-and-actions",
            ResMLP(2),
            ResMLP(3),
            ((2,),),
            inputs=(["x", "theta"], ["theta", "x_dot", "x"]),
            outputs=(A2, ["noop", *A2]),
        ),
        Case(
            "res-mlp/transplant-block-inserted",
            res_old,
            res_new,
            ((3,),),
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel")),
                LeafCheck(_p("Dense_1", "kernel")),
                *blocks("ResBlockMLP_0", "ResBlockMLP_0"),
                *blocks("ResBlockMLP_2", "ResBlockMLP_1"),
            ),
        ),
    ]


SPLIT_INPUTS = (["x_dot", "theta"], OBS)


def _state_cases() -> list[Case]:
    old, new = SplitActorCritic(2), SplitActorCritic(3, torso=(6,))
    return [
        Case(
            "split-torso/inputs-actions-torso-widened",
            old,
            new,
            ((2,),),
            inputs=SPLIT_INPUTS,
            outputs={0: (A2, A3)},
        ),
        Case(
            "split-torso/transplant",
            old,
            new,
            ((2,),),
            inputs=SPLIT_INPUTS,
            outputs={0: (A2, A3)},
            preset="transplant",
            checks=(
                LeafCheck(("torso", "Dense_0", "kernel"), {0: SPLIT_INPUTS, 1: pos(4, 6)}),
                LeafCheck(("torso", "Dense_0", "bias"), {0: pos(4, 6)}),
                LeafCheck(("actor", "Dense_0", "kernel"), {0: pos(4, 6)}),
                LeafCheck(("actor", "Dense_1", "kernel"), {1: (A2, A3)}),
                LeafCheck(("actor", "Dense_1", "bias"), {0: (A2, A3)}),
                LeafCheck(("critic", "Dense_0", "kernel"), {0: pos(4, 6)}),
                LeafCheck(("critic", "Dense_1", "kernel")),
            ),
        ),
        Case(
            "bn-mlp/widened-inputs-actions",
            NormMLP(4, 2),
            NormMLP(6, 3),
            ((2,),),
            inputs=(["x", "theta"], OBS),
            outputs=(A2, A3),
            atol=1e-4,
            checks=(
                LeafCheck(_p("Dense_0", "kernel"), {0: (["x", "theta"], OBS), 1: pos(4, 6)}),
                LeafCheck(_p("Dense_1", "bias"), {0: (A2, A3)}),
            ),
        ),
    ]


def _edge_cases() -> list[Case]:
    """Small surgeries where unit counts coincide or an axis has one unit (found by the property
    tests; all layer names are unchanged, so nothing here is a matching tie)."""
    around_res = (
        DagMLP(3, (("dense", 4), ("res", 4), ("dense", 3)), (3, 2)),
        DagMLP(2, (("dense", 4), ("res", 3), ("dense", 4)), (4, 2)),
    )
    acts = (["l", "u", "f"], ["l", "u", "f", "d"])
    inputs = (["x", "theta"], ["theta"])
    return [
        Case("edge/bottleneck-of-one-widened", Body((4, 1), 2), Body((4, 2), 2), ((3,),)),
        Case(
            "edge/actions-cut-to-one",
            SharedTorso(2),
            SharedTorso(1),
            ((4,),),
            outputs={0: (A2, ["right"])},
        ),
        Case(
            "edge/dqn-one-input-left-narrowed-action-added",
            Body((2, 3), 2),
            Body((2, 2), 3),
            ((2,),),
            inputs=inputs,
            outputs=(A2, A3),
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel"), {0: inputs}),
                LeafCheck(_p("Dense_1", "kernel"), {1: pos(3, 2)}),
                LeafCheck(_p("Dense_2", "kernel"), {0: pos(3, 2), 1: (A2, A3)}),
            ),
        ),
        Case(
            "edge/residual-stream-widened-action-removed",
            DagMLP(3, (("res", 2), ("dense", 2)), (3, 2)),
            DagMLP(4, (("res", 3), ("dense", 4)), (2, 2)),
            ((3,),),
            outputs={0: (["right", "left", "fire"], ["right", "left"])},
        ),
        Case(
            "edge/narrowed-and-widened-around-a-residual",
            *around_res,
            ((2,),),
            outputs={0: acts},
            preset="transplant",
            checks=(
                LeafCheck(_p("Dense_0", "kernel"), {1: pos(3, 2)}),
                LeafCheck(_p("Dense_1", "kernel"), {0: pos(3, 2)}),
                LeafCheck(_p("Dense_2", "kernel"), {1: pos(4, 3)}),
                LeafCheck(_p("Dense_3", "kernel"), {0: pos(4, 3)}),
                LeafCheck(_p("Dense_4", "kernel"), {1: pos(3, 4)}),
                LeafCheck(_p("Dense_5", "kernel"), {0: pos(3, 4), 1: acts}),
                LeafCheck(_p("Dense_6", "kernel"), {0: pos(3, 4)}),
            ),
        ),
    ]


CASES: list[Case] = [
    *_ac_cases(),
    *_torso_and_dueling_cases(),
    *_gaussian_cases(),
    *_cnn_cases(),
    *_bn_resnet_cases(),
    *_encoder_cases(),
    *_insertion_cases(),
    *_state_cases(),
    *_edge_cases(),
]
BY_ID = {c.id: c for c in CASES}
PRESERVING_CASES = [c for c in CASES if c.preset == "preserving"]
TRANSPLANT_CASES = [c for c in CASES if c.preset == "transplant"]
