"""Surgery experiments on PPO agents: train an old actor-critic, operate, train on, compare with
scratch.

Every arm trains with the same :class:`~jsurgery.rl.PPOConfig` (same hyperparameters, same step
budget, the step size annealed from its start again) and the same keys, with a fresh Adam state,
as the DQN experiments do (:mod:`jsurgery.experiments.dqn`). The arms that start a new network
share one fresh initialisation per seed, the *template*: ``scratch`` trains it, ``naive-load``
copies into it every leaf whose path and shape match, and the surgery arms transplant the old
network into it with :func:`~jsurgery.rl.ppo_surgery.plan_ppo`, whose keywords (``recipe``,
``margin``) each arm names.

Keys per integer seed ``s``: ``k = PRNGKey(s)``; the old agent trains with ``fold_in(k, 0)``, the
new agents with ``fold_in(k, 1)``, the template is initialised with ``fold_in(k, 2)`` and the
states the surgery is measured on (:mod:`jsurgery.experiments.ppo_shift`) come from
``fold_in(k, 4)``. For discrete actions, a new arm's notes also hold ``trained_action_share``: how
often its trained greedy policy picks each action on the states it visits (from ``fold_in(k, 5)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jsurgery.experiments.arms import jsonable, start_new_network
from jsurgery.experiments.dqn import BASE_ARMS, arm_run, fold_keys, train_arm
from jsurgery.experiments.ppo_shift import greedy_action_shares, ppo_surgery_shift
from jsurgery.experiments.runner import ArmRun


@dataclasses.dataclass(frozen=True)
class PpoSurgery:
    """One PPO surgery experiment.

    Attributes:
        name, description: as listed by ``jsurgery list``.
        env_id: the environment (discrete or continuous actions).
        old_hidden, new_hidden: hidden widths of the old and the new actor and critic.
        configs: protocol name -> the :class:`~jsurgery.rl.PPOConfig` every arm trains with (its
            ``hidden`` is replaced by the arm's widths).
        surgery: arm name -> :func:`~jsurgery.rl.ppo_surgery.plan_ppo` keywords (``recipe``,
            ``margin``, ``layers``) for every surgery arm but ``naive-load``.
        old_obs, new_obs: observation IDs the old and the new network see (None: all).
        old_actions, new_actions: action IDs of the old and the new network (None: all).
        base_arms: the arms that come first, in order; the other keys of ``surgery`` follow.
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
        return self.base_arms + tuple(arm for arm in self.surgery if arm not in self.base_arms)

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.configs)

    def ppo_config(self, protocol: str, hidden):
        return self.configs[protocol].replace(hidden=tuple(hidden))

    def envs(self):
        from jsurgery.rl import make_env

        old = make_env(self.env_id, obs=self.old_obs, actions=self.old_actions)
        new = make_env(self.env_id, obs=self.new_obs, actions=self.new_actions)
        return old, new

    def networks(self, protocol: str):
        """The old and the new :class:`~jsurgery.rl.ActorCritic`."""
        old_env, new_env = self.envs()
        old = _network(self.ppo_config(protocol, self.old_hidden), old_env)
        return old, _network(self.ppo_config(protocol, self.new_hidden), new_env)

    def config(self, protocol: str, seeds: int) -> dict:
        old_env, new_env = self.envs()
        views = {
            "old": (old_env, self.old_hidden),
            "new": (new_env, self.new_hidden),
        }
        return {
            "experiment": self.name,
            "protocol": protocol,
            "seeds": seeds,
            "env_id": self.env_id,
            **{
                role: {
                    "obs": list(env.obs_ids),
                    "actions": list(env.action_ids),
                    "hidden": list(hidden),
                }
                for role, (env, hidden) in views.items()
            },  # fmt: skip
            "ppo": {**self.configs[protocol].to_dict(), "hidden": None},
            "arms": list(self.arms),
            "surgery": {arm: jsonable(options) for arm, options in self.surgery.items()},
        }

    def starting_params(self, arm: str, *, protocol: str, seeds: int, old_params) -> tuple:
        """``(params, notes)``: the new network of ``arm`` for every seed (leading axis) before
        training, with what the surgery did and how far it moved the old agent (``at_surgery``)."""
        from jsurgery.rl import seed_keys
        from jsurgery.rl.ppo_surgery import plan_ppo

        old_env, new_env = self.envs()
        old_network, new_network = self.networks(protocol)
        keys = seed_keys(range(seeds))
        template = initial_params(new_network, new_env, fold_keys(keys, 2))

        def planner(old, new, **options):
            return plan_ppo(old, new, old_network, new_network, old_env, new_env, **options)

        params, notes = start_new_network(
            arm, old_params, template, surgery=self.surgery, experiment=self.name,
            arms=self.arms, planner=planner,
        )  # fmt: skip
        networks = (old_network, new_network, old_env, new_env)
        shift = ppo_surgery_shift(*networks, old_params, params, fold_keys(keys, 4))
        if shift is not None:
            notes = {**notes, "at_surgery": shift}
        return params, notes

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params, progress: bool = False
    ) -> ArmRun:
        from jsurgery.rl import seed_keys
        from jsurgery.rl.ppo import make_train

        old_env, new_env = self.envs()
        keys = seed_keys(range(seeds))
        if arm == "old":
            config = self.ppo_config(protocol, self.old_hidden)
            run = (fold_keys(keys, 0), None)
            state, metrics = train_arm(make_train, config, old_env, run, arm, progress)
            return arm_run(metrics, state["params"], old_env, {})
        params, notes = self.starting_params(
            arm, protocol=protocol, seeds=seeds, old_params=old_params
        )
        config = self.ppo_config(protocol, self.new_hidden)
        run = (fold_keys(keys, 1), {"params": params})
        state, metrics = train_arm(make_train, config, new_env, run, arm, progress)
        _, new_network = self.networks(protocol)
        shares = greedy_action_shares(new_network, new_env, state["params"], fold_keys(keys, 5))
        if shares is not None:
            notes = {**notes, "trained_action_share": shares}
        return arm_run(metrics, None, new_env, notes)


def _network(config, env):
    from jsurgery.rl import ActorCritic

    return ActorCritic.for_config(config, env.num_actions, env.continuous)


def initial_params(network, env, keys):
    """``network``'s initial variables for every key (leading seed axis)."""
    obs = jnp.zeros((1, env.num_obs), jnp.float32)
    return jax.vmap(lambda key: network.init(key, obs))(keys)
