"""jsurgery: neural network surgery for JAX/Flax.

Carry trained weights from an old network into a new architecture by unit IDs:

    plan = jsurgery.make_plan(old_params, new_template, inputs=(old_ids, new_ids))
    new_params = jsurgery.transplant(old_params, new_template, plan)
"""

from jsurgery import init
from jsurgery.check import PreservationReport, check_preservation
from jsurgery.errors import PlanError
from jsurgery.execute.carry import transplant_carry
from jsurgery.execute.state import transplant_state
from jsurgery.execute.transplant import transplant, transplant_moments
from jsurgery.init import PRESERVING, TRANSPLANT
from jsurgery.plan import Plan
from jsurgery.plan.planner import make_plan

__all__ = [
    "PRESERVING",
    "Plan",
    "PlanError",
    "PreservationReport",
    "TRANSPLANT",
    "check_preservation",
    "init",
    "make_plan",
    "transplant",
    "transplant_carry",
    "transplant_moments",
    "transplant_state",
]
__version__ = "0.1.0"
