"""``surgery-chain``: steps to threshold, plateaus, the question's table, and the run end to end."""

import doctest

import numpy as np
import pytest

from jsurgery.experiments import chain, runner
from jsurgery.experiments.configs import build_experiments


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


def test_stages_are_a_chain_of_three_surgeries():
    experiment = build_experiments()["surgery-chain"]
    stages = experiment.config("original", 20)["stages"]
    assert len(stages) == 4
    assert set(stages[0]["obs"]) < set(stages[1]["obs"])
    assert stages[1]["hidden"] == stages[0]["hidden"] and stages[2]["hidden"] > stages[1]["hidden"]
    assert set(stages[2]["actions"]) < set(stages[3]["actions"])
    config = experiment.stage_config("original", 2)
    assert config.exploration_start == config.exploration_end
    assert experiment.stage_config("original", 0).exploration_start == 1.0


@pytest.mark.slow
def test_chain_end_to_end(tmp_path):
    experiment = build_experiments()["surgery-chain"]
    results = runner.run_experiment(experiment, seeds=2, protocol="tiny", out=tmp_path)
    stage_steps = experiment.configs["tiny"].total_steps
    arms = results["arms"]
    assert arms["scratch"]["x"][-1] == 4 * stage_steps
    assert arms["scratch-3x"]["x"][-1] == 3 * 4 * stage_steps
    for arm in experiment.surgery:
        x = np.asarray(arms[arm]["x"])
        assert x[-1] == 4 * stage_steps and np.all(np.diff(x) >= 0)
        assert len(arms[arm]["notes"]["plans"]) == 3
        assert np.asarray(arms[arm]["curves"]).shape == (2, x.size)
    assert "plateau minus scratch-3x" in experiment.summary_table(results)


def test_the_ppo_chain_keeps_a_constant_step_size_and_moves_adam_along():
    experiment = build_experiments()["ppo-surgery-chain"]
    config = experiment.config("original", 20)
    assert "ppo" in config and "dqn" not in config
    assert config["ppo"]["learning_rate_end"] is None
    stages = config["stages"]
    assert set(stages[0]["obs"]) < set(stages[1]["obs"])
    assert set(stages[2]["actions"]) < set(stages[3]["actions"])
    assert experiment.arms == ("scratch", "chain-transplant", "chain-preserving", "scratch-3x")


@pytest.mark.slow
def test_ppo_chain_end_to_end(tmp_path):
    experiment = build_experiments()["ppo-surgery-chain"]
    results = runner.run_experiment(experiment, seeds=2, protocol="tiny", out=tmp_path)
    stage_steps = experiment.configs["tiny"].total_steps
    arms = results["arms"]
    assert arms["scratch-3x"]["x"][-1] == 3 * 4 * stage_steps
    for arm in experiment.surgery:
        x = np.asarray(arms[arm]["x"])
        assert x[-1] == 4 * stage_steps and np.all(np.diff(x) >= 0)
        plans = arms[arm]["notes"]["plans"]
        assert len(plans) == 3 and all("params/log_std" not in plan for plan in plans)
