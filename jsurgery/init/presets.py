"""`TRANSPLANT` and `PRESERVING`: the two recipes, as `make_plan` keywords.

Read-only mappings of rule names; pass one as `**jsurgery.PRESERVING`, or change one entry with
`{**jsurgery.PRESERVING, "new_hidden": "zero_fanout"}` (a rule object works there too).
"""

from __future__ import annotations

from types import MappingProxyType

#: The original recipe: copy by IDs, new units keep the template's init, inserted layers identity.
TRANSPLANT = MappingProxyType(
    {
        "new_inputs": "template",
        "new_hidden": "template",
        "new_layers": "identity",
        "new_outputs": "template",
    }
)

#: Function-preserving choices: new inputs read nothing, new hidden units are Net2Net copies
#: (unequal shares of the fan-out, so they learn apart from their originals), inserted layers are
#: identities, new outputs start below the old ones.
PRESERVING = MappingProxyType(
    {
        "new_inputs": "zeros",
        "new_hidden": "net2net",
        "new_layers": "identity",
        "new_outputs": "pessimistic",
    }
)
