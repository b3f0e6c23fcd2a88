"""The tracer: an apply function and example inputs -> a unit-space `Graph`.

`jax.make_jaxpr` of the function, then a walk over the equations, primitive by primitive: each
rule says which axes of its operands and results hold the same units (ties), which are segments or
factors of another (concatenate, slice, split, reshape), and which units it mixes (reductions).
Nested jaxprs (`jit`, `custom_jvp_call`, `custom_vjp_call`, `cond`, `while`, `scan`) are walked
inside, bound to their operands. A primitive without a rule marks every axis it touches as opaque;
`jsurgery.plan.sides` refuses a plan when an opaque axis carries a parameter's units.

Modules, each importing only those above it: `walker` (the `Walker` over a jaxpr's equations),
`registry` (the rules table, `rule_for`), `rules` (the rules, registered when imported: this
package imports them all) and `tracer` (`trace` and its errors).
"""

from jsurgery.trace.rules import control, elementwise, linalg, shapes  # noqa: F401 -- registers
from jsurgery.trace.tracer import trace

__all__ = ["trace"]
