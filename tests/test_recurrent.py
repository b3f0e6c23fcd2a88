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
CELLS = {
    "lstm": nn.LSTMCell,
    "optimized-lstm": nn.OptimizedLSTMCell,
    "gru": nn.GRUCell,
    "simple": nn.SimpleCell,
}
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
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((c_old, x_old), (c_new, x_new)),
        inputs={n: obs_ids},
        outputs={n: act_ids},
        **preset,
    )
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


def _small(scale):
    return {**jsurgery.TRANSPLANT, "new_hidden": "small_random", "init_scale": scale}


def _hidden_axes(path, shape, new_h):
    """The axes of a GRU policy leaf that hold hidden units (by path and size)."""
    if path[1] == "cell":
        return [a for a, n in enumerate(shape) if n == new_h]
    return [0] if path[1] in ("pi", "v") and path[2] == "kernel" else []


def test_small_random_gru_scales_every_weight_of_a_new_unit_in_every_gate():
    scale = 0.05
    *_, old, new, plan, out, _, _ = _surgery("gru", 4, 6, _small(scale), False, False)
    assert "small random: template x 0.05" in str(plan)
    flat_old = dict(jax.tree_util.tree_flatten_with_path(old)[0])
    checked = 0
    for kp, got in jax.tree_util.tree_flatten_with_path(out)[0]:
        path = tuple(k.key for k in kp)
        tmpl = new
        for k in path:
            tmpl = tmpl[k]
        tmpl = np.asarray(tmpl, np.float64)
        axes = _hidden_axes(path, tmpl.shape, 6)
        want = np.array(tmpl)
        grown = np.zeros(tmpl.shape, bool)
        for a in axes:
            grown |= np.reshape(np.arange(6) >= 4, [-1 if b == a else 1 for b in range(tmpl.ndim)])
        old_leaf = np.asarray(flat_old[kp], np.float64)
        want[tuple(slice(0, n) for n in old_leaf.shape)] = old_leaf
        want = np.where(grown, tmpl * scale, want)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=str(path))
        checked += bool(axes)
    assert checked == 12  # 6 gate kernels, 4 gate biases (ir, iz, in, hn), pi and v kernels


def test_small_random_gru_rollout_moves_in_proportion_to_the_scale():
    diffs = []
    for scale in (0.1, 0.01):
        old_m, new_m, old, _, plan, out, obs_ids, act_ids = _surgery("gru", 4, 6, _small(scale))
        rng = np.random.default_rng(7)
        c_old = zero_carry("gru", 4)
        c_new = jsurgery.transplant_carry(c_old, plan)
        worst = 0.0
        for _ in range(STEPS):
            obs = rng.normal(size=(BATCH, 3)).astype(np.float32)
            c_old, (y_old, _) = old_m.apply(old, c_old, obs)
            c_new, (y_new, _) = new_m.apply(out, c_new, embed(obs, *obs_ids))
            kept_new, kept_old = kept(*act_ids)
            worst = max(
                worst,
                float(
                    np.abs(np.asarray(y_new)[:, kept_new] - np.asarray(y_old)[:, kept_old]).max()
                ),
            )
        diffs.append(worst)
    assert diffs[0] > 0
    assert diffs[1] <= diffs[0] / 10 * 1.01, diffs


def test_narrowed_gru_keeps_the_surviving_units():
    """Narrowing is per gate and consistent: hidden unit k keeps its row and column k in every
    gate's kernels (TRANSPLANT: copies by position)."""
    *_, old, new, _, out, _, _ = _surgery("gru", 6, 4, jsurgery.TRANSPLANT, False, False)
    for gate in ("r", "z", "n"):
        check_leaf(
            LeafCheck(("params", "cell", f"h{gate}", "kernel"), {0: pos(6, 4), 1: pos(6, 4)}),
            old,
            out,
            new,
        )
        check_leaf(
            LeafCheck(("params", "cell", f"i{gate}", "kernel"), {1: pos(6, 4)}), old, out, new
        )
    check_leaf(LeafCheck(("params", "pi", "kernel"), {0: pos(6, 4)}), old, out, new)


def test_transplant_keeps_template_for_new_units_and_copies_old_ones():
    *_, old, new, _, out, obs_ids, act_ids = _surgery("optimized-lstm", 4, 5, jsurgery.TRANSPLANT)
    for gate in "ifgo":
        check_leaf(
            LeafCheck(("params", "cell", f"i{gate}", "kernel"), {1: pos(4, 5)}), old, out, new
        )
        check_leaf(
            LeafCheck(("params", "cell", f"h{gate}", "kernel"), {0: pos(4, 5), 1: pos(4, 5)}),
            old,
            out,
            new,
        )
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
        jsurgery.make_plan(
            old,
            new,
            apply=(old_m.apply, lambda v, h, x: new_m.apply(v, h, x)[1]),
            example=((h3, x), (jnp.zeros((2, 5)), x)),
        )


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
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((obs,), (jax.ShapeDtypeStruct((BATCH, STEPS, 4), "float32"),)),
        inputs=(OBS3, OBS4),
        outputs=(A2, A3),
        **jsurgery.PRESERVING,
    )
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
    pytest.importorskip("equinox", reason="the guide's last example is an Equinox model")
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs" / "recurrent.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    exec(compile(code, "docs/recurrent.md", "exec"), {})


