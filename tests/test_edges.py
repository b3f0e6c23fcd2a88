"""Edges of the public calls: params held in a dataclass, shapes where arrays are needed, an
optimizer changed across the surgery, option values, and inputs of the wrong width or kind given
to `embed_inputs` and `check_preservation`."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from surgery_models import MLP, init, rand

import jsurgery


@flax.struct.dataclass
class AgentParams:
    """cleanrl's params of an actor-critic: one torso and two heads, a dataclass."""

    network: dict
    actor: dict
    critic: dict


def _agent(hidden: int, seed: int) -> AgentParams:
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        return {
            "kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32),
        }

    return AgentParams(dense(3, hidden), dense(hidden, 2), dense(hidden, 1))


def _agent_apply(p: AgentParams, x):
    h = jax.nn.relu(x @ p.network["kernel"] + p.network["bias"])
    return h @ p.actor["kernel"] + p.actor["bias"], h @ p.critic["kernel"] + p.critic["bias"]


def _trained_adam(tx, params, steps: int = 3):
    """An optimizer state whose moments are not zero."""
    opt = tx.init(params)
    grads = jax.tree.map(
        lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape)), params
    )
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for _ in range(steps):
            _, opt = tx.update(grads, opt, params)
    return opt


def test_params_in_a_dataclass_move_with_their_adam_moments():
    old, new = _agent(4, 0), _agent(6, 1)
    x = jnp.ones((1, 3))
    plan = jsurgery.make_plan(
        old, new, apply=_agent_apply, example=((x,), (x,)), **jsurgery.PRESERVING
    )
    tx = optax.adam(1e-3)
    opt = _trained_adam(tx, old)
    state = jsurgery.transplant_state(
        {"params": old, "opt_state": opt}, {"params": new, "opt_state": tx.init(new)}, plan
    )
    xs = rand((16, 3), 2)
    for a, b in zip(_agent_apply(old, xs), _agent_apply(state["params"], xs), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    adam, adam_old = state["opt_state"][0], opt[0]
    assert int(adam.count) == 3
    for moment, moment_old in ((adam.mu, adam_old.mu), (adam.nu, adam_old.nu)):
        torso, torso_old = moment.network["kernel"], moment_old.network["kernel"]
        assert float(np.abs(torso_old).min()) > 0  # the test would not see a lost moment
        np.testing.assert_array_equal(torso[:, :4], torso_old)
        np.testing.assert_array_equal(torso[:, 4:], 0.0)  # the new hidden units start at zero
        np.testing.assert_array_equal(moment.network["bias"][:4], moment_old.network["bias"])
        np.testing.assert_array_equal(moment.network["bias"][4:], 0.0)
        for head, head_old in (
            (moment.actor, moment_old.actor),
            (moment.critic, moment_old.critic),
        ):
            np.testing.assert_array_equal(head["kernel"][:4], head_old["kernel"])
            np.testing.assert_array_equal(head["kernel"][4:], 0.0)
            np.testing.assert_array_equal(head["bias"], head_old["bias"])


def test_shapes_alone_plan_but_do_not_transplant():
    old, new = init(MLP((8,), 2), 3, 0), init(MLP((10,), 2), 3, 1)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), old)
    plan = jsurgery.make_plan(shapes, new, **jsurgery.PRESERVING)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.transplant(shapes, new, plan)
    message = str(info.value)
    for word in ("`old`", "params/Dense_0/bias", "ShapeDtypeStruct", "arrays"):
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "old_tx, new_tx, kinds",
    [
        (optax.adam(1e-3), optax.sgd(1e-3, momentum=0.9), ("ScaleByAdamState", "TraceState")),
        # one params-shaped subtree in each: Adam's second moments would become a momentum
        (optax.rmsprop(1e-3), optax.sgd(1e-3, momentum=0.9), ("ScaleByRmsState", "TraceState")),
    ],
    ids=["adam-to-momentum", "rmsprop-to-momentum"],
)
def test_one_optimizers_statistics_do_not_go_into_another(old_tx, new_tx, kinds):
    old, new = init(MLP((8,), 2), 3, 0)["params"], init(MLP((10,), 2), 3, 1)["params"]
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    old_state = {"params": old, "opt_state": _trained_adam(old_tx, old)}
    new_state = {"params": new, "opt_state": new_tx.init(new)}
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.transplant_state(old_state, new_state, plan)
    message = str(info.value)
    for word in (*kinds, "tx.init"):
        assert word in message, (word, message)


def test_the_same_optimizer_with_other_settings_still_moves():
    old, new = init(MLP((8,), 2), 3, 0)["params"], init(MLP((10,), 2), 3, 1)["params"]
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    opt = _trained_adam(optax.adam(1e-3), old)
    moved = jsurgery.transplant_state(opt, optax.adam(3e-4, b1=0.8).init(new), plan)
    np.testing.assert_array_equal(
        moved[0].mu["Dense_1"]["kernel"][:8], opt[0].mu["Dense_1"]["kernel"]
    )
