"""A C51 head, `Dense(actions * atoms)` reshaped to `(actions, atoms)`, gains and loses actions.

Every case is judged by forward passes of the old and new networks on random observations, the
expected values computed here: probabilities by a softmax over the atoms, Q-values as their
expectation over the support.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery

A2, A3 = ["left", "right"], ["left", "noop", "right"]
ATOMS = 11
X = jnp.zeros((2, 4))
OBS = jnp.asarray(np.random.default_rng(3).normal(size=(64, 4)), jnp.float32)


class C51(nn.Module):
    """obs -> 32 -> actions * atoms logits, reshaped to (actions, atoms); Q-values are the
    expectation over the support `linspace(low, high, atoms)`. Returns `(logits, q)`, or one of
    them (`returns`)."""

    actions: int
    returns: str = "both"
    low: float = -10.0
    high: float = 10.0
    bias: bool = True

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(32, name="torso")(x))
        head = nn.Dense(self.actions * ATOMS, use_bias=self.bias, name="head")(h)
        logits = head.reshape(-1, self.actions, ATOMS)
        support = jnp.linspace(self.low, self.high, ATOMS)
        q = (jax.nn.softmax(logits, axis=-1) * support).sum(axis=-1)
        if self.returns == "atoms":
            return logits.mean(axis=1)  # the atoms alone, averaged over the actions
        return {"both": (logits, q), "logits": logits, "q": q}[self.returns]


def _variables(model, seed):
    """Initialised variables, every leaf moved off its init so that copies show."""
    rng = np.random.default_rng(seed)
    v = model.init(jax.random.key(seed), X)
    return jax.tree.map(lambda a: a + jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), v)


def _surgery(old_m, new_m, **kw):
    """The old variables, the transplanted new ones and the plan (PRESERVING unless `kw` says
    otherwise)."""
    old, template = _variables(old_m, 0), _variables(new_m, 1)
    kw = {**jsurgery.PRESERVING, **kw}
    plan = jsurgery.make_plan(
        old, template, apply=(old_m.apply, new_m.apply), example=((X,), (X,)), **kw
    )
    return old, jsurgery.transplant(old, template, plan), plan


def _forward(model, variables):
    """`(probabilities, q)` over `OBS`, computed here from the logits."""
    logits = np.asarray(C51(model.actions, "logits", model.low, model.high).apply(variables, OBS))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)
    return probs, probs @ np.linspace(model.low, model.high, ATOMS)


def _assert_exact(new, old):
    """`new` equals `old` to 1e-5 relative (plus 1e-5 where `old` is near zero)."""
    np.testing.assert_array_less(np.abs(new - old), 1e-5 * (1 + np.abs(old)))


BOTH = {0: (A2, A3), 1: (A2, A3)}


def test_a_per_id_copy_gives_the_new_action_the_named_actions_distribution():
    old_m, new_m = C51(2), C51(3)
    old, new, _ = _surgery(old_m, new_m, outputs=BOTH, new_outputs={"noop": "left"})
    (p_old, q_old), (p_new, q_new) = _forward(old_m, old), _forward(new_m, new)
    _assert_exact(p_new[:, [0, 2]], p_old)
    _assert_exact(q_new[:, [0, 2]], q_old)
    _assert_exact(p_new[:, 1], p_old[:, 0])
    _assert_exact(q_new[:, 1], q_old[:, 0])
    k_old, k_new = old["params"]["head"]["kernel"], new["params"]["head"]["kernel"]
    for new_action, old_action in ((0, 0), (1, 0), (2, 1)):  # action-major blocks of 11 atoms
        new_cols = slice(new_action * ATOMS, (new_action + 1) * ATOMS)
        old_cols = slice(old_action * ATOMS, (old_action + 1) * ATOMS)
        np.testing.assert_array_equal(k_new[:, new_cols], k_old[:, old_cols])


@pytest.mark.parametrize("returns", ["both", "q", "logits"])
def test_a_pessimistic_new_action_is_worth_less_than_every_old_action(returns):
    old_m, new_m = C51(2, returns), C51(3, returns)
    outputs = BOTH if returns == "both" else (A2, A3)
    old, new, plan = _surgery(old_m, new_m, outputs=outputs)
    (p_old, q_old), (p_new, q_new) = _forward(old_m, old), _forward(new_m, new)
    _assert_exact(p_new[:, [0, 2]], p_old)
    _assert_exact(q_new[:, [0, 2]], q_old)
    np.testing.assert_array_less(q_new[:, 1], q_old.min(axis=1))
    assert plan.verified.startswith("verified"), plan.verified


def test_a_zero_started_action_has_equal_probabilities_on_every_atom():
    old_m, new_m = C51(2), C51(3)
    old, new, _ = _surgery(old_m, new_m, outputs=BOTH, new_outputs="zeros")
    (p_old, q_old), (p_new, q_new) = _forward(old_m, old), _forward(new_m, new)
    _assert_exact(p_new[:, [0, 2]], p_old)
    _assert_exact(q_new[:, [0, 2]], q_old)
    _assert_exact(p_new[:, 1], np.full((len(OBS), ATOMS), 1 / ATOMS))


def test_a_removed_action_leaves_the_others_exact():
    old_m, new_m = C51(3), C51(2)
    old, new, _ = _surgery(old_m, new_m, outputs={0: (A3, A2), 1: (A3, A2)})
    (p_old, q_old), (p_new, q_new) = _forward(old_m, old), _forward(new_m, new)
    _assert_exact(p_new, p_old[:, [0, 2]])
    _assert_exact(q_new, q_old[:, [0, 2]])


def test_ids_named_for_one_output_reach_the_other_output_of_the_same_actions():
    """Only the Q-values are named (the actions reordered): the logits, whose action axis is
    the same, follow them."""
    old_m, new_m = C51(2), C51(3)
    renamed = {1: (A2, ["right", "noop", "left"])}
    old, new, plan = _surgery(old_m, new_m, outputs=renamed, new_outputs={"noop": "right"})
    (p_old, q_old), (p_new, q_new) = _forward(old_m, old), _forward(new_m, new)
    _assert_exact(p_new[:, [2, 0]], p_old)
    _assert_exact(q_new[:, [2, 0]], q_old)
    _assert_exact(p_new[:, 1], p_old[:, 1])
    assert "outputs 0: ['left', 'right'] -> ['right', 'noop', 'left']" in str(plan), str(plan)


def test_ids_of_the_wrong_length_are_refused_naming_the_action_axis():
    with pytest.raises(jsurgery.PlanError) as info:
        _surgery(C51(2, "q"), C51(3, "q"), outputs=(A2, ["left", "noop"]))
    text = str(info.value)
    for word in ("outputs[1]", "3 units", "'params/head/kernel'", "(3, 11)", "axis 1"):
        assert word in text, (word, text)


def test_ids_for_an_output_holding_the_atoms_alone_are_refused():
    with pytest.raises(jsurgery.PlanError) as info:
        _surgery(C51(2, "atoms"), C51(3, "atoms"), outputs=(A2, A3))
    text = str(info.value)
    for word in ("`outputs[0]`", "inner factor", "'head'", "[3, 11]", "leading factor"):
        assert word in text, (word, text)


def test_a_descending_support_is_refused_since_the_start_would_be_worth_the_most():
    old_m, new_m = C51(2, "q", 10.0, -10.0), C51(3, "q", 10.0, -10.0)
    with pytest.raises(jsurgery.PlanError) as info:
        _surgery(old_m, new_m, outputs=(A2, A3))
    text = str(info.value)
    for word in ("'noop'", "ascending", "new_outputs={'noop': old_id}"):
        assert word in text, (word, text)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"new_outputs": "mean"}, ("'mean'", "(actions, atoms)", "'params/head/")),
        ({"bias": False}, ("'params/head/kernel'", "no bias", "pessimistic")),
    ],
    ids=["mean-start", "head-without-bias"],
)
def test_starts_a_distributional_head_cannot_take_are_refused(changes, words):
    bias = changes.pop("bias", True)
    old_m, new_m = C51(2, "q", bias=bias), C51(3, "q", bias=bias)
    with pytest.raises(jsurgery.PlanError) as info:
        _surgery(old_m, new_m, outputs=(A2, A3), **changes)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
