"""The algorithms a saved run can hold, DQN and PPO, and what each needs to rebuild its agents.

Example:
    >>> from jsurgery.rl.ppo_config import PPOConfig
    >>> algorithm_of(PPOConfig()).name, algorithm_named("dqn").state_keys
    ('ppo', ('params', 'target_params', 'opt_state'))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.suggest import did_you_mean

__all__ = ["ALGORITHMS", "Algorithm", "algorithm_named", "algorithm_of"]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One training algorithm, as the command line and saved runs see it.

    Attributes:
        name: ``"dqn"`` or ``"ppo"`` (``--algo``, ``agent.json``'s ``"algo"``).
        config_type: its configuration class.
        block_fields: the config fields whose product is the steps of one training block.
        preset: ``(env_id, total_steps or None, hidden or None) -> config``.
        network: ``(config, env) -> flax module``.
        optimizer: ``config -> optax transformation``.
        make_parts: ``(config, env, on_period=None) -> parts`` with ``evaluate``.
        state_keys: the keys of a run's training state.
    """

    name: str
    config_type: type
    block_fields: tuple[str, ...]
    preset: Callable[..., Any]
    network: Callable[[Any, IdEnv], Any]
    optimizer: Callable[[Any], Any]
    make_parts: Callable[..., Any]
    state_keys: tuple[str, ...]

    def initial_state(self, config: Any, env: IdEnv, key: jax.Array) -> dict[str, Any]:
        """One seed's freshly initialised training state (the keys :attr:`state_keys`)."""
        params = self.network(config, env).init(key, jnp.zeros((1, env.num_obs), jnp.float32))
        state = {"params": params, "opt_state": self.optimizer(config).init(params)}
        if "target_params" in self.state_keys:
            state["target_params"] = params
        return {key: state[key] for key in self.state_keys}


def _dqn() -> Algorithm:
    from jsurgery.rl.dqn import make_dqn, make_optimizer
    from jsurgery.rl.networks import QNetwork
    from jsurgery.rl.presets import default_config

    return Algorithm(
        name="dqn",
        config_type=DQNConfig,
        block_fields=("train_freq", "num_envs"),
        preset=default_config,
        network=lambda config, env: QNetwork.for_config(config, env.num_actions),
        optimizer=make_optimizer,
        make_parts=make_dqn,
        state_keys=("params", "target_params", "opt_state"),
    )


def _ppo() -> Algorithm:
    from jsurgery.rl.actor_critic import ActorCritic
    from jsurgery.rl.ppo import make_ppo
    from jsurgery.rl.ppo_presets import default_ppo_config
    from jsurgery.rl.ppo_update import make_optimizer

    return Algorithm(
        name="ppo",
        config_type=PPOConfig,
        block_fields=("num_envs", "num_steps"),
        preset=default_ppo_config,
        network=lambda config, env: ActorCritic.for_config(config, env.num_actions, env.continuous),
        optimizer=make_optimizer,
        make_parts=make_ppo,
        state_keys=("params", "opt_state"),
    )


ALGORITHMS: dict[str, Callable[[], Algorithm]] = {"dqn": _dqn, "ppo": _ppo}
"""``--algo`` name -> the algorithm (built on first use, so that importing this is light)."""


def algorithm_named(name: str, argument: str = "`algo`") -> Algorithm:
    """The algorithm called ``name``.

    Raises:
        ValueError: an unknown name, naming ``argument`` and the known ones.
    """
    if name not in ALGORITHMS:
        known: Sequence[str] = tuple(ALGORITHMS)
        raise ValueError(
            f"{argument}: unknown algorithm {name!r}{did_you_mean(name, known)}; choose one of "
            f"{', '.join(known)}"
        )
    return ALGORITHMS[name]()


def algorithm_of(config: Any) -> Algorithm:
    """The algorithm a configuration configures (a :class:`DQNConfig` or :class:`PPOConfig`)."""
    name = "ppo" if isinstance(config, PPOConfig) else "dqn"
    return algorithm_named(name)
