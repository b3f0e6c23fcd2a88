"""Recurrent policies: a cell's step with the carry as argument and output, and a scanned RNN.

Every check is a rollout: the old and the new network step through the same 16 observations (the
new one sees them embedded by `graph_zoo.embed`), and at every step the old actions' logits and the
old hidden units of the carry agree to 1e-5, while new hidden units stay at exactly zero.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from graph_zoo import LeafCheck, check_leaf, compare_outputs, embed, kept, pos

import jsurgery

OBS3, OBS4 = ["x", "theta", "omega"], ["x", "x_dot", "theta", "omega"]
A2, A3 = ["left", "right"], ["left", "noop", "right"]
CELLS = {"lstm": nn.LSTMCell, "optimized-lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell,
         "simple": nn.SimpleCell}
STEPS, BATCH = 16, 3


class CellPolicy(nn.Module):
    """obs -> Dense encoder -> cell -> (logits, value): `apply(v, carry, obs) -> (carry, out)`."""

    cell: str
    hidden: int
    actions: int

    @nn.compact
    def __call__(self, carry, obs):
        x = nn.relu(nn.Dense(8, name="encoder")(obs))
        carry, h = CELLS[self.cell](self.hidden, name="cell")(carry, x)
        return carry, (nn.Dense(self.actions, name="pi")(h), nn.Dense(1, name="v")(h)[..., 0])


def zero_carry(cell: str, hidden: int):
    z = jnp.zeros((BATCH, hidden))
    return (z, z) if "lstm" in cell else z


def _variables(model, carry, obs, seed):
    """Init, then every leaf moved off its init (biases non-zero) so every copy shows."""
    v = model.init(jax.random.key(seed), carry, obs)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), v)


def _surgery(cell, old_h, new_h, preset=jsurgery.PRESERVING, new_actions=True, new_obs=True):
    old_m, new_m = CellPolicy(cell, old_h, 2), CellPolicy(cell, new_h, 3 if new_actions else 2)
    obs_ids = (OBS3, OBS4 if new_obs else OBS3)
    act_ids = (A2, A3 if new_actions else A2)
    c_old, c_new = zero_carry(cell, old_h), zero_carry(cell, new_h)
    x_old = jnp.zeros((BATCH, 3))
    x_new = jnp.zeros((BATCH, len(obs_ids[1])))
    old = _variables(old_m, c_old, x_old, 0)
    new = _variables(new_m, c_new, x_new, 1)
    n = len(jax.tree.leaves(c_old))
    plan = jsurgery.make_plan(old, new, apply=(old_m.apply, new_m.apply),
                              example=((c_old, x_old), (c_new, x_new)),
                              inputs={n: obs_ids}, outputs={n: act_ids}, **preset)
    return old_m, new_m, old, new, plan, jsurgery.transplant(old, new, plan), obs_ids, act_ids


def _rollout_matches(old_m, new_m, old, out, plan, obs_ids, act_ids, carry, old_h):
    rng = np.random.default_rng(7)
    obs = rng.normal(size=(STEPS, BATCH, 3)).astype(np.float32)
    c_old, c_new = carry, jsurgery.transplant_carry(carry, plan)
    step_old, step_new = jax.jit(old_m.apply), jax.jit(new_m.apply)
    for t in range(STEPS):
        c_old, y_old = step_old(old, c_old, obs[t])
        c_new, y_new = step_new(out, c_new, embed(obs[t], *obs_ids))
        compare_outputs(y_old, y_new, {0: act_ids}, 1e-5)
        for a, b in zip(jax.tree.leaves(c_old), jax.tree.leaves(c_new), strict=True):
            np.testing.assert_allclose(np.asarray(b)[:, :old_h], a, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(np.asarray(b)[:, old_h:], 0.0)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("start", ["zero-carry", "live-carry"])
def test_widened_cell_with_new_inputs_and_actions_matches_every_step(cell, start):
    old_m, new_m, old, _, plan, out, obs_ids, act_ids = _surgery(cell, 4, 6)
    carry = zero_carry(cell, 4)
    if start == "live-carry":
        rng = np.random.default_rng(3)
        carry = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), z.dtype), carry)
    _rollout_matches(old_m, new_m, old, out, plan, obs_ids, act_ids, carry, 4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_new_hidden_units_get_zero_incoming_weights_in_every_gate(cell):
    *_, old, new, plan, out, _, _ = _surgery(cell, 4, 6, new_actions=False, new_obs=False)
    params, tmpl = out["params"]["cell"], new["params"]["cell"]
    for name, layer in params.items():
        np.testing.assert_array_equal(layer["kernel"][:, 4:], 0.0, err_msg=name)
        if "bias" in layer:
            np.testing.assert_array_equal(layer["bias"][4:], 0.0, err_msg=name)
        if name.startswith("h"):  # recurrent kernels read the new units with template rows
            np.testing.assert_array_equal(layer["kernel"][4:, :4], tmpl[name]["kernel"][4:, :4])
    assert "carried" in str(plan)


def test_narrowed_gru_keeps_the_surviving_units():
    """Narrowing is per gate and consistent: hidden unit k keeps its row and column k in every
    gate's kernels (TRANSPLANT: copies by position)."""
    *_, old, new, _, out, _, _ = _surgery("gru", 6, 4, jsurgery.TRANSPLANT, False, False)
    for gate in ("r", "z", "n"):
        check_leaf(LeafCheck(("params", "cell", f"h{gate}", "kernel"),
                             {0: pos(6, 4), 1: pos(6, 4)}), old, out, new)
        check_leaf(LeafCheck(("params", "cell", f"i{gate}", "kernel"), {1: pos(6, 4)}), old,
                   out, new)
    check_leaf(LeafCheck(("params", "pi", "kernel"), {0: pos(6, 4)}), old, out, new)


