"""Surgery on PPO actor-critics, judged by running the old and the new networks."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery
from jsurgery.rl import ActorCritic, make_env
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_surgery import NEW_ACTION_MARGIN, plan_ppo, transplant_seeds
from jsurgery.rl.ppo_update import make_optimizer

OLD_OBS = ("cos1", "sin1", "cos2", "sin2")
NEW_OBS = ("cos1", "sin1", "dtheta1", "cos2", "sin2")
OLD_ACTIONS = ("torque-1", "torque+1")
NEW_ACTIONS = ("torque-1", "noop", "torque+1")


def trained_like(params, key, scale=0.5):
    """``params`` moved by noise, so that logits and values are far from their small start."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    moved = [
        leaf + scale * jax.random.normal(k, leaf.shape)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, moved)


def numpy(tree):
    return jax.tree.map(np.asarray, tree)


def networks(old_hidden, new_hidden, layer_norm=False):
    old = ActorCritic(hidden=old_hidden, num_actions=len(OLD_ACTIONS), layer_norm=layer_norm)
    new = ActorCritic(hidden=new_hidden, num_actions=len(NEW_ACTIONS), layer_norm=layer_norm)
    old_params = old.init(jax.random.PRNGKey(0), jnp.zeros((1, len(OLD_OBS))))
    new_params = new.init(jax.random.PRNGKey(1), jnp.zeros((1, len(NEW_OBS))))
    return old, new, trained_like(old_params, jax.random.PRNGKey(2)), new_params


def envs():
    old_env = make_env("Acrobot-v1", obs=OLD_OBS, actions=OLD_ACTIONS)
    new_env = make_env("Acrobot-v1", obs=NEW_OBS, actions=NEW_ACTIONS)
    return old_env, new_env


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer-norm"])
def test_preserving_keeps_the_policy_and_value_and_a_new_action_starts_unlikely(layer_norm):
    old, new, old_params, template = networks((8, 8), (13, 8), layer_norm)
    old_env, new_env = envs()
    plan = plan_ppo(old_params, template, old, new, old_env, new_env)
    params = jsurgery.transplant(old_params, template, plan)

    obs = jax.random.normal(jax.random.PRNGKey(3), (64, len(OLD_OBS)))
    added = jax.random.normal(jax.random.PRNGKey(4), (64, 1))
    new_obs = jnp.concatenate([obs[:, :2], added, obs[:, 2:]], axis=1)  # dtheta1 third
    old_logits, old_value = old.apply(old_params, obs)
    logits, value = numpy(new.apply(params, new_obs))
    np.testing.assert_allclose(value, old_value, atol=1e-4)
    np.testing.assert_allclose(logits[:, 0], old_logits[:, 0], atol=1e-4)
    np.testing.assert_allclose(logits[:, 2], old_logits[:, 1], atol=1e-4)
    expected = old_logits.mean(axis=1) - NEW_ACTION_MARGIN
    np.testing.assert_allclose(logits[:, 1], expected, atol=1e-4)
    probability = jax.nn.softmax(logits)[:, 1]
    assert (probability <= np.exp(-NEW_ACTION_MARGIN) + 1e-6).all()
    # The old actions keep their order and all but that share of their probabilities.
    old_probability = jax.nn.softmax(old_logits)
    kept = np.asarray(jax.nn.softmax(logits))[:, [0, 2]]
    np.testing.assert_allclose(kept / kept.sum(1, keepdims=True), old_probability, atol=1e-5)


def test_new_hidden_replaces_the_recipes_rule_for_new_hidden_units():
    """``new_hidden=net2net(noise=0.1)`` under a LayerNorm: the widened layer's new units get
    distinct incoming columns (the recipe's own rule gives them one, the old columns' mean),
    and the old agent's outputs move, but by far less than the noise."""
    old, new, old_params, template = networks((8,), (13,), layer_norm=True)
    old_env, new_env = envs()
    rule = jsurgery.init.net2net(noise=0.1)
    plan = plan_ppo(old_params, template, old, new, old_env, new_env, new_hidden=rule)
    params = jsurgery.transplant(old_params, template, plan)
    columns = np.asarray(params["params"]["critic"]["Dense_0"]["kernel"])[:, 8:]
    distances = np.abs(columns[:, :, None] - columns[:, None, :]).max(0)
    assert np.all(distances[~np.eye(5, dtype=bool)] > 0), "two new units have equal columns"
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, len(OLD_OBS)))
    new_obs = jnp.concatenate([obs[:, :2], jnp.zeros((64, 1)), obs[:, 2:]], axis=1)
    _, old_value = old.apply(old_params, obs)
    _, value = new.apply(params, new_obs)
    moved = float(jnp.max(jnp.abs(value - old_value)) / jnp.max(jnp.abs(old_value)))
    assert 1e-5 < moved < 0.1


