"""``surgery-chain``: steps to threshold, plateaus, the question's table, and the run end to end."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.experiments import chain, runner
from jsurgery.experiments.configs import build_experiments

CHAINS = ("surgery-chain", "ppo-surgery-chain")


def test_doctests():
    assert doctest.testmod(chain).failed == 0


def test_steps_to_threshold_is_the_first_crossing():
    x = [0, 100, 200, 300]
    curves = [[-500, -200, -400, -90], [-500, -500, -500, -500], [-100, -50, -50, -50]]
    assert chain.steps_to_threshold(x, curves, -100).tolist() == [300, np.inf, 0]
    assert chain.steps_to_threshold(x, curves, -300).tolist() == [100, np.inf, 0]


def test_plateau_averages_the_last_evaluations():
    curves = [[0.0, 10.0, 20.0, 30.0, 40.0]]
    assert chain.plateau(curves).tolist() == [30.0]
    assert chain.plateau(curves, evals=1).tolist() == [40.0]


def _arm(x, curves):
    return {"x": x, "curves": curves}


def test_chain_table_by_hand():
    x = [0, 100, 200, 300]
    results = {
        "config": {"thresholds": [-100.0]},
        "arms": {
            # both seeds reach -100 at step 100; plateau (-100 - 100 - 100) / 3 = -100
            "scratch": _arm(x, [[-500, -100, -100, -100]] * 2),
            # never reaches it; plateau -200, 100 below scratch in every seed and resample
            "chain-preserving": _arm(x, [[-500, -200, -200, -200]] * 2),
            # plateau (-100 - 50 + 0) / 3 = -50, so the chain ends 150 below it
            "scratch-3x": _arm([0, 300, 600, 900], [[-500, -100, -50, 0]] * 2),
        },
    }
    rows = chain.chain_table(results).splitlines()
    assert rows[0].startswith("| arm | steps | steps to -100: median [95% CI] (reached) |")
    assert rows[2] == "| scratch | 300 | 100 [100, 100] (2/2) | -100.0 [-100.0, -100.0] |  |  |"
    assert rows[3] == (
        "| chain-preserving | 300 | never [never, never] (0/2) | -200.0 [-200.0, -200.0] | "
        "-100.0 [-100.0, -100.0] yes | -150.0 [-150.0, -150.0] yes |"
    )
    assert rows[4].startswith("| scratch-3x | 900 | 300 [300, 300] (2/2) | -50.0 [")


def test_chain_table_compares_every_arm_with_the_control_arm_too():
    x = [0, 100, 200, 300]
    results = {
        "config": {"thresholds": [-100.0], "control_arms": ["chain-identity"]},
        "arms": {
            "scratch": _arm(x, [[-500, -100, -100, -100]] * 2),
            # plateau -200: 100 below scratch, 50 below chain-identity's -150
            "chain-transplant": _arm(x, [[-500, -200, -200, -200]] * 2),
            "chain-identity": _arm(x, [[-500, -150, -150, -150]] * 2),
        },
    }
    rows = chain.chain_table(results).splitlines()
    assert rows[0].endswith("| plateau minus scratch | plateau minus chain-identity |")
    assert rows[3].endswith("| -100.0 [-100.0, -100.0] yes | -50.0 [-50.0, -50.0] yes |")
    assert rows[4].endswith("| -150.0 [-150.0, -150.0] | -50.0 [-50.0, -50.0] yes |  |")


@pytest.mark.parametrize("name", CHAINS)
def test_stages_are_a_chain_of_three_surgeries(name):
    experiment = build_experiments()[name]
    stages = experiment.config("original", 20)["stages"]
    assert len(stages) == 4
    assert set(stages[1]["obs"]) - set(stages[0]["obs"]) == {"dtheta2"}
    assert stages[1]["hidden"] == stages[0]["hidden"] and stages[2]["hidden"] > stages[1]["hidden"]
    assert set(stages[3]["actions"]) - set(stages[2]["actions"]) == {"noop"}
    assert experiment.arms == (
        "scratch", "chain-transplant", "chain-preserving", "chain-identity", "scratch-3x"
    )  # fmt: skip
    assert experiment.arm_stages("chain-identity") == (experiment.stages[-1],) * 4
    assert experiment.arm_stages("chain-preserving") == experiment.stages
    with pytest.raises(runner.ExperimentError, match="'scratch' is no chain arm"):
        experiment.arm_stages("scratch")


@pytest.mark.parametrize("name", CHAINS)
@pytest.mark.parametrize("protocol", ["original", "tiny"])
def test_the_chains_keep_a_constant_step_size(name, protocol):
    assert build_experiments()[name].configs[protocol].learning_rate_end is None


def test_the_dqn_chain_explores_at_the_final_rate_after_the_first_stage():
    experiment = build_experiments()["surgery-chain"]
    config = experiment.stage_config("original", 2)
    assert config.exploration_start == config.exploration_end
    assert experiment.stage_config("original", 0).exploration_start == 1.0


def _stage(experiment, index, stages=None, seed=0):
    """Stage ``index``'s ``(config, env)`` and a fresh state of two seeds whose every float leaf
    (params, target params, Adam's moments) is random and whose Adam count is 7."""
    stage = (stages or experiment.stages)[index]
    config, env = experiment.stage_config("tiny", index, stage), experiment.env(stage)
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    fresh = experiment.fresh_states(config, env, keys)
    leaves, treedef = jax.tree.flatten(fresh)
    noise = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
    leaves = [
        jax.random.normal(k, leaf.shape) if jnp.issubdtype(leaf.dtype, jnp.floating)
        else jnp.full_like(leaf, 7)
        for k, leaf in zip(noise, leaves, strict=True)
    ]  # fmt: skip
    return (config, env), jax.tree.unflatten(treedef, leaves)


def _adam(state):
    """Adam's ``ScaleByAdamState`` in a state's optimizer chain (clipping, then Adam)."""
    (adam,) = [
        node
        for node in jax.tree.leaves(state["opt_state"], is_leaf=lambda n: hasattr(n, "mu"))
        if hasattr(node, "mu")
    ]
    return adam


def _dense(tree, layer):
    return tree["params"][f"Dense_{layer}"]


#: Per surgery of the DQN chain (stage i -> i + 1): where each layer's old kernel lands in the
#: new one, written by hand from the stages (features cos1 sin1 cos2 sin2 dtheta1 [dtheta2];
#: widths 16 -> 32; actions torque-1 torque+1 -> torque-1 noop torque+1).
DQN_CHAIN_COPIES = {
    0: {0: (np.s_[:5, :], np.s_[:, :]), 1: (np.s_[:, :], np.s_[:, :]),
        2: (np.s_[:, :], np.s_[:, :])},
    1: {0: (np.s_[:, :16], np.s_[:, :]), 1: (np.s_[:16, :16], np.s_[:, :]),
        2: (np.s_[:16, :], np.s_[:, :])},
    2: {0: (np.s_[:, :], np.s_[:, :]), 1: (np.s_[:, :], np.s_[:, :]),
        2: (np.s_[:, [0, 2]], np.s_[:, [0, 1]])},
}  # fmt: skip


@pytest.mark.parametrize("surgery", [0, 1, 2], ids=["obs-added", "widened", "action-added"])
def test_a_dqn_chain_surgery_moves_params_target_params_and_adam_by_unit(surgery):
    experiment = build_experiments()["surgery-chain"]
    old, state = _stage(experiment, surgery)
    new, fresh = _stage(experiment, surgery + 1, seed=1)
    moved, _ = experiment.operate("chain-transplant", state, fresh, old, new)
    for layer, (new_at, old_at) in DQN_CHAIN_COPIES[surgery].items():
        for tree in ("params", "target_params"):
            np.testing.assert_array_equal(
                _dense(moved[tree], layer)["kernel"][(slice(None), *new_at)],
                _dense(state[tree], layer)["kernel"][(slice(None), *old_at)],
            )
        for moment in ("mu", "nu"):
            new_moment = _dense(getattr(_adam(moved), moment), layer)["kernel"]
            old_moment = _dense(getattr(_adam(state), moment), layer)["kernel"]
            np.testing.assert_array_equal(
                new_moment[(slice(None), *new_at)], old_moment[(slice(None), *old_at)]
            )
            kept = np.zeros(new_moment.shape[1:], bool)
            kept[new_at] = True
            assert np.all(np.asarray(new_moment)[:, ~kept] == 0.0)
    np.testing.assert_array_equal(_adam(moved).count, _adam(state).count)


def test_the_preserving_dqn_chain_acts_as_before_when_dtheta2_is_added():
    from jsurgery.rl import QNetwork

    experiment = build_experiments()["surgery-chain"]
    (old_config, old_env), state = _stage(experiment, 0)
    (new_config, new_env), fresh = _stage(experiment, 1, seed=1)
    moved, _ = experiment.operate(
        "chain-preserving", state, fresh, (old_config, old_env), (new_config, new_env)
    )
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, new_env.num_obs))
    old_q = QNetwork.for_config(old_config, old_env.num_actions).apply(
        chain.first_seed(state["params"]), obs[:, :5]
    )
    new_q = QNetwork.for_config(new_config, new_env.num_actions).apply(
        chain.first_seed(moved["params"]), obs
    )
    np.testing.assert_allclose(new_q, old_q, atol=1e-5)