def test_transplant_keeps_template_for_new_units_and_copies_old_ones():
    *_, old, new, _, out, obs_ids, act_ids = _surgery("optimized-lstm", 4, 5, jsurgery.TRANSPLANT)
    for gate in "ifgo":
        check_leaf(LeafCheck(("params", "cell", f"i{gate}", "kernel"), {1: pos(4, 5)}), old,
                   out, new)
        check_leaf(LeafCheck(("params", "cell", f"h{gate}", "kernel"),
                             {0: pos(4, 5), 1: pos(4, 5)}), old, out, new)
    check_leaf(LeafCheck(("params", "encoder", "kernel"), {0: obs_ids}), old, out, new)
    check_leaf(LeafCheck(("params", "pi", "kernel"), {0: pos(4, 5), 1: act_ids}), old, out, new)


def test_transplant_carry_moves_units_by_position_and_zeroes_new_ones():
    *_, plan, _, _, _ = _surgery("lstm", 4, 6)
    c = jnp.arange(12.0).reshape(3, 4)
    moved = jsurgery.transplant_carry((c, c + 1), plan)
    np.testing.assert_array_equal(moved[0][:, :4], c)
    np.testing.assert_array_equal(moved[1][:, 4:], 0.0)
    with pytest.raises(jsurgery.PlanError, match="carry"):
        jsurgery.transplant_carry((jnp.zeros((3, 5)), jnp.zeros((3, 5))), plan)


class SigmoidCell(nn.Module):
    """h' = sigmoid(W x + U h): a zero state does not stay zero."""

    hidden: int

    @nn.compact
    def __call__(self, h, x):
        h = nn.sigmoid(nn.Dense(self.hidden)(x) + nn.Dense(self.hidden, use_bias=False)(h))
        return h, nn.Dense(2)(h)


