"""The tracer's rules, one module per family of primitives: `elementwise` (elementwise ops,
reductions, cumulative ops, sources, the opaque default), `linalg` (contractions), `shapes` (axis
moves, cuts and joins) and `control` (nested jaxprs). Each rule is registered in
`jsurgery.trace.registry` beside its definition, when its module is imported.
"""
