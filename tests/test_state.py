"""The same plan applied to optax state, target params and a flax TrainState."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from surgery_models import MLP, apply_fn, init

import jsurgery

IN4 = ["x", "x_dot", "theta", "theta_dot"]


def _setup():
    old_m, new_m = MLP((4,), 2), MLP((8,), 3)
    old = init(old_m, 2, 0)["params"]
    new = init(new_m, 4, 1)["params"]
    plan = jsurgery.make_plan(
        old,
        new,
        inputs=(["x_dot", "theta"], IN4),
        outputs=(["l", "r"], ["l", "r", "n"]),
        **jsurgery.PRESERVING,
    )
    tx = optax.adam(1e-3)
    opt = tx.init(old)
    grads = jax.tree.map(jnp.ones_like, old)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for _ in range(3):
            _, opt = tx.update(grads, opt, old)
    return old_m, new_m, old, new, plan, tx, opt


def test_adam_moments_move_with_params_and_count_is_kept():
    _, _, old, new, plan, tx, opt = _setup()
    new_opt = jsurgery.transplant_state(opt, tx.init(new), plan)
    adam = new_opt[0]
    assert int(adam.count) == 3
    mu_old, mu = opt[0].mu["Dense_0"]["kernel"], adam.mu["Dense_0"]["kernel"]
    assert mu.shape == (4, 8)
    np.testing.assert_allclose(mu[1:3, :4], mu_old)
    np.testing.assert_array_equal(mu[[0, 3], :], 0.0)  # new inputs
    np.testing.assert_array_equal(mu[:, 4:], 0.0)  # Net2Net copies start at zero
    np.testing.assert_array_equal(adam.nu["Dense_1"]["bias"][2], 0.0)
    np.testing.assert_allclose(adam.nu["Dense_1"]["bias"][:2], opt[0].nu["Dense_1"]["bias"])


def test_a_new_units_first_adam_steps_follow_the_kept_count():
    """After surgery with a kept count c, a new unit under a steady gradient of 1 moves by
    ((1 - b1^t) / (1 - b1^(c+t))) / sqrt((1 - b2^t) / (1 - b2^(c+t))) step sizes at its t-th step
    (3.16 at the first for a long-trained agent, as the guide says; 1 for a fresh Adam), computed
    here by optax itself."""
    old_m, new_m = MLP((4,), 2), MLP((8,), 2)
    old, new = init(old_m, 2, 0)["params"], init(new_m, 2, 1)["params"]
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    tx, count = optax.adam(1.0), 100_000
    trained = tx.init(old)
    trained = (trained[0]._replace(count=jnp.asarray(count, jnp.int32)), *trained[1:])
    state = jsurgery.transplant_state(trained, tx.init(new), plan)
    grads = jax.tree.map(jnp.ones_like, new)
    for t in (1, 2, 12):
        with jax.numpy_dtype_promotion("standard"):
            while int(state[0].count) < count + t:
                updates, state = tx.update(grads, state, new)
        first = (1 - 0.9**t) / (1 - 0.9 ** (count + t))
        second = (1 - 0.999**t) / (1 - 0.999 ** (count + t))
        step = -float(updates["Dense_0"]["kernel"][0, 6])  # a new unit's incoming weight
        np.testing.assert_allclose(step, first / np.sqrt(second), rtol=1e-3)
        if t == 1:
            np.testing.assert_allclose(step, np.sqrt(10), rtol=1e-3)  # 0.1 / sqrt(0.001)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = tx.update(grads, tx.init(new), new)
    np.testing.assert_allclose(-float(updates["Dense_0"]["kernel"][0, 6]), 1.0, rtol=1e-3)


def test_train_state_and_target_params_in_one_call():
    old_m, new_m, old, new, plan, tx, opt = _setup()
    old_state = {
        "train": train_state.TrainState(
            step=7, apply_fn=old_m.apply, params=old, tx=tx, opt_state=opt
        ),
        "target_params": jax.tree.map(lambda x: x * 0.5, old),
        "epsilon": jnp.float32(0.3),
    }
    fresh = {
        "train": train_state.TrainState.create(apply_fn=new_m.apply, params=new, tx=tx),
        "target_params": new,
        "epsilon": jnp.float32(1.0),
    }
    out = jsurgery.transplant_state(old_state, fresh, plan)
    assert out["train"].step == 7 and out["train"].apply_fn == new_m.apply
    np.testing.assert_allclose(
        out["train"].params["Dense_0"]["kernel"],
        jsurgery.transplant(old, new, plan)["Dense_0"]["kernel"],
    )
    np.testing.assert_allclose(
        out["target_params"]["Dense_0"]["kernel"][1:3, :4],
        0.5 * old["Dense_0"]["kernel"],
    )
    assert int(out["train"].opt_state[0].count) == 3
    assert float(out["epsilon"]) == np.float32(0.3)
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    y_old = apply_fn(old_m)({"params": old}, x)
    y_new = apply_fn(new_m)({"params": out["train"].params}, plan.embed_inputs(x))
    np.testing.assert_allclose(y_new[:, :2], y_old, atol=1e-5)
    # the new state trains
    grads = jax.tree.map(jnp.ones_like, out["train"].params)
    with jax.numpy_dtype_promotion("standard"):
        stepped = out["train"].apply_gradients(grads=grads)
    assert stepped.step == 8


def test_plan_on_variables_applies_to_the_inner_params_dict_and_back():
    old_m, new_m = MLP((4,), 2), MLP((6,), 2)
    old, new = init(old_m, 3, 0), init(new_m, 3, 1)
    plan = jsurgery.make_plan(old, new, new_hidden="net2net")
    inner = jsurgery.transplant(old["params"], new["params"], plan)
    assert set(inner) == {"Dense_0", "Dense_1"}
    outer = jsurgery.transplant(old, new, plan)
    np.testing.assert_array_equal(inner["Dense_0"]["kernel"], outer["params"]["Dense_0"]["kernel"])
    plan_inner = jsurgery.make_plan(old["params"], new["params"], new_hidden="net2net")
    wrapped = jsurgery.transplant(old, new, plan_inner)
    np.testing.assert_array_equal(
        wrapped["params"]["Dense_1"]["kernel"], outer["params"]["Dense_1"]["kernel"]
    )


def test_state_without_matching_params_is_an_error():
    _, _, old, new, plan, tx, opt = _setup()
    with pytest.raises(jsurgery.PlanError, match="no subtree"):
        jsurgery.transplant_state({"w": jnp.ones(3)}, {"w": jnp.ones(3)}, plan)


def test_transplant_state_under_vmap_over_seeds():
    _, _, old, new, plan, tx, _ = _setup()
    seeds = 3
    stack = lambda t: jax.tree.map(lambda x: jnp.stack([x * (i + 1) for i in range(seeds)]), t)
    old_states = stack({"params": old, "target_params": old, "opt_state": tx.init(old)})
    fresh = {"params": new, "target_params": new, "opt_state": tx.init(new)}
    out = jax.vmap(lambda s: jsurgery.transplant_state(s, fresh, plan))(old_states)
    assert out["params"]["Dense_0"]["kernel"].shape == (seeds, 4, 8)
    for i in range(seeds):
        np.testing.assert_allclose(
            out["params"]["Dense_0"]["kernel"][i, 1:3, :4],
            (i + 1) * old["Dense_0"]["kernel"],
            rtol=1e-6,
        )
    assert out["opt_state"][0].count.shape == (seeds,)
