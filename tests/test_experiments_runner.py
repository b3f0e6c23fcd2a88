"""The runner with a fake experiment: schema, atomic per-arm saving, resume, config checks."""

import json
import os

import numpy as np
import pytest

from jsurgery.experiments import report, runner
from jsurgery.rl import files


class FakeExperiment:
    name = "fake"
    description = "a fake experiment whose arms are straight lines"
    x_label = "gradient steps"
    y_label = "accuracy"
    arms = ("old", "scratch", "transplant", "preserving", "naive-load")
    protocols = ("original", "long")

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def config(self, protocol, seeds):
        return {"protocol": protocol, "seeds": seeds, "steps": (10, 20)[protocol == "long"]}

    def run_arm(self, arm, *, protocol, seeds, old_params, progress=False):
        if arm == self.fail_on:
            raise KeyboardInterrupt
        self.calls.append(arm)
        if arm != "old":
            assert old_params is not None and np.asarray(old_params["w"]["kernel"]).shape == (
                seeds,
                2,
            )
        x = np.arange(5) * 10
        offset = self.arms.index(arm) * 0.1
        curves = offset + np.linspace(0, 1, 5)[None] + 0.01 * np.arange(seeds)[:, None]
        params = {"w": {"kernel": np.ones((seeds, 2))}} if arm == "old" else None
        return runner.ArmRun(x, curves, params, {"arm": arm})


def test_schema_and_plot(tmp_path):
    results = runner.run_experiment(
        FakeExperiment(), seeds=3, protocol="original", out=tmp_path, progress=False
    )
    folder = tmp_path / "fake"
    assert json.loads((folder / runner.RESULTS).read_text()) == results
    assert results["complete"]
    assert set(results["arms"]) == set(FakeExperiment.arms)
    arm = results["arms"]["transplant"]
    assert len(arm["curves"]) == 3 and len(arm["curves"][0]) == len(arm["x"]) == 5
    assert len(arm["auc"]) == len(arm["final"]) == len(arm["first_eval"]) == 3
    # The fake's old arm ends at 1 plus 0.01 per seed index.
    assert results["old_final"]["mean"] == pytest.approx(1.0 + 0.01 * np.mean(np.arange(3)))
    assert set(results["comparisons"]) == {
        "transplant_vs_scratch",
        "preserving_vs_scratch",
        "naive-load_vs_scratch",
    }
    assert results["comparisons"]["naive-load_vs_scratch"]["auc"]["mean_difference"] > 0
    for key in ("software", "device", "wall_time_s", "config"):
        assert key in results
    png = (folder / runner.PLOT).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (report.FIGSIZE[0] * report.DPI, report.FIGSIZE[1] * report.DPI)
    assert "fake" in report.markdown_table([results])
    assert "transplant" in report.arm_table(results)
    assert "fake" in report.surgery_table([results])