# ----------------------------------------------------------------------------------------------
# carry=: detected, switched off, or named
# ----------------------------------------------------------------------------------------------


class TwoInputs(nn.Module):
    """(x, z) -> (Dense(x), Dense(z)): the first argument and output look like a carry for
    `feats` equal to x's width, but nothing is carried."""

    feats: int = 3

    @nn.compact
    def __call__(self, x, z):
        return nn.Dense(self.feats, name="a")(x), nn.Dense(2, name="b")(z)


def test_carry_false_plans_a_function_whose_first_argument_only_looks_like_a_carry():
    m = TwoInputs()
    x3, x4, z = jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones((2, 2))
    old, new = m.init(jax.random.key(0), x3, z), m.init(jax.random.key(1), x4, z)
    kw = dict(
        apply=m.apply, example=((x3, z), (x4, z)), inputs={0: (OBS3, OBS4)}, **jsurgery.PRESERVING
    )
    with pytest.raises(jsurgery.PlanError, match="carry=False"):
        jsurgery.make_plan(old, new, **kw)  # detected on the old side only
    plan = jsurgery.make_plan(old, new, carry=False, **kw)
    assert plan.carry is None and "carry:" not in str(plan)
    out = jsurgery.transplant(old, new, plan)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    compare_outputs(m.apply(old, x, z), m.apply(out, embed(x, OBS3, OBS4), z), {}, 1e-5)
    with pytest.raises(jsurgery.PlanError, match="no carry"):
        jsurgery.transplant_carry(jnp.ones((2, 3)), plan)


def _swapped(model):
    """The cell policy as `apply(v, obs, carry) -> (out, carry)`: the carry second both ways."""

    def apply(v, obs, carry):
        carry, out = model.apply(v, carry, obs)
        return out, carry

    return apply


def test_carry_named_by_argument_and_output_index_matches_every_step():
    old_m, new_m = CellPolicy("lstm", 4, 2), CellPolicy("lstm", 6, 2)
    c4, c6, x3 = zero_carry("lstm", 4), zero_carry("lstm", 6), jnp.zeros((BATCH, 3))
    old, new = _variables(old_m, c4, x3, 0), _variables(new_m, c6, x3, 1)
    kw = dict(
        apply=(_swapped(old_m), _swapped(new_m)),
        example=((x3, c4), (x3, c6)),
        **jsurgery.PRESERVING,
    )
    with pytest.raises(jsurgery.PlanError, match="new_outputs='template'"):
        jsurgery.make_plan(old, new, **kw)  # its state, taken as an output, cannot start low
    unverified = jsurgery.make_plan(old, new, **kw, verify=False)
    assert unverified.carry is None  # not the (carry, x) convention
    plan = jsurgery.make_plan(old, new, carry=(1, 1), **kw)
    assert (plan.carry.argument, plan.carry.output) == (1, 1)
    assert plan.carry.input_leaves == (1, 2) and plan.carry.output_leaves == (2, 3)
    assert "carry:   argument 1 -> output 1 (2 leaves)" in str(plan)
    out = jsurgery.transplant(old, new, plan)
    rng = np.random.default_rng(3)
    c_old = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), z.dtype), c4)
    c_new = jsurgery.transplant_carry(c_old, plan)
    for _ in range(STEPS):
        obs = rng.normal(size=(BATCH, 3)).astype(np.float32)
        y_old, c_old = _swapped(old_m)(old, obs, c_old)
        y_new, c_new = _swapped(new_m)(out, obs, c_new)
        compare_outputs(y_old, y_new, {}, 1e-5)
        np.testing.assert_array_equal(np.asarray(c_new[1])[:, 4:], 0.0)


@pytest.mark.parametrize(
    "carry, words",
    [
        ((1, 0), ["argument 1", "output 0", "same structure"]),
        ((2, 1), ["argument 2", "takes 2"]),
        ("h", ["carry", "arg_index"]),
    ],
    ids=["does-not-come-back", "out-of-range", "not-a-pair"],
)
def test_a_named_carry_that_does_not_fit_is_refused(carry, words):
    m = CellPolicy("gru", 4, 2)
    c4, x3 = zero_carry("gru", 4), jnp.zeros((BATCH, 3))
    v = _variables(m, c4, x3, 0)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(v, v, apply=_swapped(m), example=((x3, c4), (x3, c4)), carry=carry)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_carry_on_the_params_only_path_is_refused():
    v = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(jsurgery.PlanError, match="carry.*apply="):
        jsurgery.make_plan(v, v, carry=(0, 0))
