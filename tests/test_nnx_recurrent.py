"""The NNX equivalents of the recurrent and attention checks: `nnx.GRUCell`, `nnx.LSTMCell`,
`nnx.OptimizedLSTMCell` and `nnx.SimpleCell` (one step per call, `cell(carry, x) -> (carry, y)`)
widened with a new observation, checked over 16-step rollouts to 1e-5 with new hidden units at
exactly zero; `nnx.MultiHeadAttention` with a head added, exact. An NNX module is its own apply
function.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from graph_zoo import embed

import jsurgery

OBS3, OBS4 = ["x", "theta", "omega"], ["x", "x_dot", "theta", "omega"]
CELLS = {
    "gru": nnx.GRUCell,
    "lstm": nnx.LSTMCell,
    "optimized-lstm": nnx.OptimizedLSTMCell,
    "simple": nnx.SimpleCell,
}
STEPS, BATCH = 16, 3


def _perturbed(module, seed):
    """Every parameter moved off its init (biases non-zero) so every copy shows."""
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(module)
    state = jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), state)
    return nnx.merge(graphdef, state)


@pytest.mark.parametrize("cell", list(CELLS))
def test_nnx_cell_widened_with_a_new_observation_matches_every_step(cell):
    old = _perturbed(CELLS[cell](3, 4, rngs=nnx.Rngs(0)), 0)
    new = _perturbed(CELLS[cell](4, 6, rngs=nnx.Rngs(1)), 1)
    c4 = old.initialize_carry((BATCH, 3), nnx.Rngs(0))
    c6 = new.initialize_carry((BATCH, 4), nnx.Rngs(0))
    n = len(jax.tree.leaves(c4))
    plan = jsurgery.make_plan(
        old,
        new,
        example=((c4, jnp.zeros((BATCH, 3))), (c6, jnp.zeros((BATCH, 4)))),
        inputs={n: (OBS3, OBS4)},
        **jsurgery.PRESERVING,
    )
    assert plan.carry is not None and len(plan.carry.input_leaves) == n
    out = jsurgery.transplant(old, new, plan)
    assert isinstance(out, CELLS[cell])
    rng = np.random.default_rng(3)
    c_old = jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), z.dtype), c4)
    c_new = jsurgery.transplant_carry(c_old, plan)
    for _ in range(STEPS):
        x = rng.normal(size=(BATCH, 3)).astype(np.float32)
        c_old, y_old = old(c_old, x)
        c_new, y_new = out(c_new, embed(x, OBS3, OBS4))
        np.testing.assert_allclose(np.asarray(y_new)[:, :4], y_old, atol=1e-5, rtol=0)
        for a, b in zip(jax.tree.leaves(c_old), jax.tree.leaves(c_new), strict=True):
            np.testing.assert_allclose(np.asarray(b)[:, :4], a, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(np.asarray(b)[:, 4:], 0.0)


class Entities(nnx.Module):
    """Per-entity features -> Linear -> stream + self-attention -> ReLU, mean -> Linear."""

    def __init__(self, heads: int, rngs: nnx.Rngs, width: int = 8, head_dim: int = 4):
        self.embed = nnx.Linear(3, width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            heads, width, qkv_features=heads * head_dim, decode=False, rngs=rngs
        )
        self.pi = nnx.Linear(width, 2, rngs=rngs)

    def __call__(self, ents):
        x = self.embed(ents)
        x = x + self.attn(x)
        return self.pi(nnx.relu(x).mean(axis=1))


def test_nnx_attention_head_added_is_exact():
    ents = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 3)), jnp.float32)
    old = _perturbed(Entities(2, nnx.Rngs(0)), 0)
    new = Entities(3, nnx.Rngs(1))
    plan = jsurgery.make_plan(old, new, example=((ents,), (ents,)), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(out(ents), old(ents), atol=1e-5, rtol=0)
    assert not plan.warnings, plan.warnings
