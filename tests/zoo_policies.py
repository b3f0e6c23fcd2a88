"""Networks users bring from public JAX RL and language-model code, re-typed tiny, and the
PRESERVING surgeries on them, each with the outcome that is mathematically possible.

No tests here. A `Surgery` names an old and a new model (linen modules, or objects with linen's
`init(key, *x)` / `apply(variables, *x)`), the old arguments' shapes, the IDs that change and the
expected outcome:

- `EXACT`: the new network reproduces the old outputs on the old inputs;
- `WARNED`: no start can keep them (a LayerNorm over widened units, an identity under tanh), so
  `plan.warnings` must say so and a forward pass must show the outputs move;
- `REFUSED`: `make_plan` raises a `PlanError`.

`build(surgery)` draws the variables with NumPy (nothing compiles but the shared jitted `apply`
per model), and places the old inputs in the new input space by plain index arithmetic (features
at their new positions, tokens renumbered), never through jsurgery. `distance` is the judge: the
largest |new - old| / (1 + |old|) over the old outputs both networks have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from graph_zoo import embed, forward, kept

import jsurgery

EXACT, WARNED, REFUSED = "exact", "warned", "refused"
OBS = ["x", "x_dot", "theta", "theta_dot"]
A2, A3 = ["left", "right"], ["left", "noop", "right"]
RGB = ["r", "g", "b"]
TOKENS_OLD = ["<s>", "a", "b", "c", "d", "e"]
TOKENS_NEW = ["<s>", "a", "f", "b", "c", "d", "e", "g"]


# ----------------------------------------------------------------------------------------------
# Linen models
# ----------------------------------------------------------------------------------------------


class PQN(nn.Module):
    """PQN's Q-network: (Dense -> LayerNorm -> ReLU) per hidden width, then Dense(actions)."""

    actions: int = 2
    hidden: Sequence[int] = (6, 8)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.LayerNorm()(nn.Dense(h)(x)))
        return nn.Dense(self.actions)(x)


class SimbaBlock(nn.Module):
    """Pre-LayerNorm residual MLP block: x + Dense(relu(Dense_inner(LayerNorm(x))))."""

    inner: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.inner)(nn.LayerNorm()(x)))
        return x + nn.Dense(x.shape[-1])(h)


class SimBa(nn.Module):
    """SimBa: Dense embedding, pre-LN residual blocks, a final LayerNorm, Dense head."""

    actions: int = 2
    width: int = 4
    inner: Sequence[int] = (8,)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        for w in self.inner:
            x = SimbaBlock(w)(x)
        return nn.Dense(self.actions)(nn.LayerNorm()(x))


class ImpalaResidual(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        h = nn.Conv(c, (3, 3))(nn.relu(x))
        return x + nn.Conv(c, (3, 3))(nn.relu(h))


class ConvSequence(nn.Module):
    """IMPALA's conv sequence: conv, max-pool 3x3 stride 2, residual blocks."""

    channels: int
    blocks: int = 2

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.channels, (3, 3))(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.blocks):
            x = ImpalaResidual()(x)
        return x


