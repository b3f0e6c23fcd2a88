"""Across-experiment reporting: IQM, stratified bootstrap, performance profiles, normalisation."""

import numpy as np
import pytest
import scipy.stats

from jsurgery.experiments import aggregate, statistics


def test_interquartile_mean_drops_a_quarter_at_each_end():
    # sorted: -50 1 2 3 | 4 5 6 10 -> the middle four are 2 3 4 5
    assert statistics.interquartile_mean([10, 1, 2, 3, 4, 5, 6, -50]) == 3.5
    # five values: one cut at each end, the middle three 2 3 4
    assert statistics.interquartile_mean([4, 100, 2, 3, -100]) == 3.0
    assert statistics.interquartile_mean([7.0]) == 7.0
    with pytest.raises(ValueError, match="no values"):
        statistics.interquartile_mean([])


def test_interquartile_mean_is_scipys_quarter_trimmed_mean():
    values = np.random.default_rng(3).standard_cauchy(size=37)
    expected = scipy.stats.trim_mean(values, proportiontocut=0.25)
    assert statistics.interquartile_mean(values) == pytest.approx(expected, rel=1e-12)


def test_stratified_bootstrap_resamples_within_each_task():
    # Unstratified resampling of the pooled runs would vary the share of each task; within tasks,
    # the pooled mean of [0, 0, 0] and [1, 1, 1] is always one half.
    value, low, high = statistics.stratified_bootstrap(
        [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], lambda g: np.concatenate(g).mean(), resamples=500
    )
    assert (value, low, high) == (0.5, 0.5, 0.5)


def test_stratified_bootstrap_interval_by_hand():
    # Task one resamples to {0,0}, {0,1}, {1,0} or {1,1} (a quarter each), task two is always 5,
    # so the pooled mean is 5/3, 2 or 7/3: the 2.5% and 97.5% quantiles are the extremes.
    value, low, high = statistics.stratified_bootstrap(
        [[0.0, 1.0], [5.0]], lambda g: np.concatenate(g).mean(), resamples=2000, seed=1
    )
    assert value == pytest.approx(2.0)
    assert low == pytest.approx(5 / 3) and high == pytest.approx(7 / 3)


def test_score_profile_weighs_tasks_equally():
    # task one: 1 of 2 runs above 0.5; task two: 3 of 4 -> (0.5 + 0.75) / 2
    profile = statistics.score_profile([[0.0, 1.0], [2.0, 2.0, 2.0, 0.0]], [0.5, 1.5, 3.0])
    assert profile.tolist() == [0.625, 0.375, 0.0]


def _results(name, *, env_id=None, y_label="greedy return", arms):
    config = {"env_id": env_id} if env_id else {}
    return {"experiment": name, "config": config, "y_label": y_label, "arms": arms}


def _arm(first_eval, final, auc=None):
    return {"first_eval": first_eval, "final": final, "auc": final if auc is None else auc}


CARTPOLE = _results(
    "cartpole",
    env_id="CartPole-v1",
    arms={
        "old": _arm([500.0], [500.0]),
        "scratch": _arm([10.0, 30.0], [20.0, 475.0]),
        "template": _arm([100.0, 100.0], [247.5, 475.0]),
        "exact": _arm([475.0, 475.0], [930.0, 475.0]),
    },
)
MNIST = _results(
    "mnist",
    y_label="test accuracy",
    arms={
        "scratch": _arm([0.1, 0.1], [0.1, 0.55]),
        "transplant": _arm([0.5, 0.5], [1.0, 0.775]),
        "preserving": _arm([0.5, 0.5], [0.55, 0.55]),
        "naive-load": _arm([0.1, 0.1], [0.1, 0.1]),
    },
)


def test_normalised_scores_zero_at_untrained_one_at_reference():
    scores = aggregate.normalised_scores(CARTPOLE, "final")
    # zero: scratch's mean first evaluation 20; one: CartPole's threshold 475
    assert set(scores) == {"scratch", "transplant", "preserving"}
    assert scores["scratch"].tolist() == [0.0, 1.0]
    assert scores["transplant"].tolist() == [0.5, 1.0]
    assert scores["preserving"].tolist() == [2.0, 1.0]
    mnist = aggregate.normalised_scores(MNIST, "final")
    assert mnist["transplant"] == pytest.approx([1.0, 0.75])
    assert mnist["naive-load"] == pytest.approx([0.0, 0.0])


def test_reference_score_errors_name_the_experiment():
    with pytest.raises(ValueError, match="cartpole.*'Pong-v0'"):
        aggregate.reference_score(_results("cartpole", env_id="Pong-v0", arms={}))
    with pytest.raises(ValueError, match="no scratch arm"):
        aggregate.normalised_scores(_results("x", env_id="CartPole-v1", arms={}))


def test_aggregate_pools_the_experiments_that_have_every_role():
    summary = aggregate.aggregate(
        [CARTPOLE, MNIST], roles=("scratch", "transplant", "naive-load"), resamples=200
    )
    assert summary["experiments"] == ["mnist"]
    assert summary["left_out"] == {"cartpole": ["naive-load"]}
    summary = aggregate.aggregate([CARTPOLE, MNIST], thresholds=[0.5, 0.9], resamples=200)
    assert summary["experiments"] == ["cartpole", "mnist"]
    # transplant's normalised finals: 0.5, 1.0 (CartPole) and 1.0, 0.75 (MNIST); the IQM of four
    # values drops one at each end: (0.75 + 1.0) / 2
    value, low, high = summary["roles"]["transplant"]["final"]["iqm"]
    assert value == pytest.approx(0.875)
    assert low <= value <= high
    assert summary["roles"]["preserving"]["final"]["mean"][0] == pytest.approx((2 + 1 + 1) / 4)
    # above 0.5: CartPole 1 of 2 (0.5 is not above), MNIST 2 of 2 -> 0.75;
    # above 0.9: CartPole 1 of 2, MNIST 1 of 2 -> 0.5
    assert summary["roles"]["transplant"]["profile"] == pytest.approx([0.75, 0.5])
    table = aggregate.aggregate_table(summary)
    assert "| transplant | 0.88 [" in table and "2 experiments" in table


def test_aggregate_leaves_out_an_environment_without_a_reference_score():
    breakout = _results("breakout", env_id="Breakout-MinAtar", arms=MNIST["arms"])
    summary = aggregate.aggregate([CARTPOLE, breakout], resamples=200)
    assert summary["experiments"] == ["cartpole"]
    assert summary["left_out"] == {"breakout": ["reference score"]}
    assert "left out: breakout (no reference score)" in aggregate.aggregate_table(summary)
    with pytest.raises(ValueError, match="no experiment has every arm"):
        aggregate.aggregate([breakout], resamples=200)
