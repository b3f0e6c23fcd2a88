"""Tuned PPO configurations, per environment.

The discrete-action presets follow purejaxrl's PPO for CartPole (4 environments, 4 epochs of 4
minibatches, step size 2.5e-4 falling to 0, tanh (64, 64) actor and critic, clip 0.2, entropy
0.01), with 125 steps per environment in each rollout instead of 128 so that an iteration is 500
steps and round budgets such as 500,000 steps divide into whole iterations. Their measured results
are in the documentation (docs/ppo.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.presets import pick_eval_every

__all__ = [
    "PPO_PRESETS",
    "acrobot_ppo_config",
    "cartpole_ppo_config",
    "default_ppo_config",
    "pendulum_ppo_config",
]


def _with_steps(config: PPOConfig, total_steps: int, hidden: Sequence[int] | None) -> PPOConfig:
    eval_every = pick_eval_every(total_steps, config.block_steps)
    changes = {"total_steps": total_steps, "eval_every": eval_every}
    if hidden is not None:
        changes["hidden"] = tuple(hidden)
    return config.replace(**changes)


def cartpole_ppo_config(
    total_steps: int = 500_000, hidden: Sequence[int] | None = None
) -> PPOConfig:
    """CartPole-v1: purejaxrl's PPO settings, 500-step iterations (4 environments x 125 steps)."""
    base = PPOConfig(
        hidden=(64, 64),
        activation="tanh",
        learning_rate=2.5e-4,
        learning_rate_end=0.0,
        num_envs=4,
        num_steps=125,
        num_epochs=4,
        num_minibatches=4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
        max_grad_norm=0.5,
        eval_every=50_000,
        total_steps=500_000,
        eval_episodes=10,
    )
    return _with_steps(base, total_steps, hidden)


def acrobot_ppo_config(
    total_steps: int = 500_000, hidden: Sequence[int] | None = None
) -> PPOConfig:
    """Acrobot-v1: the CartPole settings."""
    return cartpole_ppo_config(total_steps, hidden)


def pendulum_ppo_config(
    total_steps: int = 500_000, hidden: Sequence[int] | None = None
) -> PPOConfig:
    """Pendulum-v1 (continuous torque): a Gaussian policy with a learned, state-independent
    ``log_std``; rewards (about -16 to 0 per step) scaled by 0.1 for the value targets (20 seeds,
    500,000 steps: mean final greedy return -162.7 against -201.3 unscaled)."""
    base = PPOConfig(
        hidden=(64, 64),
        activation="tanh",
        learning_rate=1e-3,
        learning_rate_end=0.0,
        num_envs=4,
        num_steps=1000,
        num_epochs=10,
        num_minibatches=16,
        gamma=0.9,
        gae_lambda=0.95,
        clip_eps=0.2,
        vf_coef=0.5,
        ent_coef=0.0,
        max_grad_norm=0.5,
        reward_scale=0.1,
        eval_every=20_000,
        total_steps=500_000,
        eval_episodes=10,
    )
    return _with_steps(base, total_steps, hidden)


PPO_PRESETS = {
    "CartPole-v1": cartpole_ppo_config,
    "Acrobot-v1": acrobot_ppo_config,
    "Pendulum-v1": pendulum_ppo_config,
}
"""The tuned PPO configuration of each environment, as a function of (total_steps, hidden)."""


def default_ppo_config(
    env_id: str, total_steps: int | None = None, hidden: Sequence[int] | None = None
) -> PPOConfig:
    """The PPO preset of ``env_id`` (:data:`PPO_PRESETS`), with ``total_steps`` and ``hidden``
    when given. Other environments take an untuned start: CartPole's settings for discrete
    actions, Pendulum's for continuous ones.

    Raises:
        ValueError: an unknown environment.
    """
    from jsurgery.rl.environments import CONTINUOUS_ENV_IDS, env_spec

    env_spec(env_id)  # an unknown environment is a ValueError naming the closest one
    fallback = "Pendulum-v1" if env_id in CONTINUOUS_ENV_IDS else "CartPole-v1"
    preset = PPO_PRESETS.get(env_id, PPO_PRESETS[fallback])
    return preset(hidden=hidden) if total_steps is None else preset(total_steps, hidden)
