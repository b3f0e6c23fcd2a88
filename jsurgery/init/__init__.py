"""How new units and new layers start: one small rule object per choice, and what it promises.

`make_plan` takes a rule, or its name, for each kind of new part:

- `new_inputs` (input features the old network did not have): `template()`, `zeros()`.
- `new_hidden` (hidden units, conv channels, a recurrent carry's units): `template()`,
  `zero_fanout()`, `net2net(noise, seed)`, `small_random(scale)`; it also says how layers that
  read the function's outputs read new outputs.
- `new_layers` (layers the matching found inserted): `identity()`, `identity_corner()`,
  `template()`.
- `new_outputs` (actions, classes): `template()`, `zeros()`, `mean()`, `pessimistic(margin)`, or
  `{new_id: old_id, rule or name}` per new output.

A name stands for the rule of that name, parameterised by `make_plan`'s keywords (`resolve`);
`TRANSPLANT` and `PRESERVING` are the two recipes by name. Each rule's class says what the new
network computes under it. A rule is a frozen dataclass with one method the planner calls (the
protocol is in `jsurgery.init.base`): `UnitRule.space_map(units) -> SpaceMap` per unit space,
`LayerRule.leaf_plan(leaf) -> LeafPlan` per leaf of an inserted layer.

Example:
    >>> import jsurgery
    >>> jsurgery.init.net2net(noise=0.01), jsurgery.init.pessimistic(margin=2.0)
    (Net2Net(noise=0.01, seed=0, normalised=True, split='unequal'), Pessimistic(margin=2.0))
"""

from jsurgery.init.base import (
    CARRIED,
    HIDDEN,
    INPUT,
    OUTPUT,
    OUTPUT_READERS,
    LayerRule,
    NewLeaf,
    NewUnits,
    UnitRule,
)
from jsurgery.init.identity import identity, identity_corner
from jsurgery.init.mean import mean
from jsurgery.init.net2net import net2net
from jsurgery.init.pessimistic import pessimistic
from jsurgery.init.presets import PRESERVING, TRANSPLANT
from jsurgery.init.resolve import NewHidden, NewInputs, NewLayers, NewOutputs, Rules, resolve
from jsurgery.init.small_random import small_random
from jsurgery.init.template import template
from jsurgery.init.zero_fanout import zero_fanout
from jsurgery.init.zeros import zeros

__all__ = [
    "CARRIED",
    "HIDDEN",
    "INPUT",
    "OUTPUT",
    "OUTPUT_READERS",
    "PRESERVING",
    "TRANSPLANT",
    "LayerRule",
    "NewHidden",
    "NewInputs",
    "NewLayers",
    "NewLeaf",
    "NewOutputs",
    "NewUnits",
    "Rules",
    "UnitRule",
    "identity",
    "identity_corner",
    "mean",
    "net2net",
    "pessimistic",
    "resolve",
    "small_random",
    "template",
    "zero_fanout",
    "zeros",
]
