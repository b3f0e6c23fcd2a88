"""New units of a space a LayerNorm or RMSNorm reads: the norm's statistics kept (LEMON).

A norm over `d` units widened to `D` sees the old units' values and the new ones'. Where every
new unit is the mean of the old units (a LayerNorm: its writers' new columns and biases are the
means of the old ones, linear, so every sum of writers keeps it), the mean over `D` units is the
old mean and the variance is `d / D` times the old; where every new unit is zero (an RMSNorm), the
mean square is `d / D` times the old. Either way the normalised old units are `sqrt(D / d)` times
what they were, which the norm's scales undo (times `sqrt(d / D)`), and the new units normalise
to exactly zero: the norm's output there is its bias. The old outputs are then exact up to the
norm's epsilon, which acts as `epsilon * D / d` (Wang et al., LEMON, arXiv:2310.07999).

New units must also learn. With a norm bias, each new unit's bias starts at its own positive
value (drawn from the rule's seed) and the layers reading the space read new units with zero
weights: every new unit then has a different, non-zero output (alive after a relu), so the
readers' new weights receive different gradients at the first step, and the rest follows. A
norm without bias outputs zero at the new units: the readers keep their template weights there
(zero times anything is zero), so gradients reach the new units' incoming weights at once.

Distinct biases part the new units in one direction only: every new unit's incoming column is
the same mean, so its gradient is the same vector times a unit's own factor, and after training
the columns' deviations from their mean still span one dimension (the new units learn as one).
With the rule's `noise`, each new unit's incoming column is the mean times `(1 + noise * N(0,
1))`: the new units start apart, and the norm's statistics, so the old outputs, move to first
order in `noise`.
"""

from __future__ import annotations

import numpy as np

from jsurgery.init.base import NewUnits
from jsurgery.plan.data import SpaceMap

#: The range the new units' norm biases are drawn from: positive (alive after a relu), unequal.
BIAS_RANGE = (0.5, 1.0)


def kept_statistics(units: NewUnits, seed: int, noise: float = 0.0) -> SpaceMap | None:
    """The map of a normalised hidden space (`units.norm`) that keeps the norm's statistics (to
    first order in `noise` when it is positive), or None when an old unit is dropped (the
    statistics then change whatever the new units are)."""
    copied = units.src >= 0
    if len(set(units.src[copied].tolist())) != units.n_old:
        return None
    new = units.new
    layer = units.norm == "layer"
    sm = units.template("mean in, norm gain" if layer else "zero in, norm gain")
    sm.normalised = units.norm
    if layer:
        sm.write_mean = new.copy()
    else:
        sm.write_zero = new.copy()
    if noise > 0:
        sm.write_noise, sm.scale = new.copy(), noise
    sm.norm_gain = np.where(copied, np.sqrt(copied.sum() / len(units.src)), 1.0)
    if units.norm_bias:
        sm.read_zero = new.copy()
        values = np.random.default_rng(seed).uniform(*BIAS_RANGE, int(new.sum()))
        sm.norm_offset = np.zeros(len(units.src))
        sm.norm_offset[new] = values
    return sm
