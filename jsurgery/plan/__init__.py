"""Plans: what a plan is (data), how it is made and how it is printed.

`Plan`, `LeafPlan`, `AxisMap` and `SpaceMap` are data (`plan.py`, `data.py`); `planner.py` makes
a plan: a front-end gives each side's graph (`sides.py`, or `jsurgery.params`), the user's IDs
name its spaces (`unit_ids.py`), `jsurgery.match` matches layers and spaces, the init rules of
`jsurgery.init` fill new units, and `leaves.py` writes one `LeafPlan` per new leaf (`build.py`
runs these steps). `report.py` renders `print(plan)`.
"""

from jsurgery.plan.data import AxisMap, LeafPlan, SpaceMap
from jsurgery.plan.plan import Plan

__all__ = ["AxisMap", "LeafPlan", "Plan", "SpaceMap"]