def _outputs(experiment, config, env, params, obs):
    from jsurgery.rl.algorithms import algorithm_of

    network = algorithm_of(config).network(config, env)
    return jax.vmap(lambda p: network.apply(p, obs))(params)


@pytest.mark.parametrize("name", CHAINS)
def test_an_identity_chain_surgery_changes_nothing(name):
    experiment = build_experiments()[name]
    stages = experiment.arm_stages("chain-identity")
    old, state = _stage(experiment, 0, stages)
    new, fresh = _stage(experiment, 1, stages, seed=1)
    moved, _ = experiment.operate("chain-identity", state, fresh, old, new)
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, old[1].num_obs))
    before = _outputs(experiment, *old, state["params"], obs)
    after = _outputs(experiment, *new, moved["params"], obs)
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(moved) == jax.tree.structure(state)
    for m, s in zip(jax.tree.leaves(moved), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(m, s)


@pytest.mark.slow
def test_chain_end_to_end(tmp_path):
    experiment = build_experiments()["surgery-chain"]
    results = runner.run_experiment(experiment, seeds=2, protocol="tiny", out=tmp_path)
    stage_steps = experiment.configs["tiny"].total_steps
    arms = results["arms"]
    assert arms["scratch"]["x"][-1] == 4 * stage_steps
    assert arms["scratch-3x"]["x"][-1] == 3 * 4 * stage_steps
    for arm in (*experiment.surgery, *experiment.controls):
        x = np.asarray(arms[arm]["x"])
        assert x[-1] == 4 * stage_steps and np.all(np.diff(x) >= 0)
        assert len(arms[arm]["notes"]["plans"]) == 3
        assert np.asarray(arms[arm]["curves"]).shape == (2, x.size)
        assert arms[arm]["notes"]["control"] == (arm == "chain-identity")
    table = experiment.summary_table(results)
    assert "plateau minus scratch-3x | plateau minus chain-identity |" in table


def test_the_ppo_chain_writes_its_config_under_ppo():
    config = build_experiments()["ppo-surgery-chain"].config("original", 20)
    assert "ppo" in config and "dqn" not in config
    assert config["ppo"]["learning_rate_end"] is None
    assert config["control_arms"] == ["chain-identity"]


@pytest.mark.slow
def test_ppo_chain_end_to_end(tmp_path):
    experiment = build_experiments()["ppo-surgery-chain"]
    results = runner.run_experiment(experiment, seeds=2, protocol="tiny", out=tmp_path)
    stage_steps = experiment.configs["tiny"].total_steps
    arms = results["arms"]
    assert arms["scratch-3x"]["x"][-1] == 3 * 4 * stage_steps
    for arm in (*experiment.surgery, *experiment.controls):
        x = np.asarray(arms[arm]["x"])
        assert x[-1] == 4 * stage_steps and np.all(np.diff(x) >= 0)
        plans = arms[arm]["notes"]["plans"]
        assert len(plans) == 3 and all("params/log_std" not in plan for plan in plans)
