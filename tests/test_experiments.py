"""Every experiment end to end on the ``tiny`` protocol: files, schema, plot, and the CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATA_ROOT, HAS_MNIST, SKIP_REASON

import jsurgery
from jsurgery.experiments import command, report, runner
from jsurgery.experiments.configs import build_experiments
from jsurgery.experiments.dqn import DqnSurgery
from jsurgery.experiments.ppo import PpoSurgery

EXPERIMENTS = build_experiments()
SEEDS = 2


@pytest.fixture(autouse=True)
def mnist_data(monkeypatch):
    if HAS_MNIST:
        monkeypatch.setenv("JSURGERY_DATA", str(DATA_ROOT))


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_results(results, experiment, folder):
    assert json.loads((folder / runner.RESULTS).read_text()) == results
    assert results["complete"] and results["protocol"] == "tiny" and results["seeds"] == SEEDS
    assert list(results["arms"]) == list(experiment.arms)
    for name, arm in results["arms"].items():
        curves = np.asarray(arm["curves"])
        assert curves.shape == (SEEDS, len(arm["x"])), name
        assert np.all(np.isfinite(curves)), name
        assert arm["x"][0] == 0 and np.all(np.diff(arm["x"]) > 0)
        for key in ("auc", "final", "first_eval"):
            assert len(arm[key]) == SEEDS
    surgery_arms = [a for a in experiment.arms if a not in ("old", "scratch")]
    assert sorted(results["comparisons"]) == sorted(f"{a}_vs_scratch" for a in surgery_arms)
    for comparison in results["comparisons"].values():
        assert comparison["auc"]["ci_low"] <= comparison["auc"]["ci_high"]
    for arm in surgery_arms:
        assert ("copied" if arm == "naive-load" else "plan") in results["arms"][arm]["notes"], arm
    assert results["old_final"]["per_seed"] == results["arms"]["old"]["final"]
    for key in ("software", "device", "wall_time_s", "config"):
        assert results[key]
    size = png_size(folder / runner.PLOT)
    assert size == (report.FIGSIZE[0] * report.DPI, report.FIGSIZE[1] * report.DPI)


#: Compiling a DQN for each of these takes most of a minute on 2 CPU cores: run with ``-m slow``
#: (the recurrent one also runs end to end, every arm, in tests/test_recurrent_experiment.py;
#: Breakout's evaluations play 1,000-step episodes, and its preserving arm is checked by forward
#: passes in tests/test_experiments_breakout.py).
SLOW = {
    "cartpole-add-units",
    "cartpole-add-layer",
    "acrobot-add-action",
    "lunarlander-add-actions",
    "cartpole-recurrent-add-obs",
    "breakout-add-channel",
}

#: Run by :func:`test_layer_norm_widening`, which checks more.
WIDENING = "cartpole-ln-widen"

#: Have no ``old`` arm; run end to end in tests/test_chain.py. The PPO experiments run in
#: tests/test_experiments_ppo.py.
CHAINS = ("surgery-chain", "ppo-surgery-chain")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
        for n in EXPERIMENTS
        if n not in (WIDENING, *CHAINS) and not isinstance(EXPERIMENTS[n], PpoSurgery)
    ],
)
def test_experiment_end_to_end(name, tmp_path):
    if name.startswith("mnist") and not HAS_MNIST:
        pytest.skip(SKIP_REASON)
    experiment = EXPERIMENTS[name]
    results = runner.run_experiment(
        experiment, seeds=SEEDS, protocol="tiny", out=tmp_path, progress=False
    )
    check_results(results, experiment, tmp_path / name)


def test_layer_norm_widening(tmp_path):
    """The LayerNorm widening on the tiny protocol: results and plot, and how far each start
    moved the old network's Q-values: the norm-aware Net2Net only by the norm's epsilon; plain
    Net2Net replicas (14 units replicate 4 unevenly) and zero fan-out (whose new units enter the
    norm's statistics) measurably, as a new network does."""
    experiment = EXPERIMENTS[WIDENING]
    results = runner.run_experiment(
        experiment, seeds=SEEDS, protocol="tiny", out=tmp_path, progress=False
    )
    check_results(results, experiment, tmp_path / WIDENING)
    new_arms = experiment.arms[1:]
    shift = {arm: results["arms"][arm]["notes"]["at_surgery"] for arm in new_arms}
    for arm in new_arms:
        assert len(shift[arm]["q_change"]) == len(shift[arm]["greedy_agreement"]) == SEEDS, arm
    assert max(shift["exact"]["q_change"]) < 1e-3
    for arm in ("scratch", "template", "net2net-inexact", "zero-fanout"):
        assert min(shift[arm]["q_change"]) > 1e-2, arm
    inexact = results["config"]["surgery"]["net2net-inexact"]["new_hidden"]
    assert inexact == repr(jsurgery.init.net2net(normalised=False, split="equal"))
    table = report.arms_markdown(results)
    assert all(f"| {arm} |" in table for arm in experiment.arms)


def test_run_command_all_writes_summary(tmp_path, monkeypatch, capsys):
    small = {name: EXPERIMENTS[name] for name in ("cartpole-add-obs",)}
    monkeypatch.setattr(command, "experiments", lambda: small)
    [results] = command.run_command(
        "all", seeds=SEEDS, protocol="tiny", out=str(tmp_path), progress=False, log=("csv",)
    )
    printed = capsys.readouterr().out
    assert "results.json" in printed and "transplant" in printed
    summary = (tmp_path / command.SUMMARY).read_text()
    assert "cartpole-add-obs" in summary and "| preserving |" in summary
    aggregated = json.loads((tmp_path / command.AGGREGATE).read_text())
    assert aggregated["experiments"] == ["cartpole-add-obs"]
    assert set(aggregated["roles"]) == {"scratch", "transplant", "preserving"}
    assert (tmp_path / command.AGGREGATE_PLOT).stat().st_size > 10_000
    with (tmp_path / "cartpole-add-obs" / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    finals = [float(r["value"]) for r in rows if r["run"] == "scratch/mean" and r["tag"] == "final"]
    assert finals == [pytest.approx(np.mean(results["arms"]["scratch"]["final"]))]
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        command.run_command("nope", out=str(tmp_path))
    with pytest.raises(ValueError, match="did you mean 'cartpole-add-obs'"):
        command.run_command("cartpole-add-ob", out=str(tmp_path))


def test_surgery_arms_are_the_named_recipes():
    dqn = [e for e in EXPERIMENTS.values() if isinstance(e, DqnSurgery)]
    assert len(dqn) == 7
    for experiment in (e for e in dqn if e.name != WIDENING):
        surgery = experiment.surgery
        assert surgery["transplant"] == jsurgery.TRANSPLANT, experiment.name
        assert surgery["preserving"] == jsurgery.PRESERVING, experiment.name
    for name in ("acrobot-add-action", "lunarlander-add-actions"):
        surgery = EXPERIMENTS[name].surgery
        for option in ("zeros", "mean"):
            expected = {**jsurgery.TRANSPLANT, "new_outputs": option}
            assert surgery[f"new-actions-{option}"] == expected, (name, option)
    widened = EXPERIMENTS["cartpole-add-units"].surgery["zero-fanout"]
    assert widened == {**jsurgery.PRESERVING, "new_hidden": "zero_fanout"}
    layer_norm = EXPERIMENTS[WIDENING].surgery
    assert layer_norm == {
        "template": jsurgery.TRANSPLANT,
        "exact": jsurgery.PRESERVING,
        "net2net-inexact": {
            **jsurgery.PRESERVING,
            "new_hidden": jsurgery.init.net2net(normalised=False, split="equal"),
        },
        "zero-fanout": {**jsurgery.PRESERVING, "new_hidden": "zero_fanout"},
    }


def test_list_command(capsys):
    command.list_command()
    printed = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in printed


class Interrupted:
    """Wraps an experiment: stops (as if killed) when ``stop_at`` starts; records the arms run."""

    def __init__(self, experiment, stop_at=None):
        self.experiment, self.stop_at, self.ran = experiment, stop_at, []

    def __getattr__(self, name):
        return getattr(self.experiment, name)

    def run_arm(self, arm, **kwargs):
        if arm == self.stop_at:
            raise KeyboardInterrupt
        self.ran.append(arm)
        return self.experiment.run_arm(arm, **kwargs)


def test_killed_experiment_resumes(tmp_path):
    experiment = EXPERIMENTS["cartpole-add-obs"]
    first = Interrupted(experiment, stop_at="transplant")
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(first, seeds=SEEDS, protocol="tiny", out=tmp_path, progress=False)
    assert first.ran == ["old", "scratch"]
    assert (tmp_path / experiment.name / runner.OLD_PARAMS).exists()
    second = Interrupted(experiment)
    results = runner.run_experiment(
        second, seeds=SEEDS, protocol="tiny", out=tmp_path, progress=False
    )
    assert second.ran == ["transplant", "preserving", "naive-load"]
    check_results(results, experiment, tmp_path / experiment.name)
