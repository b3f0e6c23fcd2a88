import json

import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import load_agent


def test_train_command_writes_checkpoint_metrics_and_plot(tmp_path, monkeypatch):
    from jsurgery.rl import presets

    # The preset with a short run and small evaluation, so the test stays fast.
    original = presets.PRESETS["CartPole-v1"]
    monkeypatch.setitem(
        presets.PRESETS,
        "CartPole-v1",
        lambda total_steps=1_000, hidden=None: original(total_steps, hidden).replace(
            eval_episodes=2, buffer_size=1_000
        ),
    )
    out = tmp_path / "cp"
    main([
        "train", "CartPole-v1", "--seeds", "2", "--steps", "1000", "--hidden", "8",
        "--obs", "theta,x_dot", "--actions", "right,left", "--out", str(out),
    ])  # fmt: skip
    for name in ("metrics.json", "curves.png", "agent.json", "checkpoint"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["obs_ids"] == ["theta", "x_dot"] and metrics["seeds"] == [0, 1]
    assert metrics["config"]["hidden"] == [8] and metrics["config"]["total_steps"] == 1000
    assert len(metrics["final_eval_return"]) == 2 and metrics["steps_per_second"] > 0
    assert metrics["eval_steps"][0] == 0 and metrics["eval_steps"][-1] == 1000
    assert len(metrics["episode_return"]) == 2
    assert len(metrics["episode_return"][0]) == len(metrics["episode_steps"])
    agent = load_agent(out, seed=1)
    actions = agent.act(np.zeros((5, 4), np.float32))
    assert actions.shape == (5,) and set(actions.tolist()) <= {0, 1}


def test_train_command_names_the_fix_for_odd_step_counts(tmp_path):
    from jsurgery.commands.train import train_command

    with pytest.raises(ValueError, match="--steps 1234: .* multiple of 250; use e.g. --steps 1250"):
        train_command("CartPole-v1", steps=1234, out=tmp_path / "x")