class ImpalaPolicy(nn.Module):
    """IMPALA CNN as cleanrl/purejaxrl write it, one sequence: flatten, Dense, policy head."""

    actions: int = 2
    channels: int = 4
    blocks: int = 2
    dense: int = 6

    @nn.compact
    def __call__(self, x):
        x = nn.relu(ConvSequence(self.channels, self.blocks)(x))
        x = nn.relu(nn.Dense(self.dense)(x.reshape((x.shape[0], -1))))
        return nn.Dense(self.actions)(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention written with DenseGeneral: q, k, v (B, T, heads, head_dim)."""

    heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x):
        proj = lambda name: nn.DenseGeneral((self.heads, self.head_dim), name=name)(x)
        q, k, v = proj("query"), proj("key"), proj("value")
        logits = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(self.head_dim).astype(np.float32)
        o = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(logits, axis=-1), v)
        return nn.DenseGeneral(x.shape[-1], axis=(-2, -1), name="out")(o)


class PreLNBlock(nn.Module):
    """x + attention(LN(x)); x + MLP(LN(x)) with a GELU."""

    heads: int
    head_dim: int
    mlp: int

    @nn.compact
    def __call__(self, x):
        x = x + SelfAttention(self.heads, self.head_dim)(nn.LayerNorm()(x))
        h = nn.gelu(nn.Dense(self.mlp)(nn.LayerNorm()(x)))
        return x + nn.Dense(x.shape[-1])(h)


class TransformerPolicy(nn.Module):
    """A pre-LN transformer policy over a sequence: token (`vocab`) or vector inputs, a learned
    position embedding, blocks (one per entry of `mlp`), final LayerNorm, mean over the sequence,
    Dense head."""

    actions: int = 2
    width: int = 8
    heads: int = 2
    head_dim: int = 4
    mlp: Sequence[int] = (12,)
    vocab: int | None = None

    @nn.compact
    def __call__(self, x):
        if self.vocab is None:
            x = nn.Dense(self.width, name="embed")(x)
        else:
            x = nn.Embed(self.vocab, self.width, name="embed")(x)
        pos = self.param("pos", nn.initializers.normal(0.02), (x.shape[1], self.width))
        x = x + pos
        for m in self.mlp:
            x = PreLNBlock(self.heads, self.head_dim, m)(x)
        return nn.Dense(self.actions, name="head")(nn.LayerNorm()(x).mean(axis=1))


class PureActorCritic(nn.Module):
    """purejaxrl's ActorCritic: a tanh actor MLP (logits) and a tanh critic MLP (value (B,)),
    `Dense_i` numbered actor first; `actor` lists the actor's hidden widths."""

    actions: int = 2
    actor: Sequence[int] = (6, 6)
    critic: int = 6

    @nn.compact
    def __call__(self, x):
        a = x
        for h in self.actor:
            a = nn.tanh(nn.Dense(h)(a))
        logits = nn.Dense(self.actions)(a)
        c = nn.tanh(nn.Dense(self.critic)(x))
        c = nn.tanh(nn.Dense(self.critic)(c))
        return logits, jnp.squeeze(nn.Dense(1)(c), axis=-1)


class GeluMLP(nn.Module):
    """Dense + GELU per hidden width, then Dense(out)."""

    out: int = 2
    hidden: Sequence[int] = (6, 6)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.gelu(nn.Dense(h)(x))
        return nn.Dense(self.out)(x)


class C51(nn.Module):
    """C51's Q-network: Dense torso, logits (B, actions, atoms), softmax over atoms, Q-values
    as the expectation over a fixed support."""

    actions: int = 2
    atoms: int = 5
    hidden: int = 6

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        logits = nn.Dense(self.actions * self.atoms)(x).reshape(-1, self.actions, self.atoms)
        support = jnp.linspace(-1.0, 1.0, self.atoms)
        return (jax.nn.softmax(logits, axis=-1) * support).sum(axis=-1)


class TiedLM(nn.Module):
    """A token model whose output layer is its embedding (`nn.Embed.attend`), a residual GELU
    MLP between: logits (B, T, vocab)."""

    vocab: int = 6
    width: int = 6
    mlp: int = 8

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(self.vocab, self.width, name="embed")
        x = embed(tokens)
        x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(self.mlp)(x)))
        return embed.attend(x)


class TransformedDense(nn.Module):
    """A Dense whose kernel is transformed before its matmul: `x @ (kernel * 1.0) + bias`."""

    features: int

    @nn.compact
    def __call__(self, x):
        k = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (k * 1.0) + b


class TransformedMLP(nn.Module):
    actions: int = 2
    hidden: int = 6

    @nn.compact
    def __call__(self, x):
        return TransformedDense(self.actions)(nn.relu(TransformedDense(self.hidden)(x)))


