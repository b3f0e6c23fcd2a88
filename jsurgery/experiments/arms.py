"""How a new network starts in each arm: its template, a naive load, or a transplant per seed."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

import jsurgery
from jsurgery.experiments.baselines import copied_paths, naive_load
from jsurgery.experiments.runner import ExperimentError


def jsonable(options: Mapping[str, Any]) -> dict:
    """``make_plan`` keywords as plain dicts, for ``results.json``: a rule object is written as
    its repr, e.g. ``"Net2Net(noise=0.0, seed=0, normalised=False, split='equal')"``."""
    return {k: _jsonable(v) for k, v in options.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def start_new_network(
    arm: str,
    old_params: Any,
    template: Any,
    *,
    surgery: Mapping[str, Mapping[str, Any]],
    experiment: str,
    arms: tuple[str, ...],
    planner: Callable[..., jsurgery.Plan] | None = None,
    **ids: Any,
) -> tuple[Any, dict]:
    """The new network's parameters for ``arm``, with a leading seed axis, and notes on them.

    Args:
        arm: ``"scratch"`` (the template), ``"naive-load"`` (every leaf whose path and shape match),
            or a key of ``surgery``.
        old_params: the old networks' parameters, one per seed (leading axis).
        template: the new networks' initial parameters, one per seed (leading axis).
        surgery: ``make_plan`` keywords per surgery arm.
        experiment: the experiment's name, for the error message.
        arms: the experiment's arms, for the error message.
        planner: ``planner(old, new, **options) -> Plan`` for one seed's parameters and a
            surgery arm's options (default: ``make_plan(old, new, **ids, **options)``).
        **ids: ``inputs=``/``outputs=`` ID pairs passed to ``make_plan``.

    Returns:
        ``(params, notes)``; a surgery arm's notes hold its options and the printed plan. The plan
        is made once from the first seed's shapes and applied to every seed under ``vmap``.

    Raises:
        ExperimentError: ``arm`` is none of these.
    """
    if arm == "scratch":
        return template, {"init": "template"}
    if arm not in ("naive-load", *surgery):
        raise ExperimentError(f"{experiment}: unknown arm {arm!r}; arms are {arms}")
    old_params = jax.tree.map(jnp.asarray, old_params)
    if arm == "naive-load":
        return naive_load(old_params, template), {"copied": copied_paths(old_params, template)}
    first = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)  # noqa: E731
    if planner is None:
        planner = functools.partial(jsurgery.make_plan, **ids)
    plan = planner(first(old_params), first(template), **surgery[arm])
    params = jax.vmap(lambda old, new: jsurgery.transplant(old, new, plan))(old_params, template)
    return params, {"surgery": jsonable(surgery[arm]), "plan": str(plan)}
