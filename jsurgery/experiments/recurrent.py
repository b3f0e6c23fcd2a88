"""Surgery on a recurrent DQN: a GRU that saw part of the state sees all of it, with more units.

The old agent (:mod:`jsurgery.rl.drqn`) sees only some observation features, so it must
remember to act well (CartPole without the velocities); the new network sees every feature and has
a wider GRU. The plan is traced from the networks' step functions ``apply(variables, carry, obs)
-> (carry, q)``, so the GRU's hidden units are one carried space: under
:data:`jsurgery.PRESERVING` the new network plays exactly as the old one did, step for step.

Keys per integer seed ``s``, as in :mod:`jsurgery.experiments.dqn`: ``k = PRNGKey(s)``; the old
agent trains with ``fold_in(k, 0)``, the new agents with ``fold_in(k, 1)``, the template is
initialised with ``fold_in(k, 2)``. Every evaluation of every arm plays the episodes drawn from
``fold_in(k, 3)``, so a function-preserving surgery's first evaluation equals the old agent's last
one, seed by seed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jsurgery.experiments.arms import jsonable, start_new_network
from jsurgery.experiments.runner import ArmRun

#: Arms every experiment has, in order (as :data:`jsurgery.experiments.dqn.BASE_ARMS`).
BASE_ARMS = ("old", "scratch", "transplant", "preserving", "naive-load")


@dataclasses.dataclass(frozen=True)
class RecurrentDqnSurgery:
    """One surgery experiment on recurrent DQN agents.

    Attributes:
        name, description: as listed by ``jsurgery list``.
        env_id: the environment.
        old_obs, new_obs: observation IDs the old and the new network see (None: all).
        old_hidden, new_hidden: encoder widths, then the GRU's width.
        configs: protocol name -> the :class:`~jsurgery.rl.recurrent.RecurrentDQNConfig` every arm
            trains with (its ``hidden`` replaced by the arm's widths).
        surgery: arm name -> ``make_plan`` keywords for every surgery arm but ``naive-load``.
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
    x_label: str = "environment steps"
    y_label: str = "greedy evaluation return"

    @property
    def arms(self) -> tuple[str, ...]:
        return BASE_ARMS + tuple(arm for arm in self.surgery if arm not in BASE_ARMS)

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.configs)

    def envs(self):
        from jsurgery.rl import make_env

        return make_env(self.env_id, obs=self.old_obs), make_env(self.env_id, obs=self.new_obs)

    def config(self, protocol: str, seeds: int) -> dict:
        old_env, new_env = self.envs()
        return {
            "experiment": self.name,
            "protocol": protocol,
            "seeds": seeds,
            "env_id": self.env_id,
            "agent": "recurrent DQN (Dense encoder, GRU, linear head)",
            "old": {"obs": list(old_env.obs_ids), "actions": list(old_env.action_ids),
                    "hidden": list(self.old_hidden)},
            "new": {"obs": list(new_env.obs_ids), "actions": list(new_env.action_ids),
                    "hidden": list(self.new_hidden)},
            "dqn": {**self.configs[protocol].to_dict(), "hidden": None},
            "arms": list(self.arms),
            "surgery": {arm: jsonable(options) for arm, options in self.surgery.items()},
        }  # fmt: skip

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params, progress: bool = False
    ) -> ArmRun:
        from jsurgery.rl import seed_keys
        from jsurgery.rl.recurrent import RecurrentQNetwork

        old_env, new_env = self.envs()
        keys = seed_keys(range(seeds))
        eval_keys = _fold(keys, 3)
        config = self.configs[protocol]
        if arm == "old":
            config = config.replace(hidden=self.old_hidden)
            state, metrics = _train(config, old_env, _fold(keys, 0), None, eval_keys, arm, progress)
            return _arm_run(metrics, state["params"], old_env, {})
        config = config.replace(hidden=self.new_hidden)
        old_net = RecurrentQNetwork(self.old_hidden, old_env.num_actions)
        new_net = RecurrentQNetwork(self.new_hidden, new_env.num_actions)
        template = jax.vmap(lambda key: _init(new_net, new_env, key))(_fold(keys, 2))
        example = (
            (old_net.initial_carry((1,)), _obs(old_env)),
            (new_net.initial_carry((1,)), _obs(new_env)),
        )
        params, notes = start_new_network(
            arm,
            old_params,
            template,
            surgery=self.surgery,
            experiment=self.name,
            arms=self.arms,
            apply=(old_net.apply, new_net.apply),
            example=example,
            inputs={1: (old_env.obs_ids, new_env.obs_ids)},
            outputs={1: (old_env.action_ids, new_env.action_ids)},
        )
        state, metrics = _train(
            config, new_env, _fold(keys, 1), {"params": params}, eval_keys, arm, progress
        )
        return _arm_run(metrics, None, new_env, notes)


def _obs(env):
    import jax.numpy as jnp

    return jnp.zeros((1, env.num_obs), jnp.float32)


def _init(network, env, key):
    return network.init(key, network.initial_carry((1,)), _obs(env))


def _fold(keys, data: int):
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def _arm_run(metrics, params, env, notes) -> ArmRun:
    steps = np.asarray(metrics["eval_steps"])[0]
    notes = {**notes, "env": {"obs": list(env.obs_ids), "actions": list(env.action_ids)}}
    return ArmRun(x=steps, curves=np.asarray(metrics["eval_return"]), params=params, notes=notes)


class _ArmProgress:
    """Moves the progress bar of the arm being trained; the compiled runs call it per period."""

    bar = None

    def __call__(self, step) -> None:
        if self.bar is not None:
            self.bar.n = int(step)
            self.bar.refresh()


_ARM_PROGRESS = _ArmProgress()


def _train(config, env, keys, init, eval_keys, arm: str, progress: bool):
    """All seeds of one arm in one compiled run, with a bar over environment steps."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.total_steps, unit="step", desc=f"  {arm}", leave=False, disable=not progress
    )
    _ARM_PROGRESS.bar = bar
    try:
        train = _compiled_for(config, env.env_id, env.obs_ids, env.action_ids)
        return jax.block_until_ready(train(keys, init, eval_keys))
    finally:
        _ARM_PROGRESS.bar = None
        bar.close()


@functools.lru_cache(maxsize=8)
def _compiled_for(config, env_id, obs, actions):
    from jsurgery.rl import make_env
    from jsurgery.rl.drqn import make_train

    env = make_env(env_id, obs=obs, actions=actions)
    return jax.jit(jax.vmap(make_train(config, env, on_period=_ARM_PROGRESS)))
