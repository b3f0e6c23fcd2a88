import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.rl import make_env, seed_keys, train_seeds
from jsurgery.rl.actor_critic import ActorCritic
from jsurgery.rl.ppo import make_ppo, make_train
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_presets import cartpole_ppo_config, default_ppo_config
from jsurgery.rl.ppo_update import (
    MOST_PACKED,
    Rollout,
    entropy,
    gae,
    log_prob,
    ppo_loss,
    sample_action,
    shuffled_order,
)

TINY = PPOConfig(
    hidden=(8,),
    num_envs=2,
    num_steps=16,
    num_epochs=2,
    num_minibatches=2,
    total_steps=128,
    eval_every=64,
    eval_episodes=2,
)


def gae_by_hand(reward, value, done, last_value, gamma, lam):
    steps = len(reward)
    advantage = np.zeros_like(value)
    running = np.zeros_like(last_value)
    for t in reversed(range(steps)):
        next_value = last_value if t == steps - 1 else value[t + 1]
        alive = 1.0 - done[t]
        delta = reward[t] + gamma * next_value * alive - value[t]
        running = delta + gamma * lam * alive * running
        advantage[t] = running
    return advantage


def test_gae_matches_a_hand_written_loop():
    reward = np.array([[1.0, 0.0], [0.5, 1.0], [2.0, -1.0], [0.0, 1.0], [1.0, 0.5]], np.float32)
    value = np.array([[0.3, 1.0], [0.2, -0.4], [1.5, 0.0], [0.7, 0.9], [-0.2, 0.1]], np.float32)
    done = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0]], bool)
    last_value = np.array([0.8, -0.6], np.float32)
    advantage, target = gae(
        jnp.asarray(reward), jnp.asarray(value), jnp.asarray(done), jnp.asarray(last_value),
        0.9, 0.8,
    )  # fmt: skip
    expected = gae_by_hand(reward, value, done, last_value, 0.9, 0.8)
    np.testing.assert_allclose(advantage, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(target, expected + value, rtol=1e-6, atol=1e-6)
    # Nothing flows back across an episode's end: step 1 of env 0 sees only its own delta.
    np.testing.assert_allclose(advantage[1, 0], 0.5 - 0.2, rtol=1e-6)


def loss_by_hand(logits, old_log_prob, action, advantage, value, old_value, target, clip):
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    new_log_prob = log_probs[np.arange(len(action)), action]
    ratio = np.exp(new_log_prob - old_log_prob)
    normalised = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    surrogate = np.minimum(ratio * normalised, np.clip(ratio, 1 - clip, 1 + clip) * normalised)
    moved = old_value + np.clip(value - old_value, -clip, clip)
    value_loss = 0.5 * np.maximum((value - target) ** 2, (moved - target) ** 2).mean()
    mean_entropy = -(np.exp(log_probs) * log_probs).sum(axis=-1).mean()
    return -surrogate.mean(), value_loss, mean_entropy


def test_clipped_loss_matches_numbers_computed_here():
    config = PPOConfig(clip_eps=0.2, vf_coef=0.7, ent_coef=0.05)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [0.5, 0.5]], np.float32)
    action = np.array([0, 1, 0, 1], np.int32)
    # Old log-probabilities chosen so that the ratios are about 2.1, 0.6, 1.05 and 1.0: the first
    # two leave the clip range on either side.
    old_log_prob = np.array([-0.87, -0.80, -2.18, -0.693], np.float32)
    advantage = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    value = np.array([0.0, 1.0, 2.0, -1.0], np.float32)
    old_value = np.array([0.5, 0.95, 1.0, -1.0], np.float32)
    target = np.array([1.0, 0.0, 2.5, 0.0], np.float32)
    batch = Rollout(
        jnp.arange(4), jnp.asarray(action), jnp.asarray(old_log_prob), jnp.asarray(old_value),
        jnp.asarray(advantage), jnp.asarray(target),
    )  # fmt: skip

    def apply(params, obs):
        return params["logits"][obs], params["value"][obs], None

    params = {"logits": jnp.asarray(logits), "value": jnp.asarray(value)}
    loss, parts = ppo_loss(config, apply, params, batch)
    policy_loss, value_loss, mean_entropy = loss_by_hand(
        logits, old_log_prob, action, advantage, value, old_value, target, 0.2
    )
    np.testing.assert_allclose(parts["policy_loss"], policy_loss, rtol=1e-5)
    np.testing.assert_allclose(parts["value_loss"], value_loss, rtol=1e-5)
    np.testing.assert_allclose(parts["entropy"], mean_entropy, rtol=1e-5)
    np.testing.assert_allclose(
        loss, policy_loss + 0.7 * value_loss - 0.05 * mean_entropy, rtol=1e-5
    )
    # The clip matters here: without it the policy loss would be another number.
    unclipped, *_ = loss_by_hand(
        logits, old_log_prob, action, advantage, value, old_value, target, np.inf
    )
    assert abs(unclipped - policy_loss) > 0.01

    # A clipped sample (ratio above 1 + clip with a positive advantage) gives no policy gradient.
    grads = jax.grad(lambda p: ppo_loss(config.replace(ent_coef=0.0), apply, p, batch)[0])(params)
    np.testing.assert_array_equal(grads["logits"][0], [0.0, 0.0])
    assert np.abs(grads["logits"][3]).sum() > 0.0