def test_killed_run_resumes_without_redoing_finished_arms(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(
            FakeExperiment(fail_on="transplant"),
            seeds=2,
            protocol="original",
            out=tmp_path,
            progress=False,
        )
    saved = json.loads((tmp_path / "fake" / runner.RESULTS).read_text())
    assert list(saved["arms"]) == ["old", "scratch"] and not saved["complete"]
    assert not list((tmp_path / "fake").glob("*.tmp"))
    again = FakeExperiment()
    results = runner.run_experiment(
        again, seeds=2, protocol="original", out=tmp_path, progress=False
    )
    assert again.calls == ["transplant", "preserving", "naive-load"]
    assert results["complete"]
    assert results["arms"]["old"] == saved["arms"]["old"]


def test_changed_config_is_refused(tmp_path):
    runner.run_experiment(
        FakeExperiment(), seeds=2, protocol="original", out=tmp_path, progress=False, plot=False
    )
    with pytest.raises(runner.ExperimentError, match="seeds: 2 -> 3.*delete"):
        runner.run_experiment(
            FakeExperiment(), seeds=3, protocol="original", out=tmp_path, progress=False
        )


def test_unknown_protocol(tmp_path):
    with pytest.raises(runner.ExperimentError, match="'short'.*original"):
        runner.run_experiment(FakeExperiment(), seeds=2, protocol="short", out=tmp_path)


def test_params_round_trip(tmp_path):
    params = {"Dense_0": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}, "x": np.arange(2)}
    files.save_params(tmp_path / "p.npz", params)
    back = files.load_params(tmp_path / "p.npz")
    assert set(np.load(tmp_path / "p.npz").files) == {"Dense_0/kernel", "Dense_0/bias", "x"}
    np.testing.assert_array_equal(back["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    np.testing.assert_array_equal(back["Dense_0"]["bias"], params["Dense_0"]["bias"])
    np.testing.assert_array_equal(back["x"], params["x"])


def test_failed_json_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    files.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        files.write_json(path, {"a": object()})  # not JSON: fails halfway through the dump
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_saved_agent_and_results_share_the_json_writer():
    from jsurgery.commands import surgery, train
    from jsurgery.rl import agent

    assert agent.write_json is files.write_json and runner.write_json is files.write_json
    assert train.write_json is files.write_json and surgery.write_json is files.write_json


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots()


def test_plot_range_follows_the_bands_not_a_single_seed():
    fig, ax = _axes()
    x = np.arange(5)
    curves = np.tile(np.linspace(0, 1, 5), (20, 1)) + 0.01 * np.arange(20)[:, None]
    curves[0, 2] = -1200.0  # one seed's dip
    low, high = report.draw_curves(ax, x, curves, colour="tab:blue", label="arm")
    report.fit_to_bands(ax, [(low, high)])
    bottom, top = ax.get_ylim()
    assert low < 0 and bottom > -1200 / 2  # the dip widens the band, the range does not follow
    assert bottom <= low and top >= high and top - bottom < 1.2 * (high - low)
    mean, *_ = [line for line in ax.lines if line.get_label() == "arm"]
    np.testing.assert_allclose(mean.get_ydata(), curves.mean(axis=0))
    assert sum(line.get_alpha() is not None and line.get_alpha() < 0.5 for line in ax.lines) == 20


def test_difference_panel_shows_each_arm_vs_scratch_with_its_interval(tmp_path):
    results = runner.run_experiment(
        FakeExperiment(), seeds=3, protocol="original", out=tmp_path, progress=False, plot=False
    )
    fig, ax = _axes()
    report.draw_differences(ax, results)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["transplant", "preserving", "naive-load"]
    for arm in labels:
        auc = results["comparisons"][f"{arm}_vs_scratch"]["auc"]
        bars = [
            c
            for c in ax.collections
            if np.allclose(c.get_segments()[0][:, 0], [auc["ci_low"], auc["ci_high"]])
        ]
        assert bars, arm  # an error bar spans the arm's AUC interval


@pytest.mark.parametrize("name", [runner.RESULTS, runner.OLD_PARAMS])
def test_a_truncated_results_or_params_file_is_named(name, tmp_path):
    experiment = FakeExperiment(fail_on="preserving")
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(experiment, seeds=2, protocol="original", out=tmp_path)
    path = tmp_path / "fake" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(runner.ExperimentError, match=rf"{path} is damaged.*delete it"):
        runner.run_experiment(FakeExperiment(), seeds=2, protocol="original", out=tmp_path)


def test_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        files.write_json(tmp_path / "a.json", {"a": 1})
        files.save_params(tmp_path / "p.npz", {"x": np.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "p.npz").stat().st_mode & 0o777 == 0o640


def test_the_results_table_shows_a_chains_arms_in_the_recipes_columns():
    """A chain's ``chain-transplant`` and ``chain-preserving`` fill the transplant and preserving
    columns with their own AUC and comparison; a column with no arm stays empty."""

    def arm(auc):
        return {"auc": [auc, auc + 2.0]}

    def comparison(difference):
        auc = {"mean_difference": difference, "ci_low": difference - 1, "ci_high": difference + 1}
        return {"auc": {**auc, "significant": True}}

    results = {
        "experiment": "chain",
        "protocol": "original",
        "seeds": 2,
        "arms": {"scratch": arm(10.0), "chain-transplant": arm(4.0), "chain-preserving": arm(6.0)},
        "comparisons": {
            "chain-transplant_vs_scratch": comparison(-6.0),
            "chain-preserving_vs_scratch": comparison(-4.0),
        },
    }
    row = report.markdown_table([results]).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[5:] == ["5; -6 [-7, -5] yes", "7; -4 [-5, -3] yes", ""]
