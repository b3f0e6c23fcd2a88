"""The command-line loop on a tiny budget: train, surgery, train on from the new run."""

import json

import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import load_agent, load_run


@pytest.fixture
def tiny_cartpole(monkeypatch):
    """The CartPole preset with 500-step runs, learning from step 250 and 2 evaluation episodes."""
    from jsurgery.rl import presets

    original = presets.PRESETS["CartPole-v1"]
    monkeypatch.setitem(
        presets.PRESETS,
        "CartPole-v1",
        lambda total_steps=500, hidden=None: original(total_steps, hidden).replace(
            eval_episodes=2, buffer_size=500, learning_starts=250
        ),
    )


def test_train_surgery_and_train_on(tmp_path, tiny_cartpole, capsys):
    old, new, on = tmp_path / "old", tmp_path / "new", tmp_path / "on"
    assert main(["train", "CartPole-v1", "--seeds", "2", "--steps", "500", "--hidden", "8",
                 "--obs", "x_dot,theta", "--out", str(old)]) == 0  # fmt: skip
    capsys.readouterr()

    argv = ["surgery", str(old), "--obs", "x,x_dot,theta,theta_dot", "--actions", "left,right",
            "--recipe", "preserving", "--out", str(new)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "params/Dense_0/kernel" in printed and "greedy return right after surgery" in printed
    summary = json.loads((new / "surgery.json").read_text())
    assert summary["new"]["obs_ids"] == ["x", "x_dot", "theta", "theta_dot"]
    assert summary["seeds"] == [0, 1] and len(summary["new_greedy_return"]) == 2
    # New observations read by zero weights: the same greedy policy, the same returns.
    np.testing.assert_allclose(summary["new_greedy_return"], summary["old_greedy_return"])

    before, after = load_run(old), load_run(new)
    assert after.env.obs_ids == ("x", "x_dot", "theta", "theta_dot") and after.seeds == (0, 1)
    for name in ("params", "target_params"):
        kernel = after.state[name]["params"]["Dense_0"]["kernel"]
        assert kernel.shape == (2, 4, 8)
        np.testing.assert_array_equal(kernel[:, [1, 2]], before.state[name]["params"]["Dense_0"]
                                      ["kernel"])  # fmt: skip
        np.testing.assert_array_equal(kernel[:, [0, 3]], 0.0)
    adam = after.state["opt_state"][1][0]
    np.testing.assert_array_equal(adam.count, before.state["opt_state"][1][0].count)
    np.testing.assert_array_equal(adam.mu["params"]["Dense_0"]["kernel"][:, [0, 3]], 0.0)
    full = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    for seed in (0, 1):
        np.testing.assert_array_equal(load_agent(new, seed).act(full),
                                      load_agent(old, seed).act(full))  # fmt: skip

    assert (
        main(
            [
                "train",
                "CartPole-v1",
                "--init",
                str(new),
                "--steps",
                "500",
                "--exploration-start",
                "0.1",
                "--learning-rate",
                "1e-3",
                "--out",
                str(on),
            ]
        )
        == 0
    )
    metrics = json.loads((on / "metrics.json").read_text())
    assert metrics["obs_ids"] == ["x", "x_dot", "theta", "theta_dot"] and metrics["seeds"] == [0, 1]
    assert metrics["config"]["exploration_start"] == 0.1
    assert metrics["config"]["learning_rate"] == 1e-3 and metrics["config"]["hidden"] == [8]
    # Step 0 of the continued run evaluates the transplanted network.
    assert metrics["eval_return"][0][0] > 0 and metrics["init"] == str(new)


def test_train_config_defaults_for_a_transplanted_network():
    from jsurgery.commands.train import train_config
    from jsurgery.rl.presets import cartpole_config

    class Run:
        config = cartpole_config(hidden=(12, 12)).replace(layer_norm=False)

    fresh = train_config("CartPole-v1", 5_000)
    assert fresh.exploration_start == 1.0
    continued = train_config("CartPole-v1", 5_000, init=Run())
    assert continued.exploration_start == continued.exploration_end == 0.04
    assert continued.hidden == (12, 12) and continued.layer_norm is False
    assert continued.learning_rate == fresh.learning_rate
    tuned = train_config("CartPole-v1", 5_000, init=Run(), exploration_start=0.2,
                         learning_rate=1e-4)  # fmt: skip
    assert tuned.exploration_start == 0.2 and tuned.learning_rate == 1e-4
    assert tuned.learning_rate_end == 0.0


def test_surgery_onto_an_existing_run_is_refused_or_replaces_it_whole(
    tmp_path, tiny_cartpole, capsys
):
    old, new = tmp_path / "old", tmp_path / "new"
    for out in (old, new):
        assert main(["train", "CartPole-v1", "--steps", "500", "--hidden", "8",
                     "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    argv = ["surgery", str(old), "--hidden", "12", "--out", str(new)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a complete run; pass --force" in err
    assert load_run(new).config.hidden == (8,)

    assert main([*argv, "--force"]) == 0
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["files"] == ["agent.json", "checkpoint", "surgery.json"]
    assert sorted(p.name for p in new.iterdir()) == sorted(manifest["files"] + ["manifest.json"])
    assert load_run(new).config.hidden == (12,)


def test_noise_spreads_new_units_under_a_layernorm_and_is_refused_where_it_means_nothing(
    tmp_path, tiny_cartpole, capsys
):
    """``--noise 0.1`` widening a LayerNorm network: the old units' incoming columns are kept,
    each new unit's column is the old columns' mean times its own noise (so no two are equal),
    and surgery.json records it; with ``--recipe transplant`` or a negative noise it is refused
    in one line."""
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["train", "CartPole-v1", "--seeds", "1", "--steps", "500", "--hidden", "4",
                 "--set", "layer_norm=true", "--out", str(old)]) == 0  # fmt: skip
    argv = ["surgery", str(old), "--hidden", "8", "--out", str(new)]
    for bad, says in (("--recipe transplant", "random initialisation already"), ("-1", "0 or")):
        extra = ["--noise", "0.1", *bad.split()] if bad.startswith("--") else ["--noise", bad]
        capsys.readouterr()
        assert main([*argv, *extra]) == 2
        assert says in capsys.readouterr().err
    assert main([*argv, "--noise", "0.1"]) == 0
    assert json.loads((new / "surgery.json").read_text())["noise"] == 0.1
    before = load_run(old).state["params"]["params"]["Dense_0"]["kernel"][0]
    after = load_run(new).state["params"]["params"]["Dense_0"]["kernel"][0]
    np.testing.assert_array_equal(after[:, :4], before)
    relative = after[:, 4:] / before.mean(axis=1, keepdims=True) - 1
    assert 0.03 < relative.std() < 0.3
    columns = after[:, 4:].T
    distances = np.abs(columns[:, None] - columns[None]).max(-1)
    assert np.all(distances[~np.eye(4, dtype=bool)] > 0)