def test_transplant_copies_old_weights_by_id_and_keeps_the_template_elsewhere():
    old, new, old_params, template = networks((8,), (8,))
    old_env, new_env = envs()
    plan = plan_ppo(old_params, template, old, new, old_env, new_env, recipe="transplant")
    params = numpy(jsurgery.transplant(old_params, template, plan))["params"]
    old_params, template = numpy(old_params), numpy(template)
    old_kernel = old_params["params"]["actor"]["Dense_0"]["kernel"]
    kernel = params["actor"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(kernel[[0, 1, 3, 4]], old_kernel)
    np.testing.assert_array_equal(kernel[2], template["params"]["actor"]["Dense_0"]["kernel"][2])
    head = params["actor"]["Dense_1"]["kernel"]
    np.testing.assert_array_equal(
        head[:, [0, 2]], old_params["params"]["actor"]["Dense_1"]["kernel"]
    )
    np.testing.assert_array_equal(
        head[:, 1], template["params"]["actor"]["Dense_1"]["kernel"][:, 1]
    )


def continuous_view(obs, actions):
    """An environment view with continuous actions (gymnax has none with two dimensions)."""
    return types.SimpleNamespace(
        feature_ids=tuple(obs), num_obs=len(obs), action_ids=tuple(actions), continuous=True
    )


def test_a_new_continuous_dimension_starts_at_zero_with_the_old_log_stds_mean():
    old = ActorCritic(hidden=(8,), num_actions=2, continuous=True)
    new = ActorCritic(hidden=(8,), num_actions=3, continuous=True)
    old_params = trained_like(
        old.init(jax.random.PRNGKey(0), jnp.zeros((1, 3))), jax.random.PRNGKey(5)
    )
    template = new.init(jax.random.PRNGKey(1), jnp.zeros((1, 3)))
    old_env = continuous_view("abc", ("x", "z"))
    new_env = continuous_view("abc", ("x", "y", "z"))
    plan = plan_ppo(old_params, template, old, new, old_env, new_env)
    params = jsurgery.transplant(old_params, template, plan)
    obs = jax.random.normal(jax.random.PRNGKey(6), (32, 3))
    old_mean, old_value = old.apply(old_params, obs)
    mean, value = numpy(new.apply(params, obs))
    np.testing.assert_allclose(mean[:, [0, 2]], old_mean, atol=1e-5)
    np.testing.assert_array_equal(mean[:, 1], 0.0)
    np.testing.assert_allclose(value, old_value, atol=1e-5)
    old_log_std = np.asarray(old_params["params"]["log_std"])
    log_std = np.asarray(params["params"]["log_std"])
    np.testing.assert_array_equal(log_std[[0, 2]], old_log_std)
    np.testing.assert_allclose(log_std[1], old_log_std.mean(), rtol=1e-6)
    assert not any("Q-output" in warning for warning in plan.warnings)


def test_adam_moments_follow_the_units_of_every_seed():
    old, new, old_params, template = networks((8,), (10,))
    old_env, new_env = envs()
    optimizer = make_optimizer(PPOConfig())
    seeds = 3
    batch = lambda tree: jax.tree.map(lambda leaf: jnp.stack([leaf] * seeds), tree)  # noqa: E731
    mu = trained_like(old_params, jax.random.PRNGKey(7), scale=0.1)
    old_opt = optimizer.init(old_params)
    clip, (adam, rate) = old_opt  # clip_by_global_norm, then adam = scale_by_adam, scale
    old_opt = (clip, (adam._replace(mu=mu), rate))
    old_state = batch({"params": old_params, "opt_state": old_opt})
    new_state = batch({"params": template, "opt_state": optimizer.init(template)})
    plan = plan_ppo(old_params, template, old, new, old_env, new_env)
    state = numpy(transplant_seeds(old_state, new_state, plan))
    moved = state["opt_state"][1][0].mu["params"]["actor"]["Dense_0"]["kernel"]
    old_mu = np.asarray(mu["params"]["actor"]["Dense_0"]["kernel"])
    for seed in range(seeds):
        np.testing.assert_array_equal(moved[seed][[0, 1, 3, 4], :8], old_mu)
        np.testing.assert_array_equal(moved[seed][2], 0.0)  # the new observation's row
        np.testing.assert_array_equal(moved[seed][:, 8:], 0.0)  # the new hidden units
    head = state["opt_state"][1][0].mu["params"]["actor"]["Dense_1"]["kernel"][0]
    np.testing.assert_array_equal(head[:8, 1], 0.0)


def test_a_per_id_start_naming_no_output_is_refused_with_every_outputs_ids():
    old = ActorCritic(hidden=(4,), num_actions=1, continuous=True)
    new = ActorCritic(hidden=(4,), num_actions=2, continuous=True)
    old_params = old.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    template = new.init(jax.random.PRNGKey(1), jnp.zeros((1, 2)))
    from jsurgery.rl.ppo_surgery import traced_apply

    with pytest.raises(jsurgery.PlanError, match="'w' is not a new output ID; new outputs: .*'v'"):
        jsurgery.make_plan(
            old_params, template,
            apply=(traced_apply(old), traced_apply(new)),
            example=((jnp.zeros((1, 2)),), (jnp.zeros((1, 2)),)),
            outputs={0: (["u"], ["u", "v"]), 2: ([("s", "u")], [("s", "u"), ("s", "v")])},
            new_outputs={"w": "zeros"},
        )  # fmt: skip


def test_discrete_and_continuous_agents_do_not_mix():
    old, new, old_params, template = networks((8,), (8,))
    old_env, _ = envs()
    with pytest.raises(ValueError, match="both have discrete actions or both continuous"):
        plan_ppo(old_params, template, old, new, old_env, continuous_view(NEW_OBS, NEW_ACTIONS))
