"""``ppo-surgery-chain``: the chain of surgeries of :mod:`jsurgery.experiments.chain` on one PPO
agent.

One PPO run trains through the stages, each a surgery on the last by
:func:`jsurgery.rl.ppo_surgery.plan_ppo`; the surgery moves the parameters *and* Adam's moments and
step count (:func:`~jsurgery.rl.ppo_surgery.transplant_seeds`), and PPO keeps no replay buffer, so
nothing is reset at a surgery but the environments' episodes. The step size is constant (the
protocols set no decay), so that a stage does not restart a schedule the reruns from scratch run
once. Arms, keys and the question's table are the DQN chain's.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jsurgery.experiments.chain import ChainSurgery
from jsurgery.experiments.dqn import arm_run, fold_keys, train_arm
from jsurgery.experiments.runner import ArmRun


def _first(tree):
    return jax.tree.map(lambda leaf: leaf[0], tree)


@dataclasses.dataclass(frozen=True)
class PpoChainSurgery(ChainSurgery):
    """A chain of surgeries on one PPO agent (the attributes are :class:`ChainSurgery`'s;
    ``configs`` hold :class:`~jsurgery.rl.PPOConfig` s and ``surgery`` maps each chain arm to
    ``{"recipe": "preserving" or "transplant"}``)."""

    def stage_config(self, protocol: str, index: int):
        return self.configs[protocol].replace(hidden=tuple(self.stages[index].hidden))

    def config(self, protocol: str, seeds: int) -> dict:
        config = super().config(protocol, seeds)
        config["ppo"] = config.pop("dqn")
        return config

    def _initial_states(self, config, env, keys):
        from jsurgery.rl.algorithms import algorithm_of

        algorithm = algorithm_of(config)
        return jax.vmap(lambda key: algorithm.initial_state(config, env, key))(keys)

    def _run_scratch(self, arm, protocol, keys, budgets: int, progress) -> ArmRun:
        from jsurgery.rl.ppo import make_train

        last = len(self.stages) - 1
        env = self.env(self.stages[last])
        base = self.stage_config(protocol, last)
        config = base.replace(total_steps=budgets * base.total_steps)
        template = self._initial_states(config, env, fold_keys(keys, 20 + last))
        run = (fold_keys(keys, 10 + last), {"params": template["params"]})
        _, metrics = train_arm(make_train, config, env, run, arm, progress)
        return arm_run(metrics, None, env, {"total_steps": config.total_steps})

    def _run_chain(self, arm, protocol, keys, progress) -> ArmRun:
        from jsurgery.rl.algorithms import algorithm_of
        from jsurgery.rl.ppo import make_train
        from jsurgery.rl.ppo_surgery import plan_ppo, transplant_seeds

        recipe = self.surgery[arm]["recipe"]
        xs, curves, plans, state, previous = [], [], [], None, None
        for index, stage in enumerate(self.stages):
            config = self.stage_config(protocol, index)
            env = self.env(stage)
            template = self._initial_states(config, env, fold_keys(keys, 20 + index))
            if state is None:
                init = {"params": template["params"]}
            else:
                network = algorithm_of(config).network
                old_config, old_env = previous
                plan = plan_ppo(
                    _first(state["params"]), _first(template["params"]),
                    network(old_config, old_env), network(config, env), old_env, env, recipe,
                )  # fmt: skip
                init = transplant_seeds(state, template, plan)
                plans.append(str(plan))
            run = (fold_keys(keys, 10 + index), init)
            state, metrics = train_arm(make_train, config, env, run, f"{arm} {index}", progress)
            previous = (config, env)
            stage_run = arm_run(metrics, None, env, {})
            xs.append(np.asarray(stage_run.x) + index * config.total_steps)
            curves.append(np.asarray(stage_run.curves))
        notes = {"surgery": dict(self.surgery[arm]), "plans": plans}
        return ArmRun(x=np.concatenate(xs), curves=np.concatenate(curves, axis=1), notes=notes)