class ActionCritic(nn.Module):
    """Q(s, a) with the action an integer argument: concat(obs, one_hot(action)) -> MLP -> (B,)."""

    actions: int = 2
    hidden: int = 6

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, jax.nn.one_hot(action, self.actions, dtype=obs.dtype)], -1)
        return jnp.squeeze(nn.Dense(1)(nn.relu(nn.Dense(self.hidden)(x))), axis=-1)


class SlicedTokens(nn.Module):
    """Tokens after the first (`t[:, 1:]`) -> Embed -> ReLU -> mean over tokens -> Dense."""

    vocab: int = 6
    width: int = 4
    actions: int = 2

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, self.width)(tokens[:, 1:])
        return nn.Dense(self.actions)(nn.relu(x).mean(axis=1))


@struct.dataclass
class AgentParams:
    """Params held in a flax.struct.dataclass: one linen params dict per part."""

    torso: Any
    head: Any


@dataclass(frozen=True)
class DataclassAgent:
    """A torso and a head, separately held linen modules; `init` and `apply` take and give an
    `AgentParams` (quacks like a linen module for `build`)."""

    actions: int = 2
    hidden: Sequence[int] = (6,)

    def modules(self):
        return GeluMLP(self.hidden[-1], tuple(self.hidden[:-1])), GeluMLP(self.actions, ())

    def init(self, key, x):
        torso, head = self.modules()
        k1, k2 = jax.random.split(key)
        t = torso.init(k1, x)["params"]
        return AgentParams(t, head.init(k2, torso.apply({"params": t}, x))["params"])

    def apply(self, params, x):
        torso, head = self.modules()
        h = nn.relu(torso.apply({"params": params.torso}, x))
        return head.apply({"params": params.head}, h)


# ----------------------------------------------------------------------------------------------
# NNX
# ----------------------------------------------------------------------------------------------