def test_gaussian_log_prob_entropy_and_samples():
    mean = jnp.array([[0.5, -1.0]])
    log_std = jnp.array([0.2, -0.3])
    action = jnp.array([[1.0, -0.5]])
    std = np.exp([0.2, -0.3])
    expected = (
        -0.5 * ((np.array([1.0, -0.5]) - [0.5, -1.0]) / std) ** 2
        - np.log(std)
        - 0.5 * np.log(2 * np.pi)
    ).sum()
    np.testing.assert_allclose(log_prob(mean, log_std, action), [expected], rtol=1e-5)
    np.testing.assert_allclose(
        entropy(mean, log_std), [(0.5 + 0.5 * np.log(2 * np.pi) + np.log(std)).sum()], rtol=1e-5
    )
    draws = sample_action(jax.random.PRNGKey(0), jnp.broadcast_to(mean, (20_000, 2)), log_std)
    np.testing.assert_allclose(draws.mean(0), [0.5, -1.0], atol=0.03)
    np.testing.assert_allclose(draws.std(0), std, rtol=0.03)


@pytest.mark.parametrize("size", [1, 2, 500, MOST_PACKED, MOST_PACKED + 1])
def test_shuffled_order_is_a_permutation(size):
    orders = jax.vmap(lambda key: shuffled_order(key, size))(seed_keys([0, 1]))
    for order in np.asarray(orders):
        np.testing.assert_array_equal(np.sort(order), np.arange(size))
    if size > 2:
        assert not np.array_equal(orders[0], orders[1])


def test_shuffled_order_puts_each_item_anywhere_equally_often():
    draws = 30_000
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    orders = np.asarray(jax.vmap(lambda key: shuffled_order(key, 6))(keys))
    # frequency of item j at position i; each is 1/6 with a standard error of 0.0022
    counts = np.stack([(orders == item).mean(axis=0) for item in range(6)])
    np.testing.assert_allclose(counts, 1.0 / 6.0, atol=0.012)


def test_value_is_the_critic_of_the_full_pass():
    net = ActorCritic(hidden=(16, 8), num_actions=3)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    np.testing.assert_allclose(
        net.apply(params, obs, method=ActorCritic.value), net.apply(params, obs)[1], rtol=1e-6
    )


@pytest.fixture(scope="module")
def tiny_runs():
    return jax.jit(jax.vmap(make_train(TINY, "CartPole-v1")))(seed_keys([0, 1, 2]))


def test_shapes_of_vmapped_seeds(tiny_runs):
    state, metrics = tiny_runs
    assert metrics["eval_return"].shape == metrics["eval_steps"].shape == (3, 3)
    np.testing.assert_array_equal(metrics["eval_steps"][0], [0, 64, 128])
    for name in ("episode_return", "episode_valid", "episode_steps", "loss"):
        assert metrics[name].shape == (3, TINY.num_blocks), name
    np.testing.assert_array_equal(metrics["episode_steps"][0], [32, 64, 96, 128])
    assert np.isfinite(metrics["loss"]).all()
    actor = state["params"]["params"]["actor"]
    assert actor["Dense_0"]["kernel"].shape == (3, 4, 8)
    assert actor["Dense_1"]["kernel"].shape == (3, 8, 2)
    assert set(state) == {"params", "opt_state"}


