"""The promise of PRESERVING on random small DAGs: `make_plan` raises a `PlanError`, or the new
network reproduces the old outputs on the old inputs, or `plan.warnings` says it may not. A plan
with no warnings that moves the old outputs is the one unforgivable bug.

A network is a drawn spec run by one interpreter (`run`) as a pure function of a params dict:
for tracing with `jax.numpy`, for the reference forward passes with float64 NumPy, and to draw
the params (NumPy, nothing compiles but the transplant itself). Ops: a Dense with an activation,
a residual add `x + Dense(act(Dense(x)))`, a concatenation of two Dense branches; each optionally
followed by a LayerNorm or an RMSNorm; a Dense head. The new network is the same spec with one
drawn change set applied: inputs added, removed or permuted, outputs added, hidden widths widened
or narrowed, a layer inserted.
"""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from graph_zoo import embed
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import jsurgery

SETTINGS = dict(deadline=None, derandomize=True)
FEATURES = list("abcdefg")
ACTIONS = ["up", "down", "left", "right", "fire"]
ACTS = ("relu", "tanh", "gelu", "silu")
NORMS = (None, "layer", "rms")
EXACT_TOL = 1e-5


def activation(name: str, x, xp):
    if name == "relu":
        return xp.maximum(x, 0.0)
    if name == "tanh":
        return xp.tanh(x)
    if name == "gelu":  # the tanh approximation, as jax.nn.gelu computes it
        return 0.5 * x * (1.0 + xp.tanh(float(np.sqrt(2.0 / np.pi)) * (x + 0.044715 * x**3)))
    return x / (1.0 + xp.exp(-x))


def normalise(kind: str, x, take, xp):
    n = x.shape[-1]
    if kind == "layer":
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mean) / xp.sqrt(var + 1e-6)
        return y * take("LayerNorm", "scale", (n,)) + take("LayerNorm", "bias", (n,))
    y = x / xp.sqrt((x**2).mean(axis=-1, keepdims=True) + 1e-6)
    return y * take("RMSNorm", "scale", (n,))


def run(spec: tuple, take, x, xp):
    """The forward pass of `spec = (ops, n_out)`; `take(kind, leaf, shape)` gives each leaf, the
    layers of a kind numbered in the order they are used (`Dense_0`, `LayerNorm_0`, ...)."""
    ops, n_out = spec

    def dense(x, width):
        kernel = take("Dense", "kernel", (x.shape[-1], width))
        return x @ kernel + take("Dense", "bias", (width,))

    for kind, widths, act, norm in ops:
        if kind == "dense":
            x = activation(act, dense(x, widths[0]), xp)
        elif kind == "res":
            x = x + dense(activation(act, dense(x, widths[0]), xp), x.shape[-1])
        else:
            branches = [activation(act, dense(x, w), xp) for w in widths]
            x = xp.concatenate(branches, axis=-1)
        if norm is not None:
            x = normalise(norm, x, take, xp)
    return dense(x, n_out)


class Taker:
    """`take` for `run`: reads a params dict (`draw=None`) or draws it (a NumPy generator)."""

    def __init__(self, params: dict, xp, draw: np.random.Generator | None = None):
        self.params, self.xp, self.draw, self.used = params, xp, draw, Counter()
        self.dtype = np.float64 if xp is np else jnp.float32

    def __call__(self, kind: str, leaf: str, shape: tuple):
        name = f"{kind}_{self.used[kind]}"
        layer = self.params.setdefault(name, {})
        if leaf == "bias" or (kind == "RMSNorm" and leaf == "scale"):
            self.used[kind] += 1  # the last leaf a layer uses
        if self.draw is not None:
            layer[leaf] = self._value(leaf, shape)
        return self.xp.asarray(layer[leaf], self.dtype)

    def _value(self, leaf: str, shape: tuple) -> np.ndarray:
        normal = self.draw.normal(size=shape)
        if leaf == "kernel":
            normal = normal / np.sqrt(shape[0])
        elif leaf == "scale":
            normal = 1.0 + 0.2 * normal
        else:
            normal = 0.3 * normal
        return jnp.asarray(normal, jnp.float32)


