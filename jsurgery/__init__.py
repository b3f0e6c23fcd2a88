"""jsurgery: neural network surgery for JAX/Flax.

Carry trained weights from an old network into a new architecture by unit IDs:

    plan = jsurgery.make_plan(old_params, new_template, inputs=(old_ids, new_ids))
    new_params = jsurgery.transplant(old_params, new_template, plan)
"""

from jsurgery.errors import PlanError

__all__ = ["PlanError"]
__version__ = "0.1.0"
