"""Surgery experiments on DQN agents: train an old agent, operate, train on, compare with scratch.

Every arm trains with the same :class:`~jsurgery.rl.DQNConfig` (same hyperparameters, same step
budget) and the same keys. The arms that start a new network (``scratch``, ``transplant``,
``preserving``, ``naive-load`` and the extra new-action arms) also share one fresh initialisation
per seed, the *template*: ``scratch`` trains the template itself, the others transplant the old
network into it. They therefore run through one compiled function, compiled once.

Keys per integer seed ``s``: ``k = PRNGKey(s)``; the old agent trains with ``fold_in(k, 0)``, the
new agents with ``fold_in(k, 1)``, and the template is initialised with ``fold_in(k, 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.experiments.arms import jsonable, start_new_network
from jsurgery.experiments.runner import ArmRun
from jsurgery.experiments.shift import surgery_shift

#: Arms every experiment has, in order.
BASE_ARMS = ("old", "scratch", "transplant", "preserving", "naive-load")


@dataclasses.dataclass(frozen=True)
class DqnExperiment:
    """A surgery experiment on DQN agents, all but how an arm trains (:class:`DqnSurgery` and
    :class:`~jsurgery.experiments.recurrent.RecurrentDqnSurgery` add that).

    Attributes:
        name, description: as listed by ``jsurgery list``.
        env_id: the environment.
        old_obs, new_obs: observation IDs the old and the new network see (None: all).
        old_actions, new_actions: action IDs of the old and the new network (None: all).
        old_hidden, new_hidden: hidden widths.
        configs: protocol name -> the :class:`~jsurgery.rl.DQNConfig` every arm trains with
            (its ``hidden`` is replaced by the arm's widths).
        surgery: arm name -> ``make_plan`` keywords for every surgery arm but ``naive-load``.
        base_arms: the arms that come first, in order: ``old``, ``scratch``, then (by default)
            ``transplant``, ``preserving`` (both keys of ``surgery``) and ``naive-load``; the
            other keys of ``surgery`` follow.
    """

    name: str
    description: str
    env_id: str
    old_hidden: tuple[int, ...]
    new_hidden: tuple[int, ...]
    configs: Mapping[str, Any]
    surgery: Mapping[str, Mapping[str, Any]]
    old_obs: tuple[str, ...] | None = None
    new_obs: tuple[str, ...] | None = None
    old_actions: tuple[str, ...] | None = None
    new_actions: tuple[str, ...] | None = None
    x_label: str = "environment steps"
    y_label: str = "greedy evaluation return"
    base_arms: tuple[str, ...] = BASE_ARMS

    @property
    def arms(self) -> tuple[str, ...]:
        extra = tuple(arm for arm in self.surgery if arm not in self.base_arms)
        return self.base_arms + extra

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.configs)

    def dqn_config(self, protocol: str, hidden):
        return self.configs[protocol].replace(hidden=tuple(hidden))

    def envs(self):
        from jsurgery.rl import make_env

        old = make_env(self.env_id, obs=self.old_obs, actions=self.old_actions)
        new = make_env(self.env_id, obs=self.new_obs, actions=self.new_actions)
        return old, new

    def config(self, protocol: str, seeds: int) -> dict:
        old_env, new_env = self.envs()
        return {
            "experiment": self.name,
            "protocol": protocol,
            "seeds": seeds,
            "env_id": self.env_id,
            "old": {
                "obs": list(old_env.obs_ids),
                "actions": list(old_env.action_ids),
                "hidden": list(self.old_hidden),
            },
            "new": {
                "obs": list(new_env.obs_ids),
                "actions": list(new_env.action_ids),
                "hidden": list(self.new_hidden),
            },
            "dqn": {**self.configs[protocol].to_dict(), "hidden": None},
            "arms": list(self.arms),
            "surgery": {arm: jsonable(options) for arm, options in self.surgery.items()},
        }

    def new_network(self, arm: str, old_params, template, **plan_options) -> tuple[Any, dict]:
        """:func:`~jsurgery.experiments.arms.start_new_network` with this experiment's arms and
        surgery options; ``plan_options`` (the IDs, ``apply``, ``example``) go to ``make_plan``."""
        return start_new_network(
            arm,
            old_params,
            template,
            surgery=self.surgery,
            experiment=self.name,
            arms=self.arms,
            **plan_options,
        )


@dataclasses.dataclass(frozen=True)
class DqnSurgery(DqnExperiment):
    """One DQN surgery experiment: every arm trains a :class:`~jsurgery.rl.QNetwork` agent (the
    attributes are :class:`DqnExperiment`'s)."""

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params, progress: bool = False
    ) -> ArmRun:
        from jsurgery.rl import make_train, seed_keys

        old_env, new_env = self.envs()
        keys = seed_keys(range(seeds))
        if arm == "old":
            config = self.dqn_config(protocol, self.old_hidden)
            run = (fold_keys(keys, 0), None)
            state, metrics = train_arm(make_train, config, old_env, run, arm, progress)
            return arm_run(metrics, state["params"], old_env, {})
        config = self.dqn_config(protocol, self.new_hidden)
        params, notes = self.start_arm(arm, protocol=protocol, keys=keys, old_params=old_params)
        if old_env.obs_ids == new_env.obs_ids and old_env.action_ids == new_env.action_ids:
            old_network = _network(self.dqn_config(protocol, self.old_hidden), old_env)
            networks = (old_network, _network(config, new_env))
            shift = surgery_shift(*networks, new_env, old_params, params, fold_keys(keys, 4))
            notes = {**notes, "at_surgery": shift}
        run = (fold_keys(keys, 1), {"params": params})
        state, metrics = train_arm(make_train, config, new_env, run, arm, progress)
        return arm_run(metrics, None, new_env, notes)

    def start_arm(self, arm: str, *, protocol: str, keys, old_params) -> tuple[Any, dict]:
        """The new networks ``arm`` starts training from, one per key (the template initialised
        with ``fold_in(key, 2)``, operated on as the arm says), and notes on them.

        Inputs are matched by :attr:`~jsurgery.rl.IdEnv.feature_ids` (an image's channel moves
        with every pixel of it), outputs by action IDs.
        """
        old_env, new_env = self.envs()
        config = self.dqn_config(protocol, self.new_hidden)
        template = initial_params(config, new_env, fold_keys(keys, 2))
        return self.new_network(
            arm,
            old_params,
            template,
            inputs=(old_env.feature_ids, new_env.feature_ids),
            outputs=(old_env.action_ids, new_env.action_ids),
        )


def _network(config, env):
    from jsurgery.rl import QNetwork

    return QNetwork.for_config(config, env.num_actions)


def fold_keys(keys, data: int):
    """``fold_in(key, data)`` for every seed's key."""
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def arm_run(metrics, params, env, notes: dict) -> ArmRun:
    """The evaluation curves of a run's ``metrics`` as an :class:`ArmRun`, with ``env``'s
    observation and action IDs added to ``notes``."""
    steps = np.asarray(metrics["eval_steps"])[0]
    notes = {**notes, "env": {"obs": list(env.obs_ids), "actions": list(env.action_ids)}}
    return ArmRun(x=steps, curves=np.asarray(metrics["eval_return"]), params=params, notes=notes)


class _ArmProgress:
    """Moves the progress bar of the arm being trained; the compiled runs call it per period."""

    bar = None

    def __call__(self, step) -> None:
        if self.bar is not None:
            if self.bar.postfix:  # "compiling" until the first period is done
                self.bar.set_postfix_str("", refresh=False)
            self.bar.n = int(step)
            self.bar.refresh()


_ARM_PROGRESS = _ArmProgress()


def train_arm(make_train, config, env, run: tuple, arm: str, progress: bool):
    """All seeds of one arm in one compiled ``jax.vmap`` of ``make_train(config, env)``, called
    with the arguments ``run`` (keys first), with a bar over environment steps."""
    from jsurgery.rl.progress import progress_bar

    bar = progress_bar(
        total=config.total_steps, unit="step", desc=f"  {arm}", leave=False, disable=not progress
    )
    bar.set_postfix_str("compiling")
    _ARM_PROGRESS.bar = bar
    try:
        train = _compiled(make_train, config, env.env_id, env.obs_ids, env.action_ids)
        return jax.block_until_ready(train(*run))
    finally:
        _ARM_PROGRESS.bar = None
        bar.close()


@functools.lru_cache(maxsize=16)
def _compiled(make_train, config, env_id, obs, actions):
    from jsurgery.rl import make_env

    env = make_env(env_id, obs=obs, actions=actions)
    return jax.jit(jax.vmap(make_train(config, env, on_period=_ARM_PROGRESS)))


def initial_params(config, env, keys):
    network = _network(config, env)
    obs = jnp.zeros((1, env.num_obs), jnp.float32)
    return jax.vmap(lambda k: network.init(k, obs))(keys)
