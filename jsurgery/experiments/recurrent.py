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

import jax

from jsurgery.experiments.dqn import DqnExperiment, arm_run, fold_keys, train_arm
from jsurgery.experiments.runner import ArmRun


@dataclasses.dataclass(frozen=True)
class RecurrentDqnSurgery(DqnExperiment):
    """One surgery experiment on recurrent DQN agents: every arm trains a
    :class:`~jsurgery.rl.recurrent.RecurrentQNetwork` agent.

    ``old_hidden`` and ``new_hidden`` are the encoder's widths, then the GRU's width; ``configs``
    hold :class:`~jsurgery.rl.recurrent.RecurrentDQNConfig`.
    """

    def config(self, protocol: str, seeds: int) -> dict:
        agent = "recurrent DQN (Dense encoder, GRU, linear head)"
        return {**super().config(protocol, seeds), "agent": agent}

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params, progress: bool = False
    ) -> ArmRun:
        from jsurgery.rl import seed_keys
        from jsurgery.rl.drqn import make_train
        from jsurgery.rl.recurrent import RecurrentQNetwork

        old_env, new_env = self.envs()
        keys = seed_keys(range(seeds))
        eval_keys = fold_keys(keys, 3)
        if arm == "old":
            config = self.dqn_config(protocol, self.old_hidden)
            run = (fold_keys(keys, 0), None, eval_keys)
            state, metrics = train_arm(make_train, config, old_env, run, arm, progress)
            return arm_run(metrics, state["params"], old_env, {})
        config = self.dqn_config(protocol, self.new_hidden)
        old_net = RecurrentQNetwork(self.old_hidden, old_env.num_actions)
        new_net = RecurrentQNetwork(self.new_hidden, new_env.num_actions)
        template = jax.vmap(lambda key: _init(new_net, new_env, key))(fold_keys(keys, 2))
        example = (
            (old_net.initial_carry((1,)), _obs(old_env)),
            (new_net.initial_carry((1,)), _obs(new_env)),
        )
        params, notes = self.new_network(
            arm,
            old_params,
            template,
            apply=(old_net.apply, new_net.apply),
            example=example,
            inputs={1: (old_env.obs_ids, new_env.obs_ids)},
            outputs={1: (old_env.action_ids, new_env.action_ids)},
        )
        run = (fold_keys(keys, 1), {"params": params}, eval_keys)
        state, metrics = train_arm(make_train, config, new_env, run, arm, progress)
        return arm_run(metrics, None, new_env, notes)


def _obs(env):
    import jax.numpy as jnp

    return jnp.zeros((1, env.num_obs), jnp.float32)


def _init(network, env, key):
    return network.init(key, network.initial_carry((1,)), _obs(env))
