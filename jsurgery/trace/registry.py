"""The rules table: primitive name -> the rule that walks its equations.

A rule is registered beside its definition, under the names of the primitives it handles:

    @register("reshape")
    def reshape(w: Walker, eqn: JaxprEqn, where: str) -> None: ...

and a family of primitives that share one rule (elementwise ops, reductions) with
`register_family(names, rule)`. `rule_for(eqn)` is the one dispatch: the registered rule, else the
`"call"` fallback for a primitive that carries a jaxpr it calls, else the `"opaque"` fallback.
The rules modules (`jsurgery.trace.rules`) fill the table when `jsurgery.trace` is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from jax.extend import core as jcore

from jsurgery.trace.walker import Walker

#: A rule: `rule(walker, eqn, where)` gives the equation's results their axis nodes and records
#: in `walker.g` the ties, composites, mixed and opaque axes its primitive implies; `where` names
#: the primitive and its source line, for messages.
Rule = Callable[[Walker, jcore.JaxprEqn, str], None]

#: The kinds of fallback rule: for an unregistered primitive that calls a jaxpr, and for any
#: other unregistered primitive.
FallbackKind = Literal["call", "opaque"]

#: The rule of each primitive, by the primitive's name (`eqn.primitive.name`).
RULES: dict[str, Rule] = {}

#: The rules for primitives without a registered rule (`rule_for`).
FALLBACKS: dict[FallbackKind, Rule] = {}

#: The params keys under which a call-like primitive carries the jaxpr it calls (`jit`: `jaxpr`,
#: `closed_call` and the custom derivatives: `call_jaxpr`, `custom_dce_call`: `fun_jaxpr`).
CALL_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def register(*names: str) -> Callable[[Rule], Rule]:
    """A decorator that registers a rule under the primitive names given.

    Raises:
        ValueError: when a name already has another rule (a primitive has one rule; to replace
            one on purpose, assign `RULES[name]`).
    """

    def add(rule: Rule) -> Rule:
        for name in names:
            if RULES.get(name, rule) is not rule:
                raise ValueError(f"primitive {name!r} already has the rule {RULES[name]!r}")
            RULES[name] = rule
        return rule

    return add


def register_family(names: Iterable[str], rule: Rule) -> Rule:
    """Registers one rule for a family of primitives (elementwise ops, reductions, ...)."""
    return register(*sorted(names))(rule)


def register_fallback(kind: FallbackKind) -> Callable[[Rule], Rule]:
    """A decorator that makes a rule the fallback of its kind (see `rule_for`)."""

    def add(rule: Rule) -> Rule:
        FALLBACKS[kind] = rule
        return rule

    return add


def rule_for(eqn: jcore.JaxprEqn) -> Rule:
    """The rule that walks `eqn`, found in this order:

    1. the rule registered under the primitive's name;
    2. the `"call"` fallback when the equation's params hold a jaxpr under one of `CALL_KEYS`:
       a call-like primitive this JAX names differently, or one without a rule of its own
       (`shard_map`, `run_state`, `custom_dce_call`, ...), is walked inside like `jit`;
    3. the `"opaque"` fallback: every axis the equation touches is opaque.
    """
    rule = RULES.get(eqn.primitive.name)
    if rule is not None:
        return rule
    if any(k in eqn.params for k in CALL_KEYS):
        return FALLBACKS["call"]
    return FALLBACKS["opaque"]
