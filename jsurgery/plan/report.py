"""The leaf-by-leaf text report of a plan (`print(plan)`)."""

from __future__ import annotations

from jsurgery import trees


def _ids(seq) -> str:
    seq = list(seq)
    shown = ", ".join(map(repr, seq[:8])) + (", ..." if len(seq) > 8 else "")
    return f"[{shown}]"


def render(plan) -> str:
    """Renders a `Plan`: options, layer matching, one line per leaf, then warnings."""
    how = {"name": "by name", "structure": "by graph structure (smallest edit)"}.get(
        plan.matching, "in forward order (smallest edit)"
    )
    lines = [f"Plan: {plan.old_kind} -> {plan.new_kind}, layers matched {how}"]
    lines.append("  options: " + ", ".join(f"{k}={v!r}" for k, v in plan.options.items()))
    (i_old, i_new), (o_old, o_new) = plan.inputs, plan.outputs
    for label, specs, pair in (
        ("inputs", plan.input_specs, (i_old, i_new)),
        ("outputs", plan.output_specs, (o_old, o_new)),
    ):
        if not specs:
            lines.append(f"  {label + ':':<8} {_ids(pair[0])} -> {_ids(pair[1])}")
        for k, spec in enumerate(specs):
            shown = "no units" if spec is None else f"{_ids(spec[1])} -> {_ids(spec[2])}"
            lines.append(f"  {label} {k}: {shown}")
    if getattr(plan, "carry", None) is not None:
        lines.append(f"  carry:   {plan.carry}")
    lines.append(
        "  layers:  "
        + ", ".join(
            f"{new} <- {old if old is not None else 'new'}" for new, old in plan.layer_map.items()
        )
    )
    width = max(len(trees.path_str(lp.path)) for lp in plan.leaves)
    for lp in plan.leaves:
        old = str(lp.old_shape) if lp.old_shape is not None else "-"
        shapes = f"{old:>14} -> {str(lp.shape):<14}"
        lines.append(f"  {trees.path_str(lp.path):<{width}}  {shapes}  {lp.note}")
    copied = sum(1 for lp in plan.leaves if lp.source == "old")
    lines.append(
        f"  {copied} of {len(plan.leaves)} leaves read old weights, "
        f"{len(plan.leaves) - copied} start new."
    )
    lines.append(f"  promises on old inputs ({getattr(plan, 'verified', 'not verified')}):")
    lines += [f"    {p}" for p in getattr(plan, "promises", ())]
    for w in plan.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