class NnxTrainMLP(nnx.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout per hidden width, then Linear; built in train mode
    (batch statistics, dropout on)."""

    def __init__(self, n_in: int, hidden: Sequence[int], out: int, rngs: nnx.Rngs):
        widths = [n_in, *hidden]
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        self.linears = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
        self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for _, b in pairs])
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(widths[-1], out, rngs=rngs)

    def __call__(self, x):
        for linear, norm in zip(self.linears, self.norms, strict=True):
            x = self.drop(nnx.relu(norm(linear(x))))
        return self.head(x)


# ----------------------------------------------------------------------------------------------
# Surgeries
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One positional argument without its batch axis; `vocab`: integer tokens below it."""

    shape: tuple
    vocab: int | None = None


@dataclass(frozen=True)
class Surgery:
    """An old and a new model, the old arguments, the IDs that change (`inputs`: `{arg index:
    (old_ids, new_ids)}`, features on the last axis or token values; `outputs`: `{output index:
    pair}` on the last axis), the expected outcome, and `xfail`: the reason today's code gets it
    wrong (a case being fixed under issue 21), or None."""

    id: str
    old: Any
    new: Any
    args: tuple
    expect: str
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    layers: dict | None = None
    hidden: dict | None = None
    xfail: str | None = None


@dataclass
class Built:
    surgery: Surgery
    old_vars: Any
    new_template: Any
    x_old: tuple
    x_new: tuple
    kwargs: dict

    def plan(self):
        return jsurgery.make_plan(self.old_vars, self.new_template, **self.kwargs)

    def old_outputs(self):
        return forward(self.surgery.old)(self.old_vars, *self.x_old)

    def new_outputs(self, new_vars):
        return forward(self.surgery.new)(new_vars, *self.x_new)


def _value(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    normal = rng.normal(size=shape)
    if name == "kernel":
        return normal / np.sqrt(max(int(np.prod(shape[:-1])), 1))
    if name == "scale":
        return 1.0 + 0.2 * normal
    return 0.3 * normal  # biases, embeddings, position embeddings


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def variables(model, args: Sequence[Arg], seed: int):
    """Random variables of `model` for these arguments (any pytree `init` gives: dicts, struct
    dataclasses); NumPy draws on the structure `jax.eval_shape` gives, so nothing compiles."""
    structs = [
        jax.ShapeDtypeStruct((1, *a.shape), jnp.float32 if a.vocab is None else jnp.int32)
        for a in args
    ]
    tree = jax.eval_shape(lambda *x: model.init(jax.random.key(0), *x), *structs)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda p, s: jnp.asarray(_value(_leaf_name(p), s.shape, rng).astype(s.dtype)), tree
    )


def renumber(tokens: np.ndarray, old_ids: Sequence, new_ids: Sequence) -> np.ndarray:
    """Old token values as the new vocabulary numbers the same tokens."""
    where = np.asarray([list(new_ids).index(u) for u in old_ids], np.int32)
    return where[tokens]


def _new_arg(arg: Arg, pair) -> Arg:
    if pair is None:
        return arg
    if arg.vocab is not None:
        return Arg(arg.shape, len(pair[1]))
    return Arg((*arg.shape[:-1], len(pair[1])))


def _batch(arg: Arg, k: int, batch: int) -> np.ndarray:
    rng = np.random.default_rng(100 + k)
    if arg.vocab is not None:
        return rng.integers(0, arg.vocab, size=(batch, *arg.shape)).astype(np.int32)
    return rng.normal(size=(batch, *arg.shape)).astype(np.float32)


def _in_new_space(x: np.ndarray, arg: Arg, pair) -> np.ndarray:
    if pair is None:
        return x
    return renumber(x, *pair) if arg.vocab is not None else embed(x, *pair)


def _struct(x: np.ndarray) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def build(surgery: Surgery, batch: int = 8) -> Built:
    new_args = tuple(_new_arg(a, surgery.inputs.get(k)) for k, a in enumerate(surgery.args))
    x_old = tuple(_batch(a, k, batch) for k, a in enumerate(surgery.args))
    x_new = tuple(
        _in_new_space(x, a, surgery.inputs.get(k))
        for k, (x, a) in enumerate(zip(x_old, surgery.args, strict=True))
    )
    old, new = surgery.old, surgery.new
    kwargs = {
        "apply": old.apply if old is new else (old.apply, new.apply),
        "example": (tuple(map(_struct, x_old)), tuple(map(_struct, x_new))),
        **jsurgery.PRESERVING,
    }
    for name in ("inputs", "outputs", "layers", "hidden"):
        if getattr(surgery, name):
            kwargs[name] = getattr(surgery, name)
    return Built(
        surgery, variables(old, surgery.args, 0), variables(new, new_args, 1), x_old, x_new, kwargs
    )


def distance(y_old, y_new, outputs: dict) -> float:
    """The largest |new - old| / (1 + |old|) over every output leaf: named ones on the IDs both
    sides have (last axis), the others whole."""
    old_leaves, new_leaves = jax.tree.leaves(y_old), jax.tree.leaves(y_new)
    assert len(old_leaves) == len(new_leaves)
    worst = 0.0
    for k, (a, b) in enumerate(zip(old_leaves, new_leaves, strict=True)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if k in outputs:
            new_pos, old_pos = kept(*outputs[k])
            a, b = a[..., old_pos], b[..., new_pos]
        assert a.shape == b.shape, f"output {k}: {a.shape} vs {b.shape}"
        worst = max(worst, float(np.max(np.abs(b - a) / (1.0 + np.abs(a)))))
    return worst


def _cases_mlp_like() -> list[Surgery]:
    f2, f4 = Arg((2,)), Arg((4,))
    two_obs = {0: (["x", "theta"], OBS)}
    ac_layers = {f"Dense_{n}": f"Dense_{o}" for n, o in [(0, 0), (2, 1), (3, 2), (4, 3), (5, 4)]}
    ac_layers["Dense_6"] = "Dense_5"
    pqn_layers = {"LayerNorm_0": "LayerNorm_0", "LayerNorm_2": "LayerNorm_1"}
    return [
        Surgery("pqn/inputs-added", PQN(), PQN(), (f2,), EXACT, inputs=two_obs),
        Surgery("pqn/inputs-removed", PQN(), PQN(), (f4,), WARNED, inputs={0: (OBS, OBS[:3])}),
        Surgery("pqn/actions-added", PQN(2), PQN(3), (f4,), EXACT, outputs={0: (A2, A3)}),
        Surgery("pqn/widened-under-layernorm", PQN(), PQN(hidden=(9, 8)), (f4,), EXACT),
        Surgery("pqn/width-doubled-under-layernorm", PQN(), PQN(hidden=(12, 16)), (f4,), EXACT),
        Surgery("pqn/block-inserted", PQN(), PQN(hidden=(6, 6, 8)), (f4,), WARNED,
                layers=pqn_layers),
        Surgery("simba/inputs-added", SimBa(), SimBa(), (f2,), EXACT, inputs=two_obs),
        Surgery("simba/actions-added", SimBa(2), SimBa(3), (f4,), EXACT, outputs={0: (A2, A3)}),
        Surgery("simba/inner-widened", SimBa(), SimBa(inner=(11,)), (f4,), EXACT),
        Surgery("simba/stream-widened-under-layernorm", SimBa(), SimBa(width=7), (f4,), EXACT),
        Surgery("simba/block-inserted", SimBa(), SimBa(inner=(8, 5)), (f4,), EXACT),
        Surgery("ppo-tanh/inputs-added", PureActorCritic(), PureActorCritic(), (f2,), EXACT,
                inputs=two_obs),
        Surgery("ppo-tanh/actions-added", PureActorCritic(2), PureActorCritic(3), (f4,), EXACT,
                outputs={0: (A2, A3)}),
        Surgery("ppo-tanh/widened", PureActorCritic(), PureActorCritic(2, (9, 7), 8), (f4,), EXACT),
        Surgery("ppo-tanh/identity-inserted-before-tanh", PureActorCritic(),
                PureActorCritic(actor=(6, 6, 6)), (f4,), WARNED, layers=ac_layers),
        Surgery("gelu-mlp/inputs-added", GeluMLP(), GeluMLP(), (f2,), EXACT, inputs=two_obs),
        Surgery("gelu-mlp/widened", GeluMLP(), GeluMLP(hidden=(9, 7)), (f4,), EXACT),
        Surgery("gelu-mlp/identity-inserted-before-gelu", GeluMLP(hidden=(6, 4)),
                GeluMLP(hidden=(6, 6, 4)), (f4,), WARNED),
        Surgery("c51/inputs-added", C51(), C51(), (f2,), EXACT, inputs=two_obs),
        Surgery("c51/widened", C51(), C51(hidden=9), (f4,), EXACT),
        Surgery("c51/actions-added", C51(2), C51(3), (f4,), EXACT, outputs={0: (A2, A3)},
                xfail="issue 22: a distributional head gains actions (refused today)"),
        Surgery("transformed-kernel/inputs-added", TransformedMLP(), TransformedMLP(), (f2,),
                EXACT, inputs=two_obs),
        Surgery("transformed-kernel/widened", TransformedMLP(), TransformedMLP(hidden=9), (f4,),
                EXACT),
        Surgery("transformed-kernel/actions-added", TransformedMLP(2), TransformedMLP(3), (f4,),
                EXACT, outputs={0: (A2, A3)}),
        Surgery("dataclass-params/inputs-added", DataclassAgent(), DataclassAgent(), (f2,),
                EXACT, inputs=two_obs),
        Surgery("dataclass-params/actions-added", DataclassAgent(2), DataclassAgent(3), (f4,),
                EXACT, outputs={0: (A2, A3)}),
        Surgery("dataclass-params/widened", DataclassAgent(), DataclassAgent(hidden=(9,)), (f4,),
                EXACT),
    ]  # fmt: skip


def _cases_sequences() -> list[Surgery]:
    image, seq, tokens = Arg((8, 8, 3)), Arg((3, 2)), Arg((4,), len(TOKENS_OLD))
    vocab = {0: (TOKENS_OLD, TOKENS_NEW)}
    obs_action = (Arg((2,)), Arg((), 2))
    impala_layers = {
        f"ConvSequence_0/ImpalaResidual_{n}/Conv_{c}": f"ConvSequence_0/ImpalaResidual_{o}/Conv_{c}"
        for n, o in [(0, 0), (2, 1)]
        for c in (0, 1)
    }
    tp, tp_tok = TransformerPolicy(), TransformerPolicy(vocab=len(TOKENS_OLD))
    return [
        Surgery("impala/channel-added", ImpalaPolicy(), ImpalaPolicy(), (image,), EXACT,
                inputs={0: (RGB, ["b", "depth", "r", "g"])}),
        Surgery("impala/actions-added", ImpalaPolicy(2), ImpalaPolicy(3), (image,), EXACT,
                outputs={0: (A2, A3)}),
        Surgery("impala/channels-widened", ImpalaPolicy(), ImpalaPolicy(channels=6), (image,),
                EXACT),
        Surgery("impala/residual-block-inserted", ImpalaPolicy(), ImpalaPolicy(blocks=3),
                (image,), EXACT, layers=impala_layers),
        Surgery("transformer/inputs-added", tp, tp, (seq,), EXACT,
                inputs={0: (["x", "y"], ["y", "hp", "x"])}),
        Surgery("transformer/actions-added", tp, TransformerPolicy(3), (seq,), EXACT,
                outputs={0: (A2, A3)}),
        Surgery("transformer/mlp-widened", tp, TransformerPolicy(mlp=(17,)), (seq,), EXACT),
        Surgery("transformer/stream-widened-under-layernorm", tp, TransformerPolicy(width=10),
                (seq,), EXACT),
        Surgery("transformer/block-inserted", tp, TransformerPolicy(mlp=(12, 9)), (seq,), EXACT,
                xfail="issue 22: an inserted attention block keeps its output projection's "
                "template init (warned, but zero would be exact)"),
        Surgery("transformer/vocab-added", tp_tok, TransformerPolicy(vocab=len(TOKENS_NEW)),
                (tokens,), EXACT, inputs=vocab),
        Surgery("tied-embed/vocab-added", TiedLM(), TiedLM(len(TOKENS_NEW)), (tokens,), EXACT,
                inputs=vocab, outputs={0: (TOKENS_OLD, TOKENS_NEW)}),
        Surgery("tied-embed/mlp-widened", TiedLM(), TiedLM(mlp=11), (tokens,), EXACT),
        Surgery("tied-embed/width-widened", TiedLM(), TiedLM(width=9), (tokens,), WARNED,
                xfail="issue 21: a widened tied embedding is refused by verification, not warned"),
        Surgery("one-hot-action/actions-added", ActionCritic(2), ActionCritic(3), obs_action,
                EXACT, inputs={1: (A2, A3)}),
        Surgery("one-hot-action/obs-added", ActionCritic(), ActionCritic(), obs_action, EXACT,
                inputs={0: (["x", "theta"], OBS)}),
        Surgery("token-slice/vocab-added", SlicedTokens(), SlicedTokens(len(TOKENS_NEW)),
                (tokens,), EXACT, inputs=vocab),
        Surgery("token-slice/embed-widened", SlicedTokens(), SlicedTokens(width=7), (tokens,),
                EXACT),
        Surgery("token-slice/actions-added", SlicedTokens(), SlicedTokens(actions=3), (tokens,),
                EXACT, outputs={0: (A2, A3)}),
    ]  # fmt: skip


SURGERIES: list[Surgery] = [*_cases_mlp_like(), *_cases_sequences()]
BY_ID = {s.id: s for s in SURGERIES}