def draw_params(spec: tuple, n_in: int, seed: int) -> dict:
    params: dict = {}
    run(spec, Taker(params, np, np.random.default_rng(seed)), np.zeros((1, n_in)), np)
    return params


def apply_fn(spec: tuple):
    return lambda params, x: run(spec, Taker(params, jnp), x, jnp)


def numpy_forward(spec: tuple, params: dict, x) -> np.ndarray:
    return run(spec, Taker(params, np), np.asarray(x, np.float64), np)


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------


@st.composite
def ops(draw):
    kind = draw(st.sampled_from(["dense", "res", "cat"]))
    widths = tuple(draw(st.integers(2, 4)) for _ in range(2 if kind == "cat" else 1))
    return kind, widths, draw(st.sampled_from(ACTS)), draw(st.sampled_from(NORMS))


def stream_width(ops_: tuple, n_in: int, upto: int) -> int:
    """The width of the stream after the first `upto` ops."""
    width = n_in
    for kind, widths, _, _ in ops_[:upto]:
        width = width if kind == "res" else sum(widths)
    return width


@st.composite
def id_change(draw, pool: list, least: int):
    old = draw(st.lists(st.sampled_from(pool), min_size=least, max_size=4, unique=True))
    keep = draw(st.lists(st.sampled_from(old), unique=True, min_size=1))
    extra = draw(st.lists(st.sampled_from([u for u in pool if u not in old]), max_size=2))
    return old, draw(st.permutations(list(dict.fromkeys(keep + extra))))


@st.composite
def surgeries(draw):
    """(old spec, new spec, input IDs, output IDs, seed): one generator, the change applied."""
    old_ops = tuple(draw(st.lists(ops(), min_size=1, max_size=4)))
    inputs = draw(id_change(FEATURES, 1))
    old_out = draw(st.lists(st.sampled_from(ACTIONS), min_size=2, max_size=3, unique=True))
    extra = draw(st.lists(st.sampled_from([a for a in ACTIONS if a not in old_out]), max_size=1))
    outputs = (old_out, draw(st.permutations(old_out + extra)))
    new_ops = [
        (kind, tuple(max(1, w + draw(st.integers(-1, 2))) for w in widths), act, norm)
        for kind, widths, act, norm in old_ops
    ]
    if draw(st.booleans()):
        at = draw(st.integers(1, len(new_ops)))
        width = stream_width(tuple(new_ops), len(inputs[1]), at)
        act, norm = draw(st.sampled_from(ACTS)), draw(st.sampled_from(NORMS))
        new_ops.insert(at, ("dense", (width,), act, norm))
    old_spec, new_spec = (old_ops, len(old_out)), (tuple(new_ops), len(outputs[1]))
    return old_spec, new_spec, inputs, outputs, draw(st.integers(0, 2**16))


# ----------------------------------------------------------------------------------------------
# The property
# ----------------------------------------------------------------------------------------------


def distance(y_old, y_new, outputs) -> float:
    """The largest |new - old| / (1 + |old|) over the old outputs the new network has."""
    new_pos = [outputs[1].index(u) for u in outputs[0] if u in outputs[1]]
    old_pos = [outputs[0].index(u) for u in outputs[0] if u in outputs[1]]
    a, b = y_old[:, old_pos], y_new[:, new_pos]
    return float(np.max(np.abs(b - a) / (1.0 + np.abs(a))))


