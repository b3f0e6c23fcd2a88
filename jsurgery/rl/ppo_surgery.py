"""Surgery on PPO agents: an :class:`~jsurgery.rl.ActorCritic` moved into another by observation
and action IDs.

The plan traces both networks as ``obs -> (policy, value)`` (plus the Gaussian's ``log_std``
broadcast per action dimension, for continuous actions), so that the actor, the critic and the
loose ``log_std`` are planned together and every promise is verified by running them.

The ``preserving`` recipe keeps the policy and the value function: new observations read nothing,
new hidden units are Net2Net copies (exact under LayerNorm), and

- a new discrete action starts :data:`NEW_ACTION_MARGIN` below the mean of the old logits, so its
  probability starts below ``exp(-NEW_ACTION_MARGIN)`` (about 0.7%) and the old actions keep
  their order and (up to that share) their probabilities;
- a new continuous action dimension starts with a mean of 0 (zero weights and bias) and a
  ``log_std`` equal to the mean of the old ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import jsurgery
from jsurgery.rl.actor_critic import ActorCritic
from jsurgery.rl.environments import IdEnv

__all__ = ["NEW_ACTION_MARGIN", "RECIPES", "plan_ppo", "traced_apply", "transplant_seeds"]

NEW_ACTION_MARGIN = 5.0
"""How far below the old logits' mean a new discrete action's logit starts (``preserving``)."""

RECIPES = ("preserving", "transplant")
LOG_STD = "log_std"


def traced_apply(network: ActorCritic) -> Callable:
    """``apply(variables, obs) -> (policy, value)``, plus ``log_std`` broadcast to the policy's
    shape for continuous actions: the function the plan traces and verifies."""

    def apply(variables, obs):
        policy, value = network.apply(variables, obs)
        if not network.continuous:
            return policy, value
        return policy, value, jnp.broadcast_to(variables["params"][LOG_STD], policy.shape)

    return apply


def _log_std_ids(action_ids: Sequence[Hashable]) -> list[tuple[str, Hashable]]:
    return [(LOG_STD, action) for action in action_ids]


def _options(recipe: str, old_env: IdEnv, new_env: IdEnv, margin: float) -> dict[str, Any]:
    """``make_plan``'s IDs and init rules for ``recipe`` (new hidden units: the recipe's rule)."""
    if recipe not in RECIPES:
        raise ValueError(f"`recipe`: unknown recipe {recipe!r}; choose one of {list(RECIPES)}")
    outputs = {0: (old_env.action_ids, new_env.action_ids)}
    if new_env.continuous:
        outputs[2] = (_log_std_ids(old_env.action_ids), _log_std_ids(new_env.action_ids))
    options: dict[str, Any] = {
        "inputs": (old_env.feature_ids, new_env.feature_ids),
        "outputs": outputs,
    }
    if recipe == "transplant":
        return {**options, **jsurgery.TRANSPLANT}
    if not new_env.continuous:
        return {**options, **jsurgery.PRESERVING, "new_outputs": jsurgery.init.pessimistic(margin)}
    new = [action for action in new_env.action_ids if action not in old_env.action_ids]
    starts = {**{action: "zeros" for action in new}, **dict.fromkeys(_log_std_ids(new), "mean")}
    return {**options, **jsurgery.PRESERVING, "new_outputs": starts}


def plan_ppo(
    old_params: Any,
    new_params: Any,
    old_network: ActorCritic,
    new_network: ActorCritic,
    old_env: IdEnv,
    new_env: IdEnv,
    recipe: str = "preserving",
    layers: dict[str, str | None] | None = None,
    margin: float = NEW_ACTION_MARGIN,
    new_hidden: Any = None,
) -> jsurgery.Plan:
    """The plan moving one PPO agent's parameters into ``new_network`` on the view ``new_env``.

    Args:
        old_params: one seed's variables of the old network.
        new_params: a fresh initialisation of the new network (the template).
        old_network: the old :class:`ActorCritic`.
        new_network: the new one.
        old_env: the old network's environment view (observation and action IDs).
        new_env: the new network's.
        recipe: ``"preserving"`` (the new agent acts and values as the old one) or
            ``"transplant"`` (new units keep the template's initialisation).
        layers: ``{new_layer: old_layer or None}`` where the widths leave the matching open.
        margin: how far below the old logits' mean a new discrete action starts.
        new_hidden: the rule for new hidden units instead of the recipe's (``make_plan``'s
            ``new_hidden``), e.g. ``jsurgery.init.net2net(noise=0.01)`` for Net2Net copies whose
            incoming weights differ.

    Raises:
        ValueError: an unknown recipe, or actions of another kind (discrete and continuous).
        PlanError: a change the plan cannot make, or a promise the networks do not keep.
    """
    if old_env.continuous != new_env.continuous:
        raise ValueError("`new_env`: the old and new agents must both have discrete actions or "
                         "both continuous ones")  # fmt: skip
    obs = (jnp.zeros((1, old_env.num_obs)),), (jnp.zeros((1, new_env.num_obs)),)
    options = _options(recipe, old_env, new_env, margin)
    if new_hidden is not None:
        options["new_hidden"] = new_hidden
    plan = jsurgery.make_plan(
        old_params,
        new_params,
        apply=(traced_apply(old_network), traced_apply(new_network)),
        example=obs,
        layers=layers,
        **options,
    )
    if not new_env.continuous:
        return plan
    # A Gaussian's mean is sampled around, not picked by argmax: the Q-value caution is not its.
    kept = tuple(warning for warning in plan.warnings if "new Q-output" not in warning)
    return dataclasses.replace(plan, warnings=kept)


def transplant_seeds(old_state: Any, new_state: Any, plan: jsurgery.Plan) -> Any:
    """``plan`` applied to every seed's training state (leading seed axis), a PPO's
    ``{"params", "opt_state"}`` or a DQN's with ``"target_params"`` too: params and target params
    transplanted, Adam's moments moved with them (new units at zero), its step count kept."""
    return jax.vmap(lambda old, new: jsurgery.transplant_state(old, new, plan))(
        old_state, new_state
    )