def test_vmapped_seeds_are_independent(tiny_runs):
    state, metrics = tiny_runs
    kernels = np.asarray(state["params"]["params"]["critic"]["Dense_0"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])
    # Seed 1 alone gives row 1 of the vmapped run.
    single_state, single = jax.jit(make_train(TINY, "CartPole-v1"))(jax.random.PRNGKey(1))
    for name, value in single.items():
        np.testing.assert_allclose(value, metrics[name][1], rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(
        single_state["params"]["params"]["actor"]["Dense_1"]["kernel"],
        state["params"]["params"]["actor"]["Dense_1"]["kernel"][1],
        atol=1e-5,
    )


def test_train_seeds_runs_ppo_like_the_single_compiled_call(tiny_runs):
    _, metrics = tiny_runs
    result = train_seeds(TINY, "CartPole-v1", 3, progress=False, chunks=2)
    np.testing.assert_allclose(result.metrics["eval_return"], metrics["eval_return"], atol=1e-4)
    np.testing.assert_allclose(result.metrics["loss"], metrics["loss"], rtol=1e-4, atol=1e-4)


def test_observation_and_action_ids_shape_the_network():
    env = make_env("Acrobot-v1", obs=["cos1", "dtheta2"], actions=["torque+1", "torque-1"])
    parts = make_ppo(TINY, env)
    carry, _ = jax.jit(parts.begin)(jax.random.PRNGKey(0))
    params = carry.params["params"]
    assert params["actor"]["Dense_0"]["kernel"].shape == (2, 8)
    assert params["critic"]["Dense_0"]["kernel"].shape == (2, 8)
    assert params["actor"]["Dense_1"]["kernel"].shape == (8, 2)
    assert params["critic"]["Dense_1"]["kernel"].shape == (8, 1)


def test_continuous_actions_learn_a_state_independent_log_std():
    config = TINY.replace(ent_coef=0.0, learning_rate=1e-2, learning_rate_end=None)
    state, metrics = jax.jit(make_train(config, "Pendulum-v1"))(jax.random.PRNGKey(0))
    log_std = state["params"]["params"]["log_std"]
    assert log_std.shape == (1,) and float(log_std[0]) != 0.0
    assert state["params"]["params"]["actor"]["Dense_1"]["kernel"].shape == (8, 1)
    assert np.isfinite(metrics["eval_return"]).all() and (metrics["eval_return"] < 0).all()


def test_init_continues_from_a_state_and_refuses_other_shapes(tiny_runs):
    state, _ = tiny_runs
    one = jax.tree.map(lambda leaf: leaf[0], state)
    train = make_train(TINY.replace(learning_rate=1e-12, learning_rate_end=None), "CartPole-v1")
    continued, _ = jax.jit(train)(jax.random.PRNGKey(5), one)
    np.testing.assert_allclose(
        continued["params"]["params"]["actor"]["Dense_0"]["kernel"],
        one["params"]["params"]["actor"]["Dense_0"]["kernel"],
        atol=1e-6,
    )
    wider = make_train(TINY.replace(hidden=(9,)), "CartPole-v1")
    with pytest.raises(ValueError, match="init\\['params'\\].*do not match"):
        wider(jax.random.PRNGKey(0), one)
    with pytest.raises(ValueError, match="unknown keys \\['target_params'\\]"):
        train(jax.random.PRNGKey(0), {**one, "target_params": one["params"]})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_minibatches": 3}, "does not divide num_envs \\* num_steps = 32"),
        ({"eval_every": 48}, "not a multiple of num_envs \\* num_steps = 32"),
        ({"gae_lambda": 1.5}, "`gae_lambda`: expected a value in \\[0, 1\\]"),
        ({"activation": "gelu"}, "`activation`: expected one of"),
        ({"num_envs": 0}, "`num_envs`: expected a positive integer"),
    ],
    ids=["minibatches", "eval-every", "lambda", "activation", "envs"],
)
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_presets_and_their_errors():
    assert default_ppo_config("CartPole-v1").total_steps == 500_000
    assert default_ppo_config("Acrobot-v1", 20_000).eval_every == 2_000
    assert default_ppo_config("LunarLander-v3") == default_ppo_config("CartPole-v1")
    assert default_ppo_config("MountainCarContinuous-v0", 40_000).num_steps == 1000
    with pytest.raises(ValueError, match="unknown environment 'CartPole-v0'"):
        default_ppo_config("CartPole-v0")


def test_short_cartpole_training_beats_a_random_policy():
    # A uniformly random CartPole policy averages about 22 steps; 4 seeds of 20,000 steps with
    # the preset reach well above it.
    config = cartpole_ppo_config(total_steps=20_000)
    result = train_seeds(config, "CartPole-v1", 4, progress=False)
    final = result.metrics["eval_return"][:, -1]
    assert final.mean() > 150.0, final
    assert (final > result.metrics["eval_return"][:, 0]).all(), result.metrics["eval_return"]


@pytest.mark.slow
def test_cartpole_preset_reaches_475_over_20_seeds():
    result = train_seeds(cartpole_ppo_config(), "CartPole-v1", 20, progress=False)
    assert result.metrics["eval_return"][:, -1].mean() >= 475.0
