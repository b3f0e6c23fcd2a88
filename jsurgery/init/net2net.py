"""`net2net(noise, seed)`: new hidden units replicate old ones, their fan-out shared (Net2Net)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jsurgery.init.base import CARRIED, HIDDEN, NewUnits, UnitRule, check_number, check_seed
from jsurgery.init.normalised import kept_statistics
from jsurgery.plan.data import SpaceMap
from jsurgery.plan.promise import NewUnitsNote


def replicas(copied: np.ndarray, n_new: int) -> np.ndarray:
    """The copied positions that `n_new` new units replicate, round robin."""
    return copied[np.arange(n_new) % len(copied)]


@dataclass(frozen=True)
class Net2Net(UnitRule):
    """New hidden units: each replicates an existing unit (round robin over the copied units),
    and the outgoing weights of a unit and its copies are divided by the number of copies (Chen
    et al., Net2Net). Exact; `noise` > 0 multiplies the copies' incoming weights by
    (1 + noise * N(0, 1)) to break symmetry (then exact only to that order). BatchNorm
    parameters and statistics are copied with their units. A space a LayerNorm or RMSNorm reads
    straight from its layers (Dense -> norm, a pre-LN residual stream) is widened so that the
    norm's statistics are kept instead (`jsurgery.init.normalised`): new units the mean of the
    old (zero under an RMSNorm), the norm's scales compensated, exact up to the norm's
    epsilon; `normalised=False` replicates there too, which moves the old outputs.

    In a recurrent cell's carry, new units get zero incoming weights and biases in every gate and
    template outgoing weights, so from a carry that is zero on them (a new episode, or
    `transplant_carry`) they stay exactly zero and every step matches the old cell (replicas
    would need their carry replicated too). Layers that read new outputs read them with zero
    weights.
    """

    noise: float = 0.0
    seed: int = 0
    normalised: bool = True
    fits = frozenset({"new_hidden"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        if units.kind == HIDDEN and units.norm and self.normalised and units.new.any():
            kept = kept_statistics(units, self.seed)
            if kept is not None:
                return kept
        if units.kind == HIDDEN:
            return self._replicate(units)
        sm = units.template("template in, zero out")
        if units.kind == CARRIED:
            sm.write_zero = units.mask()
            sm.how = "zero in, template out: stays 0 (carried)"
        else:
            sm.read_zero = units.mask()
        return sm

    def _replicate(self, units: NewUnits) -> SpaceMap:
        sm = units.template("template in, zero out")
        new_pos = np.flatnonzero(units.new)
        copied = np.flatnonzero(units.src >= 0)
        if not len(new_pos) or not len(copied):
            if len(new_pos):
                units.warnings.append(
                    NewUnitsNote(
                        f"{units.label}: no unit to replicate; new units get zero fan-out."
                    )
                )
            sm.read_zero = units.mask()
            return sm
        reps = replicas(copied, len(new_pos))
        sm.write_idx[new_pos] = units.src[reps]
        sm.read_idx[new_pos] = units.src[reps]
        counts = np.bincount(sm.read_idx[sm.read_idx >= 0], minlength=units.n_old)
        sm.read_mul = np.where(
            sm.read_idx >= 0, 1.0 / np.maximum(counts[np.maximum(sm.read_idx, 0)], 1), 1.0
        )
        if self.noise > 0:
            sm.write_noise = units.new.copy()
        sm.how = "net2net"
        return sm


def net2net(noise: float = 0.0, seed: int = 0, normalised: bool = True) -> Net2Net:
    """New hidden units as Net2Net replicas of old ones (`new_hidden`); exact for `noise` 0.

    Args:
        noise: relative noise on the incoming weights of the copies (0: exact).
        seed: the seed of that noise, an integer in [0, 2**32).
        normalised: whether a space a LayerNorm or RMSNorm reads is widened so that the norm's
            statistics are kept (False: plain replicas there, which move the old outputs).

    Raises:
        PlanError: when `noise` is not a finite number or `seed` not such an integer.

    Example:
        >>> import jsurgery
        >>> jsurgery.init.net2net(noise=0.01)
        Net2Net(noise=0.01, seed=0, normalised=True)
    """
    noise = check_number(noise, "noise", "it is the relative noise on the copies, e.g. 0.01.")
    return Net2Net(noise, check_seed(seed), bool(normalised))
