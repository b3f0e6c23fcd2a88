"""``ppo-surgery-chain``: the chain of surgeries of :mod:`jsurgery.experiments.chain` on one PPO
agent.

One PPO run trains through the stages, each a surgery on the last by
:func:`jsurgery.rl.ppo_surgery.plan_ppo`; the surgery moves the parameters *and* Adam's moments and
step count (:func:`~jsurgery.rl.ppo_surgery.transplant_seeds`), and PPO keeps no replay buffer, so
nothing is reset at a surgery but the environments' episodes. The step size is constant (the
protocols set no decay), so that a stage does not restart a schedule the reruns from scratch run
once. Arms (the control arm included), keys and the question's table are the DQN
chain's.
"""

from __future__ import annotations

import dataclasses

from jsurgery.experiments.chain import ChainSurgery, Stage


@dataclasses.dataclass(frozen=True)
class PpoChainSurgery(ChainSurgery):
    """A chain of surgeries on one PPO agent (the attributes are :class:`ChainSurgery`'s;
    ``configs`` hold :class:`~jsurgery.rl.PPOConfig` s and ``surgery`` and ``controls`` map each
    chain arm to :func:`~jsurgery.rl.ppo_surgery.plan_ppo` keywords, e.g.
    ``{"recipe": "preserving"}``)."""

    def stage_config(self, protocol: str, index: int, stage: Stage | None = None):
        stage = self.stages[index] if stage is None else stage
        return self.configs[protocol].replace(hidden=tuple(stage.hidden))

    def config(self, protocol: str, seeds: int) -> dict:
        config = super().config(protocol, seeds)
        config["ppo"] = config.pop("dqn")
        return config

    def make_train(self):
        from jsurgery.rl.ppo import make_train

        return make_train

    def plan(self, arm: str, old_params, new_params, old: tuple, new: tuple):
        from jsurgery.rl.algorithms import algorithm_of
        from jsurgery.rl.ppo_surgery import plan_ppo

        (old_config, old_env), (new_config, new_env) = old, new
        network = algorithm_of(new_config).network
        options = {**self.surgery, **self.controls}[arm]
        return plan_ppo(
            old_params, new_params, network(old_config, old_env), network(new_config, new_env),
            old_env, new_env, **options,
        )  # fmt: skip
