"""Tuned configurations, per environment and for the small networks the experiments use.

The full-size presets follow rl-baselines3-zoo's tuned DQN hyperparameters for each environment
(learning rate, batch, buffer, target updates, exploration, replay ratio), with a smaller network
(64, 64) so that 20 seeds train quickly on a CPU. Their measured results are in the README.

CartPole and LunarLander add n-step returns and Double DQN to the zoo's settings, which on their
own leave most seeds still learning at the end of the step budget (see the README's results).
"""

from __future__ import annotations

from collections.abc import Sequence

from jsurgery.rl.config import DQNConfig

__all__ = [
    "PRESETS",
    "acrobot_config",
    "cartpole_config",
    "default_config",
    "gymnax_config",
    "lunar_lander_config",
    "minatar_config",
    "mountain_car_config",
    "small_acrobot_config",
    "small_cartpole_config",
]


def pick_eval_every(total_steps: int, block_steps: int, evaluations: int = 10) -> int:
    """The multiple of ``block_steps`` dividing ``total_steps`` nearest ``evaluations`` evaluations.

    Raises:
        ValueError: ``total_steps`` is not a multiple of ``block_steps``.
    """
    if total_steps <= 0 or total_steps % block_steps:
        raise ValueError(
            f"`total_steps`: {total_steps} is not a positive multiple of {block_steps} (the steps "
            f"between training phases); use e.g. "
            f"{max(1, round(total_steps / block_steps)) * block_steps}"
        )
    blocks = total_steps // block_steps
    divisors = [d for d in range(1, blocks + 1) if blocks % d == 0]
    best = min(divisors, key=lambda d: abs(blocks // d - evaluations))
    return best * block_steps


def _with_steps(config: DQNConfig, total_steps: int, hidden: Sequence[int] | None) -> DQNConfig:
    eval_every = pick_eval_every(total_steps, config.block_steps)
    changes = {"total_steps": total_steps, "eval_every": eval_every}
    if hidden is not None:
        changes["hidden"] = tuple(hidden)
    return config.replace(**changes)


def cartpole_config(total_steps: int = 50_000, hidden: Sequence[int] | None = None) -> DQNConfig:
    """CartPole-v1, network (64, 64) with layer normalisation, 5-step returns, Double DQN.

    One gradient step per environment step, in blocks of 250, and the step size falling to 0.
    """
    base = DQNConfig(
        hidden=(64, 64),
        layer_norm=True,
        learning_rate=2.3e-3,
        learning_rate_end=0.0,
        buffer_size=100_000,
        batch_size=64,
        gamma=0.99,
        n_step=5,
        double_dqn=True,
        target_update_interval=10,
        exploration_fraction=0.16,
        exploration_end=0.04,
        train_freq=250,
        gradient_steps=250,
        learning_starts=1_000,
        eval_every=5_000,
        total_steps=50_000,
    )
    return _with_steps(base, total_steps, hidden)


def acrobot_config(total_steps: int = 100_000, hidden: Sequence[int] | None = None) -> DQNConfig:
    """Acrobot-v1, network (64, 64)."""
    base = DQNConfig(
        hidden=(64, 64),
        learning_rate=6.3e-4,
        buffer_size=50_000,
        batch_size=128,
        gamma=0.99,
        target_update_interval=250,
        exploration_fraction=0.12,
        exploration_end=0.1,
        train_freq=4,
        gradient_steps=4,
        learning_starts=0,
        eval_every=10_000,
        total_steps=100_000,
    )
    return _with_steps(base, total_steps, hidden)


def lunar_lander_config(
    total_steps: int = 200_000, hidden: Sequence[int] | None = None
) -> DQNConfig:
    """LunarLander-v3, network (64, 64), 3-step returns, Double DQN, decaying step size.

    rl-baselines3-zoo's LunarLander settings (those of :func:`acrobot_config`) with three changes
    that make 20 seeds learn faster: 3-step returns, Double DQN, and the step size falling to 0 at
    ``total_steps``; exploration ends at 0.05 instead of 0.1.
    """
    base = acrobot_config(total_steps=100_000).replace(
        hidden=(64, 64),
        n_step=3,
        double_dqn=True,
        learning_rate_end=0.0,
        exploration_end=0.05,
    )
    return _with_steps(base, total_steps, hidden)


def small_cartpole_config(total_steps: int = 8_000, hidden: Sequence[int] = (16,)) -> DQNConfig:
    """CartPole-v1 with the experiments' small networks: (16,) on ``x_dot, theta``, (4, 4), (8,).

    A short horizon (gamma 0.9) lets values settle within a few thousand steps, and 100 gradient
    steps between target copies keep the small networks from diverging.
    """
    base = DQNConfig(
        hidden=(16,),
        learning_rate=2.3e-3,
        learning_rate_end=0.0,
        buffer_size=10_000,
        batch_size=64,
        gamma=0.9,
        target_update_interval=100,
        exploration_fraction=0.2,
        exploration_end=0.04,
        train_freq=100,
        gradient_steps=100,
        learning_starts=500,
        eval_every=1_000,
        total_steps=8_000,
    )
    return _with_steps(base, total_steps, hidden)


def small_acrobot_config(total_steps: int = 20_000, hidden: Sequence[int] = (16, 16)) -> DQNConfig:
    """Acrobot-v1 with the experiments' small networks, e.g. (16, 16) on two actions."""
    base = acrobot_config(total_steps=100_000, hidden=(16, 16))
    return _with_steps(base, total_steps, hidden)


def mountain_car_config(
    total_steps: int = 120_000, hidden: Sequence[int] | None = None
) -> DQNConfig:
    """MountainCar-v0: rl-baselines3-zoo's settings (the zoo's network is (256, 256)).

    The reward is -1 a step until the flag (-200 when it is never reached); 16-step blocks of 8
    gradient steps, a target copy every 600 steps, exploration falling to 0.07 over 20 %.
    """
    base = DQNConfig(
        hidden=(256, 256),
        learning_rate=4e-3,
        buffer_size=10_000,
        batch_size=128,
        gamma=0.98,
        target_update_interval=600,
        exploration_fraction=0.2,
        exploration_end=0.07,
        train_freq=16,
        gradient_steps=8,
        learning_starts=1_000,
        eval_every=12_000,
        total_steps=120_000,
    )
    return _with_steps(base, total_steps, hidden)


def minatar_config(total_steps: int = 200_000, hidden: Sequence[int] | None = None) -> DQNConfig:
    """The MinAtar games (10 x 10 images, flattened): network (128, 128) with layer normalisation.

    Double DQN with 3-step returns, Adam at 3e-4 falling to 0, a target copy every 1,000 steps,
    exploration falling to 0.05 over the first 20 % of the run; one gradient step per 4 steps.
    """
    base = DQNConfig(
        hidden=(128, 128),
        layer_norm=True,
        learning_rate=3e-4,
        learning_rate_end=0.0,
        buffer_size=100_000,
        batch_size=64,
        gamma=0.99,
        n_step=3,
        double_dqn=True,
        target_update_interval=1_000,
        exploration_fraction=0.2,
        exploration_end=0.05,
        train_freq=4,
        gradient_steps=1,
        learning_starts=5_000,
        eval_every=20_000,
        total_steps=200_000,
    )
    return _with_steps(base, total_steps, hidden)


def gymnax_config(total_steps: int = 50_000, hidden: Sequence[int] | None = None) -> DQNConfig:
    """Any other discrete-action gymnax environment (bsuite, misc): network (64, 64).

    rl-baselines3-zoo's Acrobot settings (:func:`acrobot_config`) with Double DQN, 3-step returns
    and the step size falling to 0; a starting point for an environment without a tuned preset.
    """
    base = acrobot_config(total_steps=100_000).replace(
        n_step=3, double_dqn=True, learning_rate=1e-3, learning_rate_end=0.0,
        learning_starts=1_000, exploration_end=0.05,
    )  # fmt: skip
    return _with_steps(base, total_steps, hidden)


PRESETS = {
    "CartPole-v1": cartpole_config,
    "Acrobot-v1": acrobot_config,
    "LunarLander-v3": lunar_lander_config,
    "MountainCar-v0": mountain_car_config,
    **{f"{game}-MinAtar": minatar_config for game in (
        "Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")},
}  # fmt: skip
"""The tuned configuration of each environment, as a function of (total_steps, hidden); every
other environment of :data:`jsurgery.rl.ENV_IDS` gets :func:`gymnax_config`."""


def default_config(
    env_id: str, total_steps: int | None = None, hidden: Sequence[int] | None = None
) -> DQNConfig:
    """The preset of ``env_id`` (:data:`PRESETS`, else :func:`gymnax_config`), with
    ``total_steps`` and ``hidden`` when given."""
    from jsurgery.rl.environments import CONTINUOUS_ENV_IDS, env_spec

    env_spec(env_id)  # an unknown environment is a ValueError naming the closest one
    if env_id in CONTINUOUS_ENV_IDS:
        raise ValueError(
            f"`env_id`: {env_id} has continuous actions and a DQN needs discrete ones "
            "(train it with PPO: jsurgery train --algo ppo, or jsurgery.rl.ppo)"
        )
    preset = PRESETS.get(env_id, gymnax_config)
    return preset(hidden=hidden) if total_steps is None else preset(total_steps, hidden)
