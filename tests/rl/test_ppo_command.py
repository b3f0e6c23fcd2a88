"""The command-line loop with PPO on a tiny budget: train, surgery, train on, load the agents."""

import json
import re

import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import load_agent, load_run
from jsurgery.rl.ppo_surgery import NEW_ACTION_MARGIN

TINY = ["--steps", "1000", "--set", "eval_episodes=2", "--seeds", "2"]


def full_observations(size, rows=64):
    return np.random.default_rng(0).normal(size=(rows, size)).astype(np.float32)


@pytest.fixture(scope="module")
def cartpole_runs(tmp_path_factory):
    """A PPO run that sees three CartPole observations, the same moved to all four and a wider
    network (preserving), and that one trained on."""
    root = tmp_path_factory.mktemp("ppo")
    old, new, on = root / "old", root / "new", root / "on"
    assert main(["train", "CartPole-v1", "--algo", "ppo", "--hidden", "16,16",
                 "--obs", "x,theta,theta_dot", *TINY, "--out", str(old)]) == 0  # fmt: skip
    assert main(["surgery", str(old), "--obs", "x,x_dot,theta,theta_dot", "--hidden", "24,16",
                 "--out", str(new)]) == 0  # fmt: skip
    assert main(["train", "CartPole-v1", "--init", str(new), "--steps", "1000",
                 "--out", str(on)]) == 0  # fmt: skip
    return old, new, on


def test_a_ppo_run_is_saved_with_its_algorithm(cartpole_runs):
    old, _, _ = cartpole_runs
    assert json.loads((old / "agent.json").read_text())["algo"] == "ppo"
    metrics = json.loads((old / "metrics.json").read_text())
    assert metrics["algo"] == "ppo" and metrics["config"]["clip_eps"] == 0.2
    run = load_run(old)
    assert set(run.state) == {"params", "opt_state"}
    assert run.state["params"]["params"]["actor"]["Dense_0"]["kernel"].shape == (2, 3, 16)


def test_preserving_surgery_keeps_each_seeds_policy_and_value(cartpole_runs):
    old, new, _ = cartpole_runs
    summary = json.loads((new / "surgery.json").read_text())
    np.testing.assert_allclose(summary["new_greedy_return"], summary["old_greedy_return"])
    obs = full_observations(4)
    for seed in (0, 1):
        before, after = load_agent(old, seed), load_agent(new, seed)
        np.testing.assert_allclose(after.policy(obs), before.policy(obs), atol=1e-5)
        np.testing.assert_allclose(after.value(obs), before.value(obs), atol=1e-5)
        np.testing.assert_array_equal(after.act(obs), before.act(obs))
    kernel = load_run(new).state["params"]["params"]["critic"]["Dense_0"]["kernel"]
    assert kernel.shape == (2, 4, 24)
    np.testing.assert_array_equal(kernel[:, 1], 0.0)  # x_dot, new, read by zero weights


