"""The PPO surgery experiments end to end on the ``tiny`` protocol, and the preserving arm's new
network checked by forward passes against the old one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiments import SEEDS, check_results

import jsurgery
from jsurgery.experiments import runner
from jsurgery.experiments.configs import build_experiments
from jsurgery.experiments.ppo import PpoSurgery
from jsurgery.rl.files import load_params
from jsurgery.rl.ppo_surgery import NEW_ACTION_MARGIN

EXPERIMENTS = {
    name: experiment
    for name, experiment in build_experiments().items()
    if isinstance(experiment, PpoSurgery)
}

#: Run in the default suite; the others compile two more PPO runs each (about a minute on 2 CPU
#: cores) and run with ``-m slow``.
FAST = "ppo-cartpole-add-obs"


#: How far preserving may move the value and policy: float32 rounding, and under LayerNorm the
#: norm's epsilon, which the widened layer (4 units grown to 64 with the norm's statistics kept)
#: weighs more where a hidden layer's pre-norm variance is small.
EXACT = 1e-5
TOLERANCE = {"ppo-cartpole-ln-widen": 1e-2}


def by_speed(names):
    return [name if name == FAST else pytest.param(name, marks=pytest.mark.slow) for name in names]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """``name -> (results, folder)``, each experiment run once on the tiny protocol."""
    out = tmp_path_factory.mktemp("ppo-experiments")
    runs = {}

    def run(name):
        if name not in runs:
            results = runner.run_experiment(
                EXPERIMENTS[name], seeds=SEEDS, protocol="tiny", out=out, progress=False
            )
            runs[name] = results, out / name
        return runs[name]

    return run


def test_the_four_experiments_are_registered_with_their_arms():
    assert list(EXPERIMENTS) == [
        "ppo-cartpole-add-obs",
        "ppo-acrobot-add-action",
        "ppo-cartpole-ln-widen",
        "ppo-pendulum-add-obs",
    ]
    for experiment in EXPERIMENTS.values():
        assert experiment.arms[:5] == ("old", "scratch", "transplant", "preserving", "naive-load")
        assert experiment.surgery["preserving"] == {"recipe": "preserving"}
        assert experiment.surgery["transplant"] == {"recipe": "transplant"}
        assert experiment.protocols == ("original", "tiny")
    assert EXPERIMENTS["ppo-acrobot-add-action"].surgery["preserving-margin-1"] == {
        "recipe": "preserving",
        "margin": 1.0,
    }
    widening = EXPERIMENTS["ppo-cartpole-ln-widen"]
    assert widening.configs["original"].layer_norm
    for noise in (0.01, 0.1, 0.5):
        options = widening.surgery[f"preserving-noise-{noise:g}"]
        assert options == {"recipe": "preserving", "new_hidden": jsurgery.init.net2net(noise)}


@pytest.mark.parametrize("name", by_speed(EXPERIMENTS))
def test_experiment_end_to_end(name, tiny_runs):
    results, folder = tiny_runs(name)
    experiment = EXPERIMENTS[name]
    check_results(results, experiment, folder)
    assert results["config"]["ppo"]["total_steps"] == experiment.configs["tiny"].total_steps
    preserving = results["arms"]["preserving"]["notes"]["at_surgery"]
    scratch = results["arms"]["scratch"]["notes"]["at_surgery"]
    assert max(preserving["value_change"]) < TOLERANCE.get(name, EXACT)
    assert min(scratch["value_change"]) > 1e-2
    _, new_env = experiment.envs()
    for arm in experiment.arms[1:]:
        shares = results["arms"][arm]["notes"].get("trained_action_share")
        if new_env.continuous:
            assert shares is None, arm
            continue
        assert list(shares) == [str(action) for action in new_env.action_ids], arm
        np.testing.assert_allclose(np.sum(list(shares.values()), axis=0), 1.0, rtol=1e-6)
    if "greedy_agreement" in preserving:
        # Under the norm's epsilon a near tie of the old logits may flip on a state or two.
        least = 1.0 if name not in TOLERANCE else 0.99
        assert min(preserving["greedy_agreement"]) >= least


def seed(tree, index):
    return jax.tree.map(lambda leaf: jnp.asarray(leaf)[index], tree)


def views(experiment, count=64):
    """Random observations of the new view, and the same states as the old view sees them."""
    old_env, new_env = experiment.envs()
    new_obs = jax.random.normal(jax.random.PRNGKey(7), (count, new_env.num_obs))
    columns = [new_env.feature_ids.index(i) for i in old_env.feature_ids]
    return new_obs[:, jnp.array(columns)], new_obs


@pytest.mark.parametrize("name", by_speed(EXPERIMENTS))
def test_preserving_starts_with_the_old_policy_and_value(name, tiny_runs):
    """At step 0 the preserving arm's network gives the trained old network's value, its logits
    (or Gaussian mean and log_std) on the old actions, and a new action's logit the margin below
    their mean; the scratch arm's network, as a control, does not."""
    _, folder = tiny_runs(name)
    experiment = EXPERIMENTS[name]
    old_params = load_params(folder / runner.OLD_PARAMS)
    start = dict(protocol="tiny", seeds=SEEDS, old_params=old_params)
    preserving, _ = experiment.starting_params("preserving", **start)
    scratch, _ = experiment.starting_params("scratch", **start)
    old_network, new_network = experiment.networks("tiny")
    old_env, new_env = experiment.envs()
    old_obs, new_obs = views(experiment)
    kept = jnp.array([new_env.action_ids.index(a) for a in old_env.action_ids])
    added = [i for i, a in enumerate(new_env.action_ids) if a not in old_env.action_ids]
    tolerance = TOLERANCE.get(name, EXACT)
    for index in range(SEEDS):
        old_policy, old_value = old_network.apply(seed(old_params, index), old_obs)
        policy, value = new_network.apply(seed(preserving, index), new_obs)
        np.testing.assert_allclose(value, old_value, rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(policy[:, kept], old_policy, rtol=tolerance, atol=tolerance / 10)
        for action in added:
            expected = old_policy.mean(axis=1) - NEW_ACTION_MARGIN
            np.testing.assert_allclose(policy[:, action], expected, rtol=1e-5, atol=1e-5)
        if new_env.continuous:
            old_log_std = seed(old_params, index)["params"]["log_std"]
            log_std = seed(preserving, index)["params"]["log_std"]
            np.testing.assert_allclose(log_std[kept], old_log_std, rtol=1e-6)
        _, scratch_value = new_network.apply(seed(scratch, index), new_obs)
        assert np.abs(scratch_value - old_value).max() > 1e-2