def test_a_cell_that_does_not_keep_zero_is_refused_and_zero_fanout_is_exact():
    old_m, new_m = SigmoidCell(3), SigmoidCell(5)
    x = jnp.ones((2, 4))
    h3, h5 = jnp.zeros((2, 3)), jnp.zeros((2, 5))
    old, new = old_m.init(jax.random.key(0), h3, x), new_m.init(jax.random.key(1), h5, x)
    kw = dict(apply=(old_m.apply, new_m.apply), example=((h3, x), (h5, x)))
    with pytest.raises(jsurgery.PlanError, match="zero_fanout"):
        jsurgery.make_plan(old, new, **kw, **jsurgery.PRESERVING)
    fanout = {**jsurgery.PRESERVING, "new_hidden": "zero_fanout"}
    plan = jsurgery.make_plan(old, new, **kw, **fanout)
    out = jsurgery.transplant(old, new, plan)
    h_old, h_new = jnp.full((2, 3), 0.3), jsurgery.transplant_carry(jnp.full((2, 3), 0.3), plan)
    for _ in range(STEPS):
        h_old, y_old = old_m.apply(old, h_old, x)
        h_new, y_new = new_m.apply(out, h_new, x)
        np.testing.assert_allclose(y_new, y_old, atol=1e-5)
        np.testing.assert_allclose(h_new[:, :3], h_old, atol=1e-5)


def test_carry_on_one_side_only_is_refused():
    old_m, new_m = SigmoidCell(3), SigmoidCell(5)
    x = jnp.ones((2, 4))
    h3 = jnp.zeros((2, 3))
    old = old_m.init(jax.random.key(0), h3, x)
    new = new_m.init(jax.random.key(1), jnp.zeros((2, 5)), x)
    with pytest.raises(jsurgery.PlanError, match="carry"):
        jsurgery.make_plan(old, new, apply=(old_m.apply, lambda v, h, x: new_m.apply(v, h, x)[1]),
                           example=((h3, x), (jnp.zeros((2, 5)), x)))


# ----------------------------------------------------------------------------------------------
# The recurrence inside the function: nn.RNN (a lifted scan) over a sequence
# ----------------------------------------------------------------------------------------------


class ScannedPolicy(nn.Module):
    """(B, T, obs) -> encoder -> nn.RNN(cell) from a zero carry -> logits (B, T, actions)."""

    cell: str
    hidden: int
    actions: int

    @nn.compact
    def __call__(self, obs):
        x = nn.relu(nn.Dense(8, name="encoder")(obs))
        h = nn.RNN(CELLS[self.cell](self.hidden), name="rnn")(x)
        return nn.Dense(self.actions, name="pi")(h)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_scanned_rnn_widened_with_new_inputs_and_actions_matches_every_step(cell):
    old_m, new_m = ScannedPolicy(cell, 4, 2), ScannedPolicy(cell, 6, 3)
    obs = np.random.default_rng(1).normal(size=(BATCH, STEPS, 3)).astype(np.float32)
    old = _scan_vars(old_m, obs, 0)
    new = _scan_vars(new_m, np.zeros((BATCH, STEPS, 4), np.float32), 1)
    plan = jsurgery.make_plan(old, new, apply=(old_m.apply, new_m.apply),
                              example=((obs,), (jax.ShapeDtypeStruct((BATCH, STEPS, 4),
                                                                     "float32"),)),
                              inputs=(OBS3, OBS4), outputs=(A2, A3), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    y_old = np.asarray(old_m.apply(old, obs))
    y_new = np.asarray(new_m.apply(out, embed(obs, OBS3, OBS4)))
    new_pos, old_pos = kept(A2, A3)
    for t in range(STEPS):  # every step of the sequence
        np.testing.assert_allclose(y_new[:, t, new_pos], y_old[:, t, old_pos], atol=1e-5, rtol=0)


def _scan_vars(model, obs, seed):
    v = model.init(jax.random.key(seed), obs)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), v)


def test_the_user_guide_examples_run():
    """docs/recurrent.md: every code block, in order, as one script (its asserts included)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs" / "recurrent.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    exec(compile(code, "docs/recurrent.md", "exec"), {})
