"""``jsurgery surgery``: a saved DQN or PPO run into a new network, every seed, ready to train on.

Reads a run directory (``jsurgery train --out``), plans the change of observations, actions and
hidden widths by unit IDs, transplants params (and a DQN's target params) and the optimizer state
of every seed, saves the new run and reports each seed's greedy return right after surgery next to
the old one's. A PPO run's plan covers the actor, the critic and the Gaussian's ``log_std``
(:mod:`jsurgery.rl.ppo_surgery`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jsurgery
from jsurgery.commands.train import CommandError, load_init_run
from jsurgery.rl.agent import SavedRun, write_agent
from jsurgery.rl.algorithms import algorithm_of
from jsurgery.rl.dqn_surgery import plan_dqn
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.files import write_json
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_surgery import plan_ppo, transplant_seeds
from jsurgery.rl.rundir import open_out_dir, save_run
from jsurgery.rl.runner import seed_keys

__all__ = ["RECIPES", "SURGERY_JSON", "surgery_command", "transplant_run"]

RECIPES = {"preserving": jsurgery.PRESERVING, "transplant": jsurgery.TRANSPLANT}
"""``--recipe``: ``make_plan`` options. ``preserving``: the new network acts as the old one
(zero weights for new observations, Net2Net copies for new hidden units, identity for inserted
layers, pessimistic new actions; for PPO, a new discrete action's probability starts below
``exp(-5)`` and a new continuous dimension at mean 0); ``transplant``: new units keep their random
initialisation."""

SURGERY_JSON = "surgery.json"


def hidden_rule(recipe: str, noise: float) -> Any:
    """``make_plan``'s ``new_hidden`` for ``--noise``: None (the recipe's rule) at 0, else Net2Net
    copies whose incoming weights (under a LayerNorm, the new units' mean weights) are spread by
    ``noise``, so that new units learn apart; the old agent then moves to first order in it.

    Raises:
        CommandError: a negative or non-finite noise, or noise with the transplant recipe (its
            new units are random already).
    """
    if not np.isfinite(noise) or noise < 0:
        raise CommandError(f"--noise {noise}: give a relative noise of 0 or more, e.g. 0.1")
    if noise == 0:
        return None
    if recipe != "preserving":
        raise CommandError(
            f"--noise {noise}: spreads the Net2Net copies of the preserving recipe; the "
            f"{recipe} recipe's new units keep their random initialisation already"
        )
    return jsurgery.init.net2net(noise=noise)


def _first(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: leaf[0], tree)


def transplant_run(
    run: SavedRun,
    env: IdEnv,
    hidden: Sequence[int],
    recipe: str = "preserving",
    layers: dict[str, str | None] | None = None,
    noise: float = 0.0,
) -> tuple[Any, Any, Any]:
    """The run's state moved into a network with ``hidden`` widths on the view ``env``, new
    hidden units spread by ``noise`` (:func:`hidden_rule`).

    The plan is made once from the first seed, tracing both networks (inputs by
    ``env.feature_ids``, outputs by action IDs), and applied to every seed's params, target
    params and optimizer state under ``vmap``; each seed's new template is initialised from its
    own key.

    Returns:
        ``(config, state, plan)``: the new run's config, its batched state and the plan.
    """
    new_hidden = hidden_rule(recipe, noise)
    config = run.config.replace(hidden=tuple(hidden))
    algorithm = algorithm_of(config)

    def template(key):
        return algorithm.initial_state(config, env, jax.random.fold_in(key, 1))

    new_state = jax.vmap(template)(seed_keys(run.seeds))
    old_state = jax.tree.map(jnp.asarray, run.state)
    params = _first(old_state["params"]), _first(new_state["params"])
    networks = algorithm.network(run.config, run.env), algorithm.network(config, env)
    if isinstance(config, PPOConfig):
        plan = plan_ppo(*params, *networks, run.env, env, recipe, layers, new_hidden=new_hidden)
    else:
        options = dict(RECIPES[recipe])
        if new_hidden is not None:
            options["new_hidden"] = new_hidden
        plan = plan_dqn(*params, *networks, run.env, env, layers, **options)
    return config, transplant_seeds(old_state, new_state, plan), plan


def greedy_returns(config, env: IdEnv, params: Any, seeds: Sequence[int]) -> np.ndarray:
    """Each seed's mean greedy return over ``config.eval_episodes`` episodes (seeded by seed)."""
    parts = algorithm_of(config).make_parts(config, env)
    keys = jax.vmap(lambda key: jax.random.fold_in(key, 2))(seed_keys(seeds))
    return np.asarray(jax.jit(jax.vmap(parts.evaluate))(params, keys))


def surgery_command(
    run_dir: str | os.PathLike,
    obs: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    hidden: Sequence[int] | None = None,
    recipe: str = "preserving",
    out: str | os.PathLike = "runs/surgery",
    layers: dict[str, str | None] | None = None,
    force: bool = False,
    noise: float = 0.0,
) -> dict[str, Any]:
    """Move a saved run into a new network and save it as a new run under ``out``.

    Args:
        run_dir: a run directory written by ``jsurgery train`` (or by this command).
        obs: the new network's observation IDs (default: the run's).
        actions: the new network's action IDs (default: the run's).
        hidden: the new hidden widths (default: the run's).
        recipe: ``"preserving"`` or ``"transplant"`` (:data:`RECIPES`).
        out: the new run directory: ``checkpoint/``, ``agent.json`` (``jsurgery train --init``
            reads them) and ``surgery.json`` (plan, greedy returns before and after).
        layers: ``{new_layer: old_layer or None}`` where the widths leave the matching open
            (``make_plan``'s ``layers``).
        force: replace a run already under ``out`` (it stays until the new one is complete).
        noise: relative noise spreading the new hidden units (``preserving`` only; 0: exact).

    Returns:
        The contents of ``surgery.json``.

    Raises:
        CommandError: a directory that is not a run, an unknown recipe, or a plan that does not
            fit (its message says why); ValueError for unknown IDs.
    """
    if recipe not in RECIPES:
        raise CommandError(f"--recipe {recipe}: unknown recipe; choose one of {', '.join(RECIPES)}")
    if Path(out).absolute() == Path(run_dir).absolute():
        raise CommandError(
            f"--out {out}: is the run being read; write the new run to another directory"
        )
    hidden_rule(recipe, noise)
    identity = {"command": "surgery", "run": str(Path(run_dir).absolute()), "recipe": recipe,
                "obs": obs, "actions": actions, "hidden": hidden, "layers": layers,
                "noise": noise}  # fmt: skip
    with open_out_dir(out, identity, force=force, resume=None):
        return _operate(run_dir, obs, actions, hidden, recipe, out, layers, identity, noise)


def _operate(run_dir, obs, actions, hidden, recipe, out, layers, identity, noise) -> dict[str, Any]:
    run = load_init_run(run_dir, argument="RUN_DIR")
    env = make_env(
        run.env.env_id,
        run.env.obs_ids if obs is None else obs,
        run.env.action_ids if actions is None else actions,
    )
    hidden = run.config.hidden if hidden is None else tuple(hidden)
    try:
        config, state, plan = transplant_run(run, env, hidden, recipe, layers, noise)
    except jsurgery.PlanError as error:
        reason = " ".join(str(error).split())
        if error.layers:
            pairs = ",".join(f"{new}={old}" for new, old in error.layers.items())
            reason += f" On the command line: --layers {pairs}"
        raise CommandError(f"--recipe {recipe} does not fit this change: {reason}") from None
    print(plan)
    old_return = greedy_returns(run.config, run.env, run.state["params"], run.seeds)
    new_return = greedy_returns(config, env, state["params"], run.seeds)
    summary = {
        "run": str(run_dir),
        "env_id": env.env_id,
        "recipe": recipe,
        "noise": noise,
        "layers": layers or {},
        "old": {"obs_ids": list(run.env.obs_ids), "action_ids": list(run.env.action_ids),
                "hidden": list(run.config.hidden)},
        "new": {"obs_ids": list(env.obs_ids), "action_ids": list(env.action_ids),
                "hidden": list(hidden)},
        "seeds": list(run.seeds),
        "eval_episodes": config.eval_episodes,
        "old_greedy_return": old_return.tolist(),
        "new_greedy_return": new_return.tolist(),
        "old_greedy_return_mean": float(old_return.mean()),
        "new_greedy_return_mean": float(new_return.mean()),
        "plan": str(plan),
        "warnings": list(plan.warnings),
    }  # fmt: skip

    def write(stage: Path) -> None:
        write_agent(stage, config, env, state, run.seeds)
        write_json(stage / SURGERY_JSON, summary)

    save_run(out, write, identity)
    print(f"\ngreedy return right after surgery ({config.eval_episodes} episodes per seed):")
    print(f"{'seed':>6} {'old':>9} {'new':>9}")
    for seed, old, new in zip(run.seeds, old_return, new_return, strict=True):
        print(f"{seed:>6} {old:>9.1f} {new:>9.1f}")
    print(f"{'mean':>6} {old_return.mean():>9.1f} {new_return.mean():>9.1f}")
    print(f"wrote {out}/; continue with 'jsurgery train {env.env_id} --init {out} --out NEW_DIR'")
    return summary
