"""Surgery on DQN agents: a :class:`~jsurgery.rl.QNetwork` moved into another by observation and
action IDs.

The plan traces both networks as ``obs -> Q-values``, matching inputs by
:attr:`~jsurgery.rl.IdEnv.feature_ids` (an image's channel moves with every pixel of it) and
outputs by action IDs, so that every promise is verified by running them.
:func:`~jsurgery.rl.ppo_surgery.transplant_seeds` then applies the plan to every seed's params,
target params and Adam's state.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import jsurgery
from jsurgery.rl.environments import IdEnv
from jsurgery.rl.networks import QNetwork

__all__ = ["plan_dqn"]


def plan_dqn(
    old_params: Any,
    new_params: Any,
    old_network: QNetwork,
    new_network: QNetwork,
    old_env: IdEnv,
    new_env: IdEnv,
    layers: dict[str, str | None] | None = None,
    **options: Any,
) -> jsurgery.Plan:
    """The plan moving one DQN's parameters into ``new_network`` on the view ``new_env``.

    Args:
        old_params: one seed's variables of the old network.
        new_params: a fresh initialisation of the new network (the template).
        old_network: the old :class:`~jsurgery.rl.QNetwork`.
        new_network: the new one.
        old_env: the old network's environment view (observation and action IDs).
        new_env: the new network's.
        layers: ``{new_layer: old_layer or None}`` where the widths leave the matching open.
        **options: ``make_plan``'s init rules, e.g. ``**jsurgery.PRESERVING``.

    Raises:
        PlanError: a change the plan cannot make, or a promise the networks do not keep.
    """
    return jsurgery.make_plan(
        old_params,
        new_params,
        apply=(old_network.apply, new_network.apply),
        example=((jnp.zeros((1, old_env.num_obs)),), (jnp.zeros((1, new_env.num_obs)),)),
        inputs=(old_env.feature_ids, new_env.feature_ids),
        outputs=(old_env.action_ids, new_env.action_ids),
        layers=layers,
        **options,
    )
