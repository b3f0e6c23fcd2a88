"""What ``jsurgery train --help`` and ``jsurgery run --help`` list: environments with their IDs
and default step counts, configuration keys, experiments with their protocols.

Built only when the help is asked for, since listing them imports the RL and experiment modules.
"""

from __future__ import annotations

import textwrap

__all__ = ["run_epilog", "train_epilog"]

WIDTH = 100


def _wrapped(label: str, items: list[str]) -> str:
    return textwrap.fill(
        ", ".join(items), WIDTH, initial_indent=f"    {label}: ", subsequent_indent="      "
    )


def train_epilog() -> str:
    """The environments (IDs and preset step counts) and the keys of ``--set`` / ``--config``."""
    from jsurgery.rl.config_overrides import config_field_types
    from jsurgery.rl.environments import CONTINUOUS_ENV_IDS, ENV_IDS, env_spec
    from jsurgery.rl.ppo_config import PPOConfig
    from jsurgery.rl.ppo_presets import PPO_PRESETS
    from jsurgery.rl.presets import default_config

    lines = ["environments, default --steps, observation IDs (--obs) and action IDs (--actions):"]
    by_position = []
    for env_id in ENV_IDS:
        spec = env_spec(env_id)
        if spec.obs_ids is None:
            by_position.append(env_id)
            continue
        steps = default_config(env_id).total_steps
        lines.append(f"  {env_id}, {steps} steps")
        lines.append(_wrapped("obs", list(spec.obs_ids)))
        lines.append(_wrapped("actions", list(spec.action_ids)))
    steps = default_config(by_position[0]).total_steps
    lines.append(
        textwrap.fill(
            f"  {steps} steps, IDs by position (obs_0, ..., action_0, ...): "
            + ", ".join(by_position),
            WIDTH,
            subsequent_indent="    ",
        )
    )
    for env_id in CONTINUOUS_ENV_IDS:
        spec = env_spec(env_id)
        lines.append(f"  {env_id} (continuous actions: --algo ppo)")
        lines.append(_wrapped("obs", list(spec.obs_ids)))
        lines.append(_wrapped("actions", list(spec.action_ids)))
    lines += [
        "",
        f"--algo ppo presets (default --steps {PPO_PRESETS['CartPole-v1']().total_steps}): "
        + ", ".join(PPO_PRESETS)
        + "; others start from CartPole's (discrete) or Pendulum's (continuous)",
        "",
        "configuration keys (--set KEY=VALUE, --config FILE; see --print-config):",
        _keys("dqn", config_field_types()),
        _keys("ppo", config_field_types(PPOConfig)),
    ]
    return "\n".join(lines)


def _keys(algo: str, keys) -> str:
    return textwrap.fill(
        ", ".join(keys), WIDTH, initial_indent=f"  {algo}: ", subsequent_indent="    "
    )


def run_epilog() -> str:
    """Every experiment with its protocols."""
    from jsurgery.experiments.command import DEFAULT_PROTOCOL, experiments

    lines = [f"experiments and their protocols (default {DEFAULT_PROTOCOL}):"]
    for name, experiment in experiments().items():
        lines.append(f"  {name}: {', '.join(experiment.protocols)}")
    return "\n".join(lines)
