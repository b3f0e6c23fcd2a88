"""New units that start exact and learn: Net2Net replicas under `PRESERVING` get unequal shares
of the fan-out, so gradient steps move every copy differently from its original; new inputs
(zero weights) and new outputs (pessimistic) learn too.

A two-hidden-layer MLP is widened 8 -> 13 (a non-multiple: five units get one copy, three none),
and gains an input and an output (both appended). Each case is judged by forward passes and by
the parameters before and after SGD steps; which units are new, and which old unit each copies,
is the index arithmetic written here (hidden IDs are positions, so new unit p copies old unit
p mod 8).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import apply_fn, rand, randomise_biases

import jsurgery

OLD, NEW, N_IN, N_OUT = 8, 13, 4, 3
INPUTS = (list("abcd"), list("abcde"))
OUTPUTS = (["l", "m", "r"], ["l", "m", "r", "n"])
LAYERS = ("hidden_0", "hidden_1")
READER = {"hidden_0": "hidden_1", "hidden_1": "head"}
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}
X = 2.0 * rand((64, N_IN), 3)
X_NEW = np.c_[X, 2.0 * rand((64, 1), 5)]
TARGET = rand((64, N_OUT + 1), 4)


class Torso(nn.Module):
    """Dense -> activation twice, then a linear head."""

    width: int
    activation: str
    out: int = N_OUT

    @nn.compact
    def __call__(self, x):
        for name in LAYERS:
            x = ACTIVATIONS[self.activation](nn.Dense(self.width, name=name)(x))
        return nn.Dense(self.out, name="head")(x)


def _widened(activation: str, **rules):
    """The old and new models, the old variables and the transplanted new ones."""
    old_m, new_m = Torso(OLD, activation), Torso(NEW, activation, N_OUT + 1)
    old = randomise_biases(jax.jit(old_m.init)(jax.random.key(0), jnp.ones((1, N_IN))), 1)
    template = jax.jit(new_m.init)(jax.random.key(2), jnp.ones((1, N_IN + 1)))
    rules = {**jsurgery.PRESERVING, **rules}
    plan = jsurgery.make_plan(old, template, inputs=INPUTS, outputs=OUTPUTS, **rules)
    return old_m, new_m, old, jsurgery.transplant(old, template, plan)


def _sgd(model: nn.Module, steps: int = 3, lr: float = 0.1):
    """`steps` SGD steps on the mean squared error to `TARGET` on `X_NEW`, jitted."""

    def loss(params):
        y = model.apply({"params": params}, X_NEW)
        return jnp.mean((y - TARGET) ** 2)

    def train(params):
        for _ in range(steps):
            params = jax.tree.map(lambda p, g: p - lr * g, params, jax.grad(loss)(params))
        return params

    return jax.jit(train)


def _incoming(params, layer: str) -> np.ndarray:
    """Per unit of `layer`, its incoming weights and bias: shape (units, fan-in + 1)."""
    p = params[layer]
    return np.asarray(jnp.concatenate([p["kernel"], p["bias"][None]], axis=0).T)


def _outgoing(params, layer: str) -> np.ndarray:
    """Per unit of `layer`, its outgoing weights (a row of the reader's kernel)."""
    return np.asarray(params[READER[layer]]["kernel"])


def _closest_pair(rows: np.ndarray) -> float:
    """The smallest largest-entry difference between two distinct rows."""
    diff = np.abs(rows[:, None] - rows[None]).max(axis=-1)
    return float(diff[~np.eye(len(rows), dtype=bool)].min())


@pytest.fixture(scope="module", params=["relu", "tanh"])
def trained(request):
    """Per activation: the old and new models, old variables, new variables before and after
    three SGD steps."""
    old_m, new_m, old, new = _widened(request.param)
    return old_m, new_m, old, new, _sgd(new_m)(new["params"])


def test_widened_network_computes_the_old_outputs(trained):
    old_m, new_m, old, new, _ = trained
    y_old = apply_fn(old_m)(old, X)
    y_new = apply_fn(new_m)(new, X_NEW)[:, :N_OUT]
    np.testing.assert_allclose(y_new, y_old, rtol=0, atol=1e-5 * np.abs(y_old).max())


@pytest.mark.parametrize("layer", LAYERS)
def test_every_new_unit_moves_under_sgd(trained, layer):
    """A unit whose incoming weights do not move gets no gradient: dead (relu'(0) = 0 in JAX)
    or read with a zero weight."""
    _, _, _, new, after = trained
    before = new["params"]
    scale = 1e-4 * np.abs(_incoming(before, layer)).max()
    for p in range(OLD, NEW):
        moved_in = np.abs(_incoming(after, layer)[p] - _incoming(before, layer)[p]).max()
        moved_out = np.abs(_outgoing(after, layer)[p] - _outgoing(before, layer)[p]).max()
        assert moved_in > scale and moved_out > scale, (layer, p, moved_in, moved_out)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_two_units_are_identical_after_sgd(trained, layer):
    _, _, _, new, after = trained
    rows = _incoming(after, layer)
    assert _closest_pair(rows) > 1e-6 * np.abs(rows).max(), layer


def test_new_inputs_and_outputs_move_under_sgd(trained):
    """The new input starts with zero weights, the new output at the old outputs' mean: both
    are read or written by live units, so both receive gradients."""
    _, _, _, new, after = trained
    before = new["params"]
    moved_input = np.abs(after["hidden_0"]["kernel"][N_IN] - before["hidden_0"]["kernel"][N_IN])
    moved_output = np.abs(after["head"]["kernel"][:, N_OUT] - before["head"]["kernel"][:, N_OUT])
    assert moved_input.max() > 1e-4 and moved_output.max() > 1e-4, (moved_input, moved_output)
    np.testing.assert_array_equal(before["hidden_0"]["kernel"][N_IN], 0.0)


def test_equal_split_copies_stay_identical_under_sgd():
    """The failure the unequal split avoids: with equal shares a copy receives its original's
    gradient exactly, so the two never part (the check above would fail)."""
    _, new_m, _, new = _widened("tanh", new_hidden=jsurgery.init.net2net(split="equal"))
    after = _sgd(new_m)(new["params"])
    for layer in LAYERS:
        rows = _incoming(after, layer)
        for p in range(OLD, NEW):
            np.testing.assert_array_equal(rows[p], rows[p % OLD])


def test_shares_of_a_unit_and_its_copies_are_distinct_and_sum_to_one(trained):
    """Each reader row of a replicated unit is the old row times a share; per old unit the
    shares sum to 1, differ pairwise and are at least two thirds of the equal share."""
    _, _, old, new, _ = trained
    for layer in LAYERS:
        old_rows = np.asarray(old["params"][READER[layer]]["kernel"])
        new_rows = _outgoing(new["params"], layer)
        new_rows = new_rows[:, : old_rows.shape[1]]  # the reader's old units come first
        src = np.arange(NEW) % OLD
        share = (new_rows * old_rows[src]).sum(1) / (old_rows[src] ** 2).sum(1)
        np.testing.assert_allclose(new_rows, share[:, None] * old_rows[src], rtol=1e-5, atol=1e-6)
        for unit in range(OLD):
            group = share[src == unit]
            np.testing.assert_allclose(group.sum(), 1.0, rtol=1e-5)
            assert np.all(group >= (2 / 3) / len(group) - 1e-6), (layer, unit, group)
            if len(group) > 1:
                assert _closest_pair(group[:, None]) > 0.05 / len(group), (layer, unit, group)


@pytest.mark.parametrize("split", ["uneven", None, 0.5])
def test_unknown_split_is_refused_with_the_choices(split):
    with pytest.raises(jsurgery.PlanError, match=r"`split`.*'unequal', 'equal'"):
        jsurgery.init.net2net(split=split)


# Recurrent carries: new units start at zero incoming weights, so they stay exactly zero.

CELLS = {
    "lstm": nn.LSTMCell,
    "gru": nn.GRUCell,
    "simple-tanh": nn.SimpleCell,
    "simple-relu": functools.partial(nn.SimpleCell, activation_fn=nn.relu),
}
STEPS, BATCH = 5, 16


class CellNet(nn.Module):
    """`apply(v, carry, obs) -> (carry, logits)`: one step of a cell, then a linear head."""

    cell: str
    hidden: int

    @nn.compact
    def __call__(self, carry, obs):
        carry, h = CELLS[self.cell](self.hidden, name="cell")(carry, obs)
        return carry, nn.Dense(N_OUT, name="head")(h)


def _zero_carry(cell: str, hidden: int):
    z = jnp.zeros((BATCH, hidden))
    return (z, z) if cell == "lstm" else z


def _carried_units_moved(cell: str, new_hidden: str) -> np.ndarray:
    """Per new unit of the carry, the largest change of a weight into it (any gate) after three
    SGD steps through a five-step rollout, from a carry of zeros."""
    old_m, new_m = CellNet(cell, OLD), CellNet(cell, NEW)
    obs = jnp.asarray(rand((STEPS, BATCH, N_IN), 6))
    c_old, c_new = _zero_carry(cell, OLD), _zero_carry(cell, NEW)
    old = randomise_biases(old_m.init(jax.random.key(0), c_old, obs[0]), 1)
    template = new_m.init(jax.random.key(2), c_new, obs[0])
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((c_old, obs[0]), (c_new, obs[0])),
        **{**jsurgery.PRESERVING, "new_hidden": new_hidden},
    )
    new = jsurgery.transplant(old, template, plan)
    target = jnp.asarray(rand((STEPS, BATCH, N_OUT), 7))

    def loss(params):
        carry, total = c_new, 0.0
        for t in range(STEPS):
            carry, y = new_m.apply({"params": params}, carry, obs[t])
            total = total + jnp.mean((y - target[t]) ** 2)
        return total

    @jax.jit
    def train(params):
        for _ in range(3):
            params = jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))
        return params

    before, after = new["params"]["cell"], train(new["params"])["cell"]
    moved = np.zeros(NEW - OLD)
    for gate, leaves in before.items():
        for name, value in leaves.items():
            change = np.abs(np.asarray(after[gate][name]) - np.asarray(value))
            moved = np.maximum(moved, change.reshape(-1, NEW)[:, OLD:].max(axis=0))
    return moved


@pytest.mark.parametrize(
    "cell", [pytest.param("lstm", marks=pytest.mark.slow), "gru", "simple-tanh"]
)
def test_new_carried_units_learn_in_gated_and_tanh_cells(cell):
    assert np.all(_carried_units_moved(cell, "net2net") > 1e-4)


def test_new_carried_units_of_a_relu_cell_stay_stuck_and_zero_fanout_frees_them():
    """relu(0) has gradient 0 in JAX: a unit whose incoming weights and bias are zero never
    receives one. `zero_fanout` reads the template's weights instead, so its units are live
    (a unit may still be dead the ordinary way, negative on every input)."""
    np.testing.assert_array_equal(_carried_units_moved("simple-relu", "net2net"), 0.0)
    assert (_carried_units_moved("simple-relu", "zero_fanout") > 1e-4).sum() >= 3