def test_training_on_continues_the_surgered_run(cartpole_runs):
    _, new, on = cartpole_runs
    metrics = json.loads((on / "metrics.json").read_text())
    assert metrics["algo"] == "ppo" and metrics["config"]["hidden"] == [24, 16]
    assert metrics["obs_ids"] == ["x", "x_dot", "theta", "theta_dot"]
    assert metrics["init"] == str(new) and np.asarray(metrics["eval_return"]).shape[0] == 2
    # Training moved every seed's weights on from the surgered ones, and Adam counted on.
    before, after = load_run(new).state, load_run(on).state
    moved = after["params"]["params"]["actor"]["Dense_0"]["kernel"]
    assert (
        (np.abs(moved - before["params"]["params"]["actor"]["Dense_0"]["kernel"]) > 0)
        .any(axis=(1, 2))
        .all()
    )
    count = lambda state: np.asarray(state["opt_state"][1][0].count)  # noqa: E731
    np.testing.assert_array_equal(count(after), count(before) + 1000 // 500 * 4 * 4)


def test_a_new_action_starts_unlikely_and_leaves_the_greedy_actions_alone(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["train", "Acrobot-v1", "--algo", "ppo", "--hidden", "16",
                 "--actions", "torque-1,torque+1", *TINY, "--out", str(old)]) == 0  # fmt: skip
    assert main(["surgery", str(old), "--actions", "torque-1,noop,torque+1",
                 "--out", str(new)]) == 0  # fmt: skip
    obs = full_observations(6)
    for seed in (0, 1):
        before, after = load_agent(old, seed), load_agent(new, seed)
        logits, old_logits = after.policy(obs), before.policy(obs)
        np.testing.assert_allclose(logits[:, [0, 2]], old_logits, atol=1e-5)
        np.testing.assert_allclose(logits[:, 1], old_logits.mean(1) - NEW_ACTION_MARGIN, atol=1e-5)
        np.testing.assert_array_equal(after.act(obs), before.act(obs))
        assert set(after.act(obs)) <= {0, 2}  # Acrobot's own indices of torque-1 and torque+1


def test_continuous_actions_train_and_act_in_the_bounds(tmp_path):
    out = tmp_path / "pendulum"
    argv = ["train", "Pendulum-v1", "--algo", "ppo", "--hidden", "8", "--steps", "4000",
            "--set", "eval_episodes=1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    agent = load_agent(out)
    actions = agent.act(full_observations(3) * 10.0)
    assert actions.shape == (64, 1) and (np.abs(actions) <= 2.0).all()
    np.testing.assert_allclose(actions, np.clip(agent.policy(full_observations(3) * 10.0), -2, 2))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "Pendulum-v1", "--out", "x"], "continuous actions.*--algo ppo"),
        (["train", "CartPole-v1", "--algo", "ppo", "--exploration-start", "0.5", "--out", "x"],
         "--exploration-start 0.5: PPO explores by sampling its policy"),
        (["train", "CartPole-v1", "--algo", "ppo", "--set", "clip=0.1", "--out", "x"],
         "unknown key 'clip' \\(did you mean 'clip_eps'\\?\\)"),
        (["train", "CartPole-v0", "--algo", "ppo", "--out", "x"], "did you mean 'CartPole-v1'"),
    ],
    ids=["dqn-continuous", "epsilon", "key", "env"],
)  # fmt: skip
def test_ppo_mistakes_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("jsurgery train: error: ")
    assert re.search(message, error), error


def test_print_config_shows_the_ppo_preset(capsys):
    assert main(["train", "CartPole-v1", "--algo", "ppo", "--set", "clip_eps=0.1",
                 "--print-config"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith("# PPOConfig for CartPole-v1")
    assert "clip_eps = 0.1\n" in printed and "num_minibatches = 4\n" in printed


def test_the_algorithm_of_an_init_run_is_kept(cartpole_runs, capsys):
    _, new, _ = cartpole_runs
    assert main(["train", "CartPole-v1", "--init", str(new), "--algo", "dqn", "--out", "x"]) == 2
    assert "is a ppo run; drop --algo" in capsys.readouterr().err


@pytest.mark.slow
def test_cartpole_ppo_agents_reach_475_and_score_450_in_gymnasium(tmp_path):
    gymnasium = pytest.importorskip("gymnasium")
    out = tmp_path / "cartpole"
    argv = ["train", "CartPole-v1", "--algo", "ppo", "--seeds", "20", "--steps", "500000",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_eval_return_mean"] >= 475.0
    env = gymnasium.make("CartPole-v1")
    returns = []
    for seed in range(20):
        agent = load_agent(out, seed)
        for episode in range(3):
            obs, _ = env.reset(seed=1000 + episode)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs[None])[0])
                total, done = total + reward, terminated or truncated
            returns.append(total)
    assert np.mean(returns) >= 450.0, returns
