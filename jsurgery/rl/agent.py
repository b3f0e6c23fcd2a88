"""Saved agents: orbax checkpoints in run directories, and greedy agents loaded from them.

A saved run is a directory holding ``checkpoint/`` (``params``, ``target_params`` and ``opt_state``
for a DQN, ``params`` and ``opt_state`` for PPO, with a leading seed axis, written by orbax),
``agent.json`` (the algorithm, environment, observation and action IDs, seeds and the config) and
``manifest.json`` naming them. The whole directory is built beside the old one and switched in by
renames (:func:`jsurgery.rl.rundir.save_run`), so a directory with ``agent.json`` holds the
complete checkpoint saved with it. ``checkpoint/checksums.json`` holds a CRC-32 of every array;
:func:`load_run` verifies them and names a damaged array or file
(:class:`jsurgery.rl.files.DamagedFileError`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.atomic import read_whole
from jsurgery.rl.algorithms import algorithm_named, algorithm_of
from jsurgery.rl.checksums import check_files, verify_checksums, write_checksums
from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.files import DamagedFileError, read_json, write_json
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.rundir import save_run

__all__ = ["Agent", "SavedRun", "load_agent", "load_run", "save_agent", "write_agent"]

CHECKPOINT = "checkpoint"
AGENT_JSON = "agent.json"


def save_agent(
    directory: str | os.PathLike,
    config: DQNConfig | PPOConfig,
    env: IdEnv,
    state: dict[str, Any],
    seeds: tuple[int, ...] | None = None,
) -> Path:
    """Save trained agents (one per seed) under ``directory``.

    The run is written beside an earlier one and switched in at once: a reader (or a kill) sees
    the earlier run or this one, complete.

    Args:
        directory: output directory, created if needed; an earlier save there is replaced.
        config: the configuration they were trained with (:class:`DQNConfig` or
            :class:`~jsurgery.rl.PPOConfig`).
        env: the environment view (observation and action IDs) they were trained on.
        state: ``{"params", "target_params", "opt_state"}`` (PPO: ``{"params", "opt_state"}``)
            with a leading seed axis.
        seeds: the integer seed of each row (default ``0 .. n-1``).

    Returns:
        The directory.
    """
    return save_run(directory, lambda stage: write_agent(stage, config, env, state, seeds))


def write_agent(
    directory: Path,
    config: DQNConfig | PPOConfig,
    env: IdEnv,
    state: dict[str, Any],
    seeds: tuple[int, ...] | None = None,
) -> None:
    """Writes ``checkpoint/`` and ``agent.json`` into the (new, empty) ``directory``; the
    arguments are :func:`save_agent`'s. Used to build a run before it is switched in."""
    import orbax.checkpoint as ocp

    num_seeds = int(jax.tree.leaves(state["params"])[0].shape[0])
    seeds = tuple(range(num_seeds)) if seeds is None else tuple(int(s) for s in seeds)
    if len(seeds) != num_seeds:
        raise ValueError(f"`seeds`: {len(seeds)} seeds for a state holding {num_seeds}")
    state = jax.device_get(state)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / CHECKPOINT, state)
    write_checksums(directory / CHECKPOINT, state)
    write_json(
        directory / AGENT_JSON,
        {
            "algo": algorithm_of(config).name,
            "env_id": env.env_id,
            "obs_ids": list(env.obs_ids),
            "action_ids": list(env.action_ids),
            "seeds": list(seeds),
            "config": config.to_dict(),
        },
    )


class SavedRun:
    """A saved run: ``config``, ``env`` (with its IDs), ``seeds`` and the batched ``state``."""

    def __init__(
        self, config: DQNConfig | PPOConfig, env: IdEnv, seeds: tuple[int, ...], state: Any
    ):
        self.config, self.env, self.seeds, self.state = config, env, seeds, state

    def row(self, seed: int) -> int:
        if seed not in self.seeds:
            raise ValueError(
                f"`seed`: {seed} was not saved here; saved seeds are {list(self.seeds)}"
            )
        return self.seeds.index(seed)


def load_run(directory: str | os.PathLike) -> SavedRun:
    """Everything :func:`save_agent` wrote; ``state`` can be passed back to training as ``init``.

    A run a writer switches while it is being read is read again
    (:func:`jsurgery.atomic.read_whole`), so what is returned is one whole save, never the
    config of one and the arrays of another.

    Raises:
        FileNotFoundError: ``directory`` has no ``agent.json``.
        DamagedFileError: a damaged ``agent.json`` or checkpoint file, or an array whose bytes
            differ from the ones saved (each named).
    """
    return read_whole(directory, _load_run)


