"""JAX environments for the experiments, as gymnax environments."""

from jsurgery.envs.lunar_lander import ACTION_IDS, OBS_IDS, EnvParams, EnvState, LunarLander

__all__ = ["ACTION_IDS", "OBS_IDS", "EnvParams", "EnvState", "LunarLander"]
