"""Deep RL for surgery experiments: a fully jitted DQN and PPO over gymnax, with observation and
action IDs.

Imported by path (``import jsurgery.rl``) so that ``import jsurgery`` stays light.

    >>> from jsurgery.rl import DQNConfig, make_env, make_train
    >>> env = make_env("CartPole-v1", obs=["x_dot", "theta"])
    >>> train = make_train(DQNConfig(hidden=(16,)), env)   # jax.jit(jax.vmap(train))(keys)

PPO's ``make_train`` is :func:`jsurgery.rl.ppo.make_train`; :func:`train_seeds` trains either.
"""

from jsurgery.rl.actor_critic import ActorCritic
from jsurgery.rl.agent import Agent, SavedRun, load_agent, load_run, save_agent
from jsurgery.rl.buffer import ReplayBuffer
from jsurgery.rl.config import DQNConfig
from jsurgery.rl.dqn import make_dqn, make_optimizer, make_train
from jsurgery.rl.environments import ENV_IDS, IdEnv, make_env
from jsurgery.rl.networks import QNetwork
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_presets import default_ppo_config
from jsurgery.rl.runner import TrainResult, seed_keys, train_seeds

__all__ = [
    "ENV_IDS",
    "ActorCritic",
    "PPOConfig",
    "default_ppo_config",
    "Agent",
    "SavedRun",
    "load_agent",
    "load_run",
    "save_agent",
    "DQNConfig",
    "IdEnv",
    "QNetwork",
    "ReplayBuffer",
    "TrainResult",
    "make_dqn",
    "make_env",
    "make_optimizer",
    "make_train",
    "seed_keys",
    "train_seeds",
]