def _load_run(directory: Path) -> SavedRun:
    import orbax.checkpoint as ocp

    if not (directory / AGENT_JSON).exists():
        raise FileNotFoundError(
            f"{directory}: no {AGENT_JSON}; expected a directory saved by save_agent"
        )
    info = read_json(directory / AGENT_JSON)
    keys = ("env_id", "obs_ids", "action_ids", "seeds", "config")
    if not isinstance(info, dict) or any(key not in info for key in keys):
        raise DamagedFileError(
            f"{directory / AGENT_JSON} is damaged: expected the keys {list(keys)}; save the run "
            "again"
        )
    try:
        algorithm = algorithm_named(info.get("algo", "dqn"), "algo")  # runs before PPO: DQN
        config = algorithm.config_type.from_dict(info["config"])
        env = make_env(info["env_id"], info["obs_ids"], info["action_ids"])
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise DamagedFileError(
            f"{directory / AGENT_JSON} is damaged: its config, environment or IDs are not ones "
            f"this version of jsurgery saves ({type(error).__name__}: {error}); save the run again"
        ) from None
    seeds = tuple(info["seeds"])

    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((len(seeds), *leaf.shape), leaf.dtype),
        jax.eval_shape(lambda: algorithm.initial_state(config, env, jax.random.PRNGKey(0))),
    )
    check_files(directory / CHECKPOINT)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore(directory / CHECKPOINT, abstract)
    except Exception as error:  # orbax and tensorstore: ValueError, OSError, plain Exception
        check_files(directory / CHECKPOINT, data=True)  # names the damaged file if it can
        reason = " ".join(str(error).split())
        raise DamagedFileError(
            f"{directory / CHECKPOINT} is damaged or incomplete and cannot be read ({reason})"
        ) from None
    verify_checksums(directory / CHECKPOINT, state)
    return SavedRun(config, env, seeds, state)


class Agent:
    """A greedy agent acting on full environment observations with environment action indices.

    A DQN agent takes the action of the largest Q-value, a PPO agent its policy's most probable
    action (discrete) or the Gaussian's mean (continuous, clipped to the action bounds).

    Attributes:
        params: the network's parameters (one seed).
        network: the :class:`~jsurgery.rl.QNetwork` or :class:`~jsurgery.rl.ActorCritic`.
        env: the environment view it was trained on (its ``obs_ids`` and ``action_ids``).
        config: its training configuration.
        algo: ``"dqn"`` or ``"ppo"``.
    """

    def __init__(self, params: Any, env: IdEnv, config: DQNConfig | PPOConfig):
        self.params, self.env, self.config = params, env, config
        algorithm = algorithm_of(config)
        self.algo = algorithm.name
        self.network = algorithm.network(config, env)
        self._apply = jax.jit(self.network.apply)

    @property
    def obs_ids(self) -> tuple[str, ...]:
        return self.env.obs_ids

    @property
    def action_ids(self) -> tuple[str, ...]:
        return self.env.action_ids

    def _outputs(self, obs: np.ndarray) -> Any:
        obs = np.asarray(obs, np.float32)
        raw = self.env.raw_obs_shape
        if obs.ndim < len(raw) or obs.shape[obs.ndim - len(raw) :] != raw:
            raise ValueError(
                f"`obs`: expected full observations of the environment's shape {raw} "
                f"(features {list(self.env.all_obs_ids)} on the last axis), got shape {obs.shape}"
            )
        return self._apply(self.params, self.env.select_obs(obs))

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values ``(batch, len(action_ids))`` of full observations ``(batch, *raw shape)``
        (the environment's own observation shape: features, a board or an image); DQN agents."""
        if self.algo != "dqn":
            raise ValueError(
                f"q_values: a {self.algo.upper()} agent has no Q-values; use policy(obs)"
            )
        return np.asarray(self._outputs(obs))

    def policy(self, obs: np.ndarray) -> np.ndarray:
        """What the agent chooses by: Q-values (DQN), logits (PPO, discrete actions) or the
        Gaussian's means (PPO, continuous), ``(batch, len(action_ids))``."""
        outputs = self._outputs(obs)
        return np.asarray(outputs[0] if self.algo == "ppo" else outputs)

    def value(self, obs: np.ndarray) -> np.ndarray:
        """The critic's state values ``(batch,)`` (PPO agents)."""
        if self.algo != "ppo":
            raise ValueError("value: only PPO agents have a value head; use q_values(obs)")
        return np.asarray(self._outputs(obs)[1])

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy environment actions for a batch (or one) of full observations: indices of the
        environment's actions, or for continuous actions the environment's action vectors.

        Example:
            >>> agent = load_agent("runs/cp")  # doctest: +SKIP
            >>> agent.act(np.zeros((3, 4), np.float32))  # doctest: +SKIP
            array([0, 0, 0], dtype=int32)
        """
        chosen = self.policy(obs)
        if self.env.continuous:
            return np.asarray(self.env.env_action(jnp.asarray(chosen)))
        return self.env.action_index[np.argmax(chosen, axis=-1)]


def load_agent(directory: str | os.PathLike, seed: int = 0) -> Agent:
    """The greedy agent of ``seed`` saved under ``directory`` (by ``jsurgery train`` or save_agent),
    a DQN or a PPO agent.

    Its :meth:`Agent.act` takes full observations in the environment's own order and returns the
    environment's own action indices, applying the agent's observation and action IDs itself.
    """
    run = load_run(directory)
    row = run.row(seed)
    params = jax.tree.map(lambda leaf: leaf[row], run.state["params"])
    return Agent(params, run.env, run.config)
