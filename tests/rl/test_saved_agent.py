import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.rl import (
    DQNConfig,
    QNetwork,
    load_agent,
    load_run,
    make_env,
    make_optimizer,
    save_agent,
)
from jsurgery.rl.files import DamagedFileError


@pytest.mark.parametrize(
    "env_id, obs, actions, layer_norm",
    [
        ("CartPole-v1", None, None, False),
        ("CartPole-v1", ["theta", "x_dot"], ["right", "left"], True),
        ("Acrobot-v1", ["dtheta2", "sin1", "cos1"], ["torque+1", "noop"], False),
    ],
    ids=["cartpole-full", "cartpole-reordered-layer-norm", "acrobot-subset"],
)
def test_load_agent_acts_on_full_observations(tmp_path, env_id, obs, actions, layer_norm):
    env = make_env(env_id, obs, actions)
    config = DQNConfig(hidden=(5,), layer_norm=layer_norm)
    network = QNetwork.for_config(config, env.num_actions)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, env.num_obs))))(keys)
    opt_state = jax.vmap(make_optimizer(config).init)(params)
    state = {"params": params, "target_params": params, "opt_state": opt_state}
    save_agent(tmp_path / "run", config, env, state, seeds=(7, 8, 9))

    agent = load_agent(tmp_path / "run", seed=8)
    assert agent.obs_ids == env.obs_ids and agent.action_ids == env.action_ids
    full = np.random.default_rng(0).normal(size=(64, len(env.all_obs_ids))).astype(np.float32)
    seen = full[:, env.obs_index]
    q = network.apply(jax.tree.map(lambda x: x[1], params), seen)
    expected = env.action_index[np.argmax(np.asarray(q), axis=-1)]
    np.testing.assert_array_equal(agent.act(full), expected)
    assert set(np.unique(agent.act(full))) <= set(env.action_index.tolist())
    with pytest.raises(ValueError, match="full observations"):
        agent.act(seen[:, :1])
    with pytest.raises(ValueError, match="saved seeds are \\[7, 8, 9\\]"):
        load_agent(tmp_path / "run", seed=0)

    run = load_run(tmp_path / "run")
    assert run.config == config and run.seeds == (7, 8, 9)
    assert jax.tree.structure(run.state["opt_state"]) == jax.tree.structure(opt_state)
    np.testing.assert_array_equal(
        run.state["params"]["params"]["Dense_0"]["kernel"], params["params"]["Dense_0"]["kernel"]
    )


def test_load_agent_acts_on_a_board_observation(tmp_path):
    env, network, params = _untrained("Catch-bsuite", (5,), 1)
    _saved(tmp_path / "run", "Catch-bsuite", (5,), 1)
    agent = load_agent(tmp_path / "run")
    boards = np.random.default_rng(0).integers(0, 2, (8, *env.raw_obs_shape)).astype(np.float32)
    q = network.apply(jax.tree.map(lambda x: x[0], params), boards.reshape(8, -1))
    np.testing.assert_array_equal(
        agent.act(boards), env.action_index[np.argmax(np.asarray(q), axis=-1)]
    )
    with pytest.raises(ValueError, match="environment's shape"):
        agent.act(boards.reshape(8, -1))


def _untrained(env_id, hidden, num_seeds):
    """The environment, network and per-seed params of an untrained agent (seeds 0, 1, ...)."""
    env = make_env(env_id)
    network = QNetwork.for_config(DQNConfig(hidden=hidden), env.num_actions)
    params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, env.num_obs))))(
        jax.random.split(jax.random.PRNGKey(0), num_seeds)
    )
    return env, network, params


def _saved(directory, env_id="CartPole-v1", hidden=(64,), num_seeds=2):
    """Saves the untrained agent of :func:`_untrained` under ``directory``."""
    env, _, params = _untrained(env_id, hidden, num_seeds)
    config = DQNConfig(hidden=hidden)
    opt_state = jax.vmap(make_optimizer(config).init)(params)
    state = {"params": params, "target_params": params, "opt_state": opt_state}
    return save_agent(directory, config, env, state, seeds=tuple(range(num_seeds)))


def test_a_flipped_byte_in_a_saved_agent_is_named(tmp_path):
    directory = _saved(tmp_path / "run")
    checkpoint = directory / "checkpoint"
    data_files = [p for p in checkpoint.rglob("*") if p.is_file() and p.parent.name == "d"]
    biggest = max(data_files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    biggest.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=r"checkpoint.* damaged"):
        load_run(directory)


@pytest.mark.parametrize(
    "name", ["agent.json", "checkpoint/_METADATA", "checkpoint/checksums.json"]
)
def test_damaged_metadata_of_a_saved_agent_is_named(tmp_path, name):
    directory = _saved(tmp_path / "run")
    path = directory / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DamagedFileError, match=rf"{path} is damaged"):
        load_run(directory)
