"""What new units and new layers start as, and what each choice guarantees.

Options of `make_plan` (each a string; `new_outputs` may also be a dict per new output ID):

`new_inputs` -- rows of the first layer for input features the old network did not have:
    "template": keep the template's random init (the original recipe).
    "zeros": zero rows; the new network computes exactly the old function of the old features,
        whatever the new features hold.

`new_hidden` -- hidden units (or conv channels) the old layer did not have:
    "template": template init in and out (the original recipe); not function-preserving.
    "zero_fanout": template (random) incoming weights, zero outgoing weights; exact.
    "net2net": each new unit replicates an existing unit (round robin over the copied units);
        the outgoing weights of a unit and its copies are divided by the number of copies
        (Chen et al., Net2Net); exact, and `net2net_noise` > 0 multiplies the copies' incoming
        weights by (1 + noise * N(0, 1)) to break symmetry (then exact only to that order).
        BatchNorm parameters and statistics are copied with their units; a LayerNorm over the
        widened units sees different statistics, so widening through it is not exact.
    "small_random": every weight touching a new unit (its incoming weights and bias, its
        outgoing weights, in every gate of a recurrent cell) is the template's value times
        `init_scale` (OpenAI Five's choice, Berner et al. 2019, appendix B); norm scales and
        statistics keep the template's values. Not exact: the change in the old outputs is
        bounded by the scale (first order; second order where the activation maps 0 to 0,
        since a new unit's input and its outgoing weights are both scaled).

`new_layers` -- layers the sequential matching found inserted:
    "identity": Dense kernel = identity on the units it passes through, bias zero; Conv kernel =
        centred Dirac (odd windows). Exact for ReLU networks (inputs to the inserted layer are
        non-negative) with 'SAME' padding for convolutions.
    "identity_corner": the Dirac one placed in the top-right window corner, as in the original work;
        it shifts the feature map by a pixel and is offered only for comparison.
    "template": the template's random init.
    A layer given as `layers={path: None}` always keeps the template's init.

`new_outputs` -- output units (actions, classes) the old network did not have:
    "template": template init (the original recipe); near zero, see the warning below.
    "zeros": zero weights and bias: the new output is 0 everywhere.
    "mean": the mean of the old outputs' weights and biases: the new output is their mean.
    "pessimistic": the mean, minus `pessimism` on the bias: the new output is the mean of the old
        outputs minus `pessimism`, below the lowest old output wherever the old outputs lie within
        `pessimism` of their mean.
    {new_id: old_id or option}: per new output; an old output ID copies that output exactly
        (`{"noop": "left"}`); IDs not in the dict get "template".
    Old outputs are kept exactly under every option. With negative rewards a new Q-output near
    zero is almost always picked by argmax; the plan warns when "zeros" or "template" may do this.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal, get_args

import numpy as np

from jsurgery.errors import PlanError

NewInputs = Literal["template", "zeros"]
NewHidden = Literal["template", "zero_fanout", "net2net", "small_random"]
NewLayers = Literal["identity", "identity_corner", "template"]
NewOutputs = Literal["template", "zeros", "mean", "pessimistic"]

NEW_INPUTS: tuple[str, ...] = get_args(NewInputs)
NEW_HIDDEN: tuple[str, ...] = get_args(NewHidden)
NEW_LAYERS: tuple[str, ...] = get_args(NewLayers)
NEW_OUTPUTS: tuple[str, ...] = get_args(NewOutputs)

#: The original recipe: copy by IDs, new units keep the template's init, inserted layers identity.
#: Read-only; pass it as `**jsurgery.TRANSPLANT` (or `{**jsurgery.TRANSPLANT, ...}` to change one).
TRANSPLANT = MappingProxyType(
    {
        "new_inputs": "template",
        "new_hidden": "template",
        "new_layers": "identity",
        "new_outputs": "template",
    }
)

#: Function-preserving choices: new inputs read nothing, new hidden units are Net2Net copies,
#: inserted layers are identities, new outputs start below the old ones. Read-only.
PRESERVING = MappingProxyType(
    {
        "new_inputs": "zeros",
        "new_hidden": "net2net",
        "new_layers": "identity",
        "new_outputs": "pessimistic",
    }
)

ZERO_WARNING = (
    "zero-initialised new Q-output is likely to be picked by argmax under negative rewards"
)
TEMPLATE_WARNING = (
    "template-initialised new Q-output starts near zero and is likely to be picked by argmax "
    "under negative rewards"
)


def check_scale(init_scale) -> float:
    """`init_scale` as a float, refused unless finite and positive."""
    try:
        scale = float(init_scale)
    except (TypeError, ValueError):
        scale = float("nan")
    if not np.isfinite(scale) or scale <= 0:
        raise PlanError(
            f"`init_scale`: {init_scale!r} is not a positive number; it multiplies the "
            "template's weights of new hidden units (new_hidden='small_random'), e.g. 0.01."
        )
    return scale


def check_choice(arg: str, value, allowed: tuple) -> str:
    if value not in allowed:
        raise PlanError(f"`{arg}`: {value!r} is not one of {list(allowed)}.")
    return value


def replicas(copied: np.ndarray, n_new: int) -> np.ndarray:
    """The copied positions that `n_new` new units replicate, round robin."""
    return copied[np.arange(n_new) % len(copied)]