def check_preserving_promise(old_spec, new_spec, inputs, outputs, seed, log=print) -> str:
    """Asserts the promise on one surgery; returns its outcome ("refused", "warned, moved", ...)
    and tells `log` the details."""
    old = draw_params(old_spec, len(inputs[0]), seed)
    new = draw_params(new_spec, len(inputs[1]), seed + 1)
    x = np.random.default_rng(seed).normal(size=(6, len(inputs[0]))).astype(np.float32)
    example = tuple((jax.ShapeDtypeStruct((6, len(ids)), jnp.float32),) for ids in inputs)
    try:
        plan = jsurgery.make_plan(
            old,
            new,
            apply=(apply_fn(old_spec), apply_fn(new_spec)),
            example=example,
            inputs=inputs,
            outputs=outputs,
            **jsurgery.PRESERVING,
        )
    except jsurgery.PlanError as error:
        log(f"refused: {error}")
        caught_late = "reported success while wrong" in str(error)
        assert not caught_late, f"caught only by verification: {error}"
        return "refused"
    out = jsurgery.transplant(old, new, plan)
    y_old = numpy_forward(old_spec, old, x)
    y_new = numpy_forward(new_spec, out, embed(x, *inputs))
    moved = distance(y_old, y_new, outputs)
    log(f"moved {moved:.3g}; warnings: {plan.warnings}")
    if not plan.warnings:
        assert moved <= EXACT_TOL, f"no warning, and the old outputs moved by {moved:.3g}"
    if {p.kind for p in plan.promises if not p.new} == {"exact"}:
        assert moved <= EXACT_TOL, f"promised exact, and the old outputs moved by {moved:.3g}"
    return ("warned" if plan.warnings else "silent") + (
        ", exact" if moved <= EXACT_TOL else ", moved"
    )


@settings(max_examples=12, **SETTINGS)
@given(surgeries())
def test_preserving_refuses_or_is_exact_or_warns_on_random_dags(surgery):
    event(check_preserving_promise(*surgery, log=note))


@pytest.mark.slow
@settings(max_examples=500, **SETTINGS)
@given(surgeries())
def test_preserving_refuses_or_is_exact_or_warns_on_many_random_dags(surgery):
    event(check_preserving_promise(*surgery, log=note))


# ----------------------------------------------------------------------------------------------
# Counterexamples the property found (each a plan with no warning whose outputs move)
# ----------------------------------------------------------------------------------------------


def _inserted_after(first: tuple, inserted: tuple) -> tuple:
    """One hidden layer, and a layer of the same width inserted after it; IDs unchanged."""
    return ((first,), 2), ((first, inserted), 2), (["a"], ["a"]), (["up", "down"], ["up", "down"])


IDENTITY_BEFORE_AN_ACTIVATION = {
    "relu-after-layernorm": _inserted_after(
        ("dense", (2,), "relu", "layer"), ("dense", (2,), "relu", None)
    ),
    "relu-after-tanh": _inserted_after(
        ("dense", (2,), "tanh", None), ("dense", (2,), "relu", None)
    ),
    "tanh-after-tanh": _inserted_after(
        ("dense", (2,), "tanh", None), ("dense", (2,), "tanh", None)
    ),
    "gelu-after-gelu": _inserted_after(
        ("dense", (2,), "gelu", None), ("dense", (2,), "gelu", None)
    ),
    "silu-after-layernorm": _inserted_after(
        ("dense", (2,), "relu", "layer"), ("dense", (2,), "silu", None)
    ),
}


@pytest.mark.parametrize("case", list(IDENTITY_BEFORE_AN_ACTIVATION))
def test_identity_inserted_before_an_activation_warns_or_is_exact(case):
    check_preserving_promise(*IDENTITY_BEFORE_AN_ACTIVATION[case], seed=0)


def test_identity_inserted_before_relu_after_relu_is_exact():
    """relu(relu(x)) = relu(x): here the inserted identity keeps the old outputs."""
    relu = ("dense", (2,), "relu", None)
    assert check_preserving_promise(*_inserted_after(relu, relu), seed=0) == "silent, exact"
