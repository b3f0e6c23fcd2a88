"""`net2net(noise, seed, split)`: new hidden units replicate old ones, their fan-out shared
(Net2Net), by default in unequal shares so that the copies learn apart (LEMON)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.init.base import CARRIED, HIDDEN, NewUnits, UnitRule, check_number, check_seed
from jsurgery.init.normalised import kept_statistics
from jsurgery.plan.data import SpaceMap
from jsurgery.plan.promise import NewUnitsNote

#: How the fan-out of a unit is shared among it and its copies (`net2net(split=...)`).
SPLITS = ("unequal", "equal")


def replicas(copied: np.ndarray, n_new: int) -> np.ndarray:
    """The copied positions that `n_new` new units replicate, round robin."""
    return copied[np.arange(n_new) % len(copied)]


def equal_shares(read_idx: np.ndarray, n_old: int) -> np.ndarray:
    """Per new position, 1 / (the number of positions that read the same old unit); 1 where
    none is read."""
    counts = np.bincount(read_idx[read_idx >= 0], minlength=n_old)
    return np.where(read_idx >= 0, 1.0 / np.maximum(counts[np.maximum(read_idx, 0)], 1), 1.0)


def unequal_shares(read_idx: np.ndarray, src: np.ndarray, n_old: int) -> np.ndarray:
    """Per new position, its share of the old unit it reads (1 where none is read): the `c`
    positions that read one old unit, the unit itself first and then its copies in order, take
    shares proportional to 2c - 1, 2c - 2, ..., c. They sum to 1, differ pairwise, and each is
    at least two thirds of the equal share 1 / c.

    Example:
        >>> unequal_shares(np.array([0, 1, 0, 0]), np.array([0, 1, -1, -1]), 2).tolist()
        [0.4166666666666667, 1.0, 0.3333333333333333, 0.25]
    """
    n = len(read_idx)
    order = np.lexsort((np.arange(n), src < 0, read_idx))
    grouped = read_idx[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.searchsorted(grouped, grouped, side="left")
    counts = np.bincount(read_idx[read_idx >= 0], minlength=n_old)
    c = counts[np.maximum(read_idx, 0)].astype(np.float64)
    weight = 2 * c - 1 - rank
    total = c * (3 * c - 1) / 2
    return np.where(read_idx >= 0, weight / np.maximum(total, 1), 1.0)


@dataclass(frozen=True)
class Net2Net(UnitRule):
    """New hidden units: each replicates an existing unit (round robin over the copied units),
    and the outgoing weights of a unit and its copies are shared among them (Chen et al.,
    Net2Net). The shares of a unit and its copies sum to 1, so the next layer sees the old sum:
    exact. With `split` "equal" each gets 1 / count, and a copy receives its original's gradient
    for ever (the two never part). With "unequal" (the default) they get distinct shares, the
    original the largest (Wang et al., LEMON): a unit's incoming gradient is proportional to its
    outgoing weights, so gradient steps move the copies apart while the start stays exact. The
    shares are fixed fractions (c units share as 2c - 1, 2c - 2, ..., c), not random ones: a
    plan does not depend on the seed, and every share stays above two thirds of 1 / count, so
    no copy is left with a vanishing fan-out. `noise` > 0 multiplies the copies' incoming
    weights by (1 + noise * N(0, 1)) to break symmetry at the start (then exact only to that
    order). BatchNorm parameters and statistics are copied with their units. A space a LayerNorm
    or RMSNorm reads straight from its layers (Dense -> norm, a pre-LN residual stream) is
    widened so that the norm's statistics are kept instead (`jsurgery.init.normalised`): new
    units the mean of the old (zero under an RMSNorm), the norm's scales compensated, exact up
    to the norm's epsilon; there the new units learn as one unit unless `noise` > 0 spreads
    their incoming weights (then exact to first order in `noise`). `normalised=False`
    replicates there too, which moves the old outputs.

    In a recurrent cell's carry, new units get zero incoming weights and biases in every gate and
    template outgoing weights, so from a carry that is zero on them (a new episode, or
    `transplant_carry`) they stay exactly zero and every step matches the old cell (replicas
    would need their carry replicated too). Layers that read new outputs read them with zero
    weights.
    """

    noise: float = 0.0
    seed: int = 0
    normalised: bool = True
    split: str = "unequal"
    fits = frozenset({"new_hidden"})

    def __post_init__(self):
        if not isinstance(self.split, str) or self.split not in SPLITS:
            raise PlanError(
                f'`split`: {self.split!r} is not one of {list(SPLITS)}; "unequal" gives a unit '
                'and its copies distinct shares of its fan-out, "equal" gives each 1 / count.'
            )

    def space_map(self, units: NewUnits) -> SpaceMap:
        if units.kind == HIDDEN and units.norm and self.normalised and units.new.any():
            kept = kept_statistics(units, self.seed, self.noise)
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
        sm.read_mul = self._shares(sm.read_idx, units)
        if self.noise > 0:
            sm.write_noise, sm.scale = units.new.copy(), self.noise
        sm.how = "net2net"
        return sm

    def _shares(self, read_idx: np.ndarray, units: NewUnits) -> np.ndarray:
        """The factor on each position's fan-out, as `split` says."""
        if self.split == "equal":
            return equal_shares(read_idx, units.n_old)
        return unequal_shares(read_idx, units.src, units.n_old)


def net2net(
    noise: float = 0.0, seed: int = 0, normalised: bool = True, split: str = "unequal"
) -> Net2Net:
    """New hidden units as Net2Net replicas of old ones (`new_hidden`); exact for `noise` 0.

    Args:
        noise: relative noise on the incoming weights of the copies (0: exact).
        seed: the seed of that noise, an integer in [0, 2**32).
        normalised: whether a space a LayerNorm or RMSNorm reads is widened so that the norm's
            statistics are kept (False: plain replicas there, which move the old outputs).
        split: how a unit and its copies share its outgoing weights: "unequal" (distinct
            shares summing to 1, so the copies learn apart; see `Net2Net`) or "equal" (1 / count
            each, the original Net2Net: the copies stay identical under training).

    Raises:
        PlanError: when `noise` is not a finite number, `seed` not such an integer, or `split`
            not one of "unequal", "equal".

    Example:
        >>> import jsurgery
        >>> jsurgery.init.net2net(noise=0.01)
        Net2Net(noise=0.01, seed=0, normalised=True, split='unequal')
    """
    noise = check_number(noise, "noise", "it is the relative noise on the copies, e.g. 0.01.")
    return Net2Net(noise, check_seed(seed), bool(normalised), split)
