"""The recurrent surgery experiment (cartpole-recurrent-add-obs) end to end on its tiny protocol."""

import json

import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.experiments import runner
from jsurgery.experiments.configs import build_experiments

NAME = "cartpole-recurrent-add-obs"
SEEDS = 2


def test_listed_by_jsurgery_list(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert f"{NAME}: " in printed
    line = printed.split(f"{NAME}: ")[1].splitlines()
    assert line[1].strip() == "arms: old, scratch, transplant, preserving, naive-load"
    assert "tiny" in line[2]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    experiment = build_experiments()[NAME]
    results = runner.run_experiment(
        experiment, seeds=SEEDS, protocol="tiny", out=out, progress=False
    )
    return experiment, results, out / NAME


def test_runs_end_to_end_with_every_arm_and_comparison(tiny_results):
    experiment, results, folder = tiny_results
    assert json.loads((folder / runner.RESULTS).read_text()) == results
    assert results["complete"] and list(results["arms"]) == list(experiment.arms)
    for name, arm in results["arms"].items():
        curves = np.asarray(arm["curves"])
        assert curves.shape == (SEEDS, len(arm["x"])) and np.isfinite(curves).all(), name
    arms = [a for a in experiment.arms if a not in ("old", "scratch")]
    assert sorted(results["comparisons"]) == sorted(f"{a}_vs_scratch" for a in arms)
    assert (folder / runner.PLOT).stat().st_size > 0
    assert results["config"]["old"]["obs"] == ["x", "theta"]
    assert len(results["config"]["new"]["obs"]) == 4


def test_preserving_plays_the_old_agents_last_evaluation_at_step_0(tiny_results):
    """Every arm evaluates on the same episodes per seed: the function-preserving surgery's first
    return equals the old agent's final return, seed by seed (whole rollouts, not one step)."""
    _, results, _ = tiny_results
    arms = results["arms"]
    np.testing.assert_array_equal(arms["preserving"]["first_eval"], arms["old"]["final"])
    plan = arms["preserving"]["notes"]["plan"]
    assert "cell" in plan and "carried" in plan


def test_naive_load_copies_only_leaves_of_unchanged_shape(tiny_results):
    """The encoder's bias and the head's bias keep their shapes; every GRU leaf is widened and
    the encoder's kernel reads two more observations."""
    _, results, _ = tiny_results
    copied = results["arms"]["naive-load"]["notes"]["copied"]
    assert sorted(copied) == ["params/Dense_0/bias", "params/head/bias"]
