"""`resolve`: `make_plan`'s init arguments (rule names with their keywords, or rule objects) ->
the four rules of a plan, each refused where it does not fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from jsurgery.errors import PlanError
from jsurgery.init.base import (
    INPUT,
    OUTPUT,
    OUTPUT_READERS,
    LayerRule,
    NewUnits,
    UnitRule,
    check_number,
    check_seed,
    output_map,
)
from jsurgery.init.by_id import ById
from jsurgery.init.identity import identity, identity_corner
from jsurgery.init.mean import mean
from jsurgery.init.net2net import net2net
from jsurgery.init.pessimistic import check_margin, pessimistic
from jsurgery.init.small_random import small_random
from jsurgery.init.template import template
from jsurgery.init.zero_fanout import zero_fanout
from jsurgery.init.zeros import zeros
from jsurgery.plan.data import SpaceMap

NewInputs = Literal["template", "zeros"]
NewHidden = Literal["template", "zero_fanout", "net2net", "small_random"]
NewLayers = Literal["identity", "identity_corner", "template"]
NewOutputs = Literal["template", "zeros", "mean", "pessimistic"]

INIT_SCALE = (
    "it multiplies the template's weights of new hidden units (new_hidden='small_random'), "
    "e.g. 0.01."
)
NOISE = (
    "it is the relative noise on the incoming weights of Net2Net copies "
    "(new_hidden='net2net'), e.g. 0.01 (0: exact)."
)
#: The keywords that parameterise a rule given by name, and their defaults.
KEYWORDS = {
    "new_hidden": {"init_scale": 0.01, "net2net_noise": 0.0, "seed": 0},
    "new_outputs": {"pessimism": 1.0},
}


@dataclass(frozen=True, eq=False)
class Rules:
    """The rules of one plan, the options as the user gave them (`Plan.options`), and the
    relative noise the executor applies where a map marks `write_noise`, with its seed
    (`Plan.noise`, `Plan.seed`: the `new_hidden` rule's, or the keywords with a name)."""

    new_inputs: UnitRule
    new_hidden: UnitRule
    new_layers: LayerRule
    new_outputs: UnitRule
    options: dict
    noise: float = 0.0
    seed: int = 0

    def space_map(self, units: NewUnits) -> SpaceMap:
        """The map of a unit space: input spaces take `new_inputs`, hidden and carried spaces
        `new_hidden`; an output space is written as `new_outputs` says and read as `new_hidden`
        reads new units (`OUTPUT_READERS`)."""
        if units.kind == OUTPUT:
            written = self.new_outputs.space_map(units)
            read = self.new_hidden.space_map(replace(units, kind=OUTPUT_READERS))
            return output_map(units, written, read)
        rule = self.new_inputs if units.kind == INPUT else self.new_hidden
        return rule.space_map(units)


def names(pessimism=1.0, init_scale=0.01, net2net_noise=0.0, seed=0) -> dict:
    """Per argument, each rule name and a function making the rule it stands for, with the
    keywords applied."""

    def scaled():
        return small_random(check_number(init_scale, "init_scale", INIT_SCALE, positive=True))

    return {
        "new_inputs": {"template": template, "zeros": zeros},
        "new_hidden": {
            "template": template,
            "zero_fanout": zero_fanout,
            "net2net": lambda: net2net(net2net_noise, seed),
            "small_random": scaled,
        },
        "new_layers": {
            "identity": identity,
            "identity_corner": identity_corner,
            "template": template,
        },
        "new_outputs": {
            "template": template,
            "zeros": zeros,
            "mean": mean,
            "pessimistic": lambda: pessimistic(check_margin(pessimism, "pessimism")),
        },
    }


def resolve(
    new_inputs="template",
    new_hidden="template",
    new_layers="identity",
    new_outputs="template",
    *,
    pessimism=1.0,
    init_scale=0.01,
    net2net_noise=0.0,
    seed=0,
) -> Rules:
    """The rules `make_plan`'s init arguments stand for.

    Each argument is a rule object or a rule's name; a name takes its parameters from the
    keywords (`pessimism` -> `pessimistic(margin)`, `init_scale` -> `small_random(scale)`,
    `net2net_noise` and `seed` -> `net2net(noise, seed)`). `new_outputs` may also be a dict
    `{new_id: old_id, rule or name}`.

    Raises:
        PlanError: for a name the argument does not take, a rule that does not fit the argument,
            or a keyword set beside a rule object that carries that parameter itself.

    Example:
        >>> import jsurgery
        >>> rules = jsurgery.init.resolve(new_hidden="net2net", net2net_noise=0.01)
        >>> rules.new_hidden
        Net2Net(noise=0.01, seed=0, normalised=True, split='unequal')
    """
    given = {
        "new_inputs": new_inputs,
        "new_hidden": new_hidden,
        "new_layers": new_layers,
        "new_outputs": new_outputs,
    }
    keywords = _checked_keywords(pessimism, init_scale, net2net_noise, seed)
    _refuse_unused(given, keywords)
    table = names(**keywords)
    rules = {arg: _rule(arg, value, table[arg]) for arg, value in given.items()}
    options = dict(given)
    hidden = rules["new_hidden"]
    if isinstance(new_hidden, str):
        noise, seed = keywords["net2net_noise"], keywords["seed"]
        if new_hidden == "small_random":
            options["init_scale"] = hidden.scale
    else:
        noise, seed = float(hidden.noise), int(hidden.seed)
    return Rules(**rules, options=options, noise=noise, seed=seed)


def _checked_keywords(pessimism, init_scale, net2net_noise, seed) -> dict:
    """The rule keywords, each checked for its type and range whether or not a rule given by
    name reads it (a bad value is a mistake either way).

    Raises:
        PlanError: naming the keyword, for a value that is not a number in its range (a seed:
            an integer in [0, 2**32)).
    """
    return dict(
        pessimism=check_margin(pessimism, "pessimism"),
        init_scale=check_number(init_scale, "init_scale", INIT_SCALE, positive=True),
        net2net_noise=check_number(net2net_noise, "net2net_noise", NOISE, non_negative=True),
        seed=check_seed(seed),
    )


def _rule(arg: str, value, table: dict):
    if isinstance(value, (UnitRule, LayerRule)):
        return _fitting(f"`{arg}`", arg, value, table)
    if arg == "new_outputs" and isinstance(value, Mapping):
        return _by_id(value, table)
    if isinstance(value, str) and value in table:
        return table[value]()
    if isinstance(value, str):
        raise PlanError(f"`{arg}`: {value!r} is not one of {list(table)}.")
    raise PlanError(
        f"`{arg}`: {value!r} is neither one of {list(table)} nor an init rule such as "
        f"jsurgery.init.{next(iter(table))}()."
    )


def _fitting(label: str, arg: str, rule, table: dict):
    """`rule`, refused unless it fits `arg` (and has the method the planner calls there)."""
    kind = LayerRule if arg == "new_layers" else UnitRule
    if arg in rule.fits and isinstance(rule, kind):
        return rule
    fits = ", ".join(f"`{a}`" for a in sorted(rule.fits)) or "no argument (its `fits` is empty)"
    fit = ", ".join(f"jsurgery.init.{n}()" for n in table)
    raise PlanError(
        f"{label}: {rule!r} is a rule for {fits}, not for `{arg}`; rules that fit `{arg}`: "
        f"{fit} (or their names as strings)."
    )


def _by_id(starts: Mapping, table: dict) -> ById:
    named = {}
    for key, value in starts.items():
        if isinstance(value, (UnitRule, LayerRule)):
            _fitting(f"`new_outputs`[{key!r}]", "new_outputs", value, table)
        elif isinstance(value, str) and value in table:
            named[value] = table[value]()
    return ById(tuple(starts.items()), tuple(named.items()), tuple(table))


def _refuse_unused(given: dict, keywords: dict) -> None:
    """Refuses a keyword set beside a rule object: the object carries that parameter."""
    for arg, defaults in KEYWORDS.items():
        if not isinstance(given[arg], UnitRule):
            continue
        for name, default in defaults.items():
            if keywords[name] != default:
                raise PlanError(
                    f"`{name}`: {keywords[name]!r} parameterises `{arg}` given by name, but "
                    f"`{arg}` is the rule {given[arg]!r}, which carries its own parameters; set "
                    "them on the rule (e.g. jsurgery.init.net2net(noise=0.01, seed=1), "
                    "jsurgery.init.pessimistic(margin=2.0))."
                )
