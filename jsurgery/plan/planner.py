"""make_plan: the old and new networks, unit IDs and init rules -> a Plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from jsurgery import init, params
from jsurgery.errors import PlanError
from jsurgery.graph.carry import check_carry_arg
from jsurgery.init.by_id import ById
from jsurgery.plan.build import build
from jsurgery.plan.options import check_options, check_removed
from jsurgery.plan.plan import Plan
from jsurgery.plan.removed import fold_removed
from jsurgery.verify import checked

IdPair = tuple[Sequence[Hashable], Sequence[Hashable]]


def make_plan(
    old,
    new_template,
    *,
    apply: Callable | tuple[Callable, Callable] | None = None,
    example: tuple | None = None,
    inputs: IdPair | Mapping[int, IdPair] | None = None,
    outputs: IdPair | Mapping[int, IdPair] | None = None,
    layers: Mapping | None = None,
    hidden: Mapping | None = None,
    new_inputs: init.NewInputs | init.UnitRule = "template",
    new_hidden: init.NewHidden | init.UnitRule = "template",
    new_layers: init.NewLayers | init.LayerRule = "identity",
    new_outputs: init.NewOutputs | init.UnitRule | Mapping[Hashable, Hashable] = "template",
    pessimism: float = 1.0,
    init_scale: float = 0.01,
    net2net_noise: float = 0.0,
    seed: int = 0,
    order: Sequence | None = None,
    allow_dtype_change: bool = False,
    carry: bool | tuple[int, int] | None = None,
    verify: bool = True,
    removed_inputs: Mapping[Hashable, float] | None = None,
) -> Plan:
    """Plans moving the weights of `old` into a network shaped like `new_template`.

    With `apply` and `example`, both networks are traced (`jax.make_jaxpr`) and the plan follows
    their real graph: branches, heads, residual adds, concatenations, loose parameters. Without
    them (the params-only path, `jsurgery.params`), layers are read from names and shapes and must
    form one chain, in forward order (creation order, numbered names in numeric order, or
    `order`); the chain is written as the function it computes and planned by the same pipeline,
    and whatever cannot be verified as a chain is refused. Only shapes and dtypes of the trees
    are read, so either may hold `jax.ShapeDtypeStruct` leaves.

    Args:
        old: the trained tree (linen variables, params dict, nnx.State or nnx.Module; with
            `apply`, any pytree of arrays).
        new_template: a freshly initialised tree of the new architecture.
        apply: `apply(variables, *args) -> any pytree of arrays`, one function for both sides
            or an `(old_apply, new_apply)` pair; an NNX module is its own function.
        example: positional arguments per side, `((x_old, ...), (x_new, ...))`, arrays or
            `jax.ShapeDtypeStruct`s.
        inputs: `(old_ids, new_ids)` of the input features (the last axis of the one input,
            channels for a CNN), or `{input_index: pair}` on a traced plan (indices into
            `jax.tree.leaves` of the example arguments: a carry `(c, h)` before the observation
            takes indices 0 and 1); by position when None.
        outputs: `(old_ids, new_ids)` of the output units (actions, classes), or
            `{output_index: pair}` (indices into `jax.tree.leaves` of a traced output); units
            not named keep their positions.
        layers: `{new_layer_path: old_layer_path or None}` overriding the matching; None keeps
            the template's init for that whole layer.
        hidden: `{new_layer_path: (old_ids, new_ids)}` naming the output units of hidden layers;
            hidden units are matched by position otherwise.
        new_inputs: how input features the old network lacks start: a rule of `jsurgery.init`,
            `template()` or `zeros()`, or its name ("template", "zeros").
        new_hidden: how new hidden units start: `template()`, `zero_fanout()`,
            `net2net(noise, seed)` or `small_random(scale)`, or its name.
        new_layers: how inserted layers start: `identity()`, `identity_corner()` or
            `template()`, or its name.
        new_outputs: how new outputs start: `template()`, `zeros()`, `mean()` or
            `pessimistic(margin)`, or its name, or `{new_id: old_id, rule or name}` per output.
        pessimism: the margin of "pessimistic" given by name: how far below the old outputs'
            mean a new output starts.
        init_scale: the scale of "small_random" given by name: the factor on the template's
            weights of every new hidden unit (in, out, biases, every gate); the old outputs
            move by at most first order in it.
        net2net_noise: the noise of "net2net" given by name: relative noise on the incoming
            weights of Net2Net copies (0: exact).
        seed: seed of that noise. A rule object carries its own parameters: these keywords
            beside one (`new_hidden=net2net(), seed=1`) are refused.
        order: layer paths in forward order, for trees whose key order is not the forward order
            (an nnx.State sorts its keys); layers not listed follow in their own order.
        allow_dtype_change: cast old leaves to the template's dtype instead of raising.
        carry: a traced plan's recurrent state. None: detected (the first argument, when it comes
            back as the first of two outputs with the same structure, shapes and dtypes:
            `apply(variables, carry, x) -> (carry, y)`); False: none (a function whose first
            argument and output merely look alike); `(arg_index, output_index)`: that argument
            comes back as that output (refused when it does not). A carried space is one space
            across the step (see `docs/recurrent.md`), and `Plan.carry` records it.
        verify: run both networks on random old inputs (old weights, and the transplanted ones)
            and check every promise of the plan (`Plan.promises`) before returning it; done
            when both functions and concrete arrays are known (not on the params-only path,
            not for shapes alone: `Plan.verified` says).
        removed_inputs: `{old_id: value}`: old inputs the new network lacks, each held at its
            value and folded into the bias of every layer that reads it (`bias[o] += sum_r
            kernel[r, o] * value[r]`, from the old weights inside `transplant`), so the new
            network on the kept inputs computes what the old one computed with these inputs
            held. Exact for affine first layers (a dense layer with a bias, read directly by
            the input); anything else the input reaches first is refused. Without it, a removed
            input's rows are dropped and the plan warns that the old outputs move.

    Returns:
        A `Plan`; `print(plan)` shows it leaf by leaf, with its promises.

    Raises:
        PlanError: for duplicate IDs, IDs that do not match a parameter's size, layers that
            cannot be matched, a flatten boundary whose spatial size changed, unsupported leaves,
            dtype and shape surprises, a promise the networks do not keep when run, or a
            removed input that is not an old input, is still a new one, has no finite value,
            or reaches something other than a dense first layer with a bias.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
        >>> old = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 2)))
        >>> new = nn.Dense(2).init(jax.random.key(1), jnp.ones((1, 3)))
        >>> plan = jsurgery.make_plan(old, new, inputs=(["a", "b"], ["a", "c", "b"]),
        ...                           new_inputs="zeros")
        >>> jsurgery.transplant(old, new, plan)["params"]["kernel"].shape
        (3, 2)
        >>> plan = jsurgery.make_plan(old, new, inputs=(["a", "b"], ["a", "c", "b"]),
        ...                           new_inputs=jsurgery.init.zeros())  # the rule as an object
        >>> jsurgery.transplant(old, new, plan)["params"]["kernel"][1]
        Array([0., 0.], dtype=float32)
    """
    if not isinstance(verify, bool):
        raise PlanError(f"`verify`: expected True or False, got {verify!r}.")
    _check_mapping("layers", layers, "{new_layer_path: old_layer_path or None}")
    _check_mapping("hidden", hidden, "{new_layer_path: (old_ids, new_ids)}")
    check_options(inputs, outputs, order, allow_dtype_change)
    removed = check_removed(removed_inputs)
    rules = init.resolve(
        new_inputs,
        new_hidden,
        new_layers,
        new_outputs,
        pessimism=pessimism,
        init_scale=init_scale,
        net2net_noise=net2net_noise,
        seed=seed,
    )
    rules = _outputs_known(rules, outputs)
    if carry is not None and carry is not False:
        check_carry_arg(carry)
    if apply is not None or example is not None:
        if example is None:
            raise PlanError("`example`: a traced plan needs example inputs ((x_old,), (x_new,)).")
        fields, sides = build(
            old,
            new_template,
            apply=apply,
            example=example,
            inputs=inputs,
            outputs=outputs,
            layers=layers,
            hidden=hidden,
            rules=rules,
            allow_dtype_change=allow_dtype_change,
            carry=carry,
            held=frozenset(removed),
        )
        fields = fold_removed(fields, sides, removed)
    elif carry:
        raise PlanError(
            f"`carry`: {carry!r} names a recurrent state of a traced function; pass apply= and "
            "example= with it."
        )
    else:
        fields, sides = _params_only(
            old,
            new_template,
            order=order,
            inputs=inputs,
            outputs=outputs,
            layers=layers,
            hidden=hidden,
            rules=rules,
            allow_dtype_change=allow_dtype_change,
            removed=removed,
        )
    plan = Plan(options=rules.options, noise=rules.noise, seed=rules.seed, **fields)
    return checked(plan, sides, verify)


def _params_only(
    old, new_template, *, order, inputs, outputs, layers, hidden, rules, allow_dtype_change, removed
) -> dict:
    """The fields of a params-only plan: each side's chain of layers, read from names and
    shapes, is written as a function (`jsurgery.params`) and planned like a traced one, removed
    inputs folded into the first layers' biases. The plan keeps the params-only conventions:
    one input and one output, units on the last axis."""
    if isinstance(inputs, Mapping) or isinstance(outputs, Mapping):
        raise PlanError(
            "`inputs`/`outputs` as {index: pair} name one of several inputs or outputs of a "
            f"function; {params.TRACE_HINT}."
        )
    params.check_order(order, old, new_template)
    n_in, n_out = _id_count(inputs), _id_count(outputs)
    old_side = params.chain_side(old, "old", order, n_in[0], n_out[0])
    new_side = params.chain_side(new_template, "new_template", order, n_in[1], n_out[1])
    fields, sides = build(
        old,
        new_template,
        apply=(old_side.apply, new_side.apply),
        example=(old_side.example, new_side.example),
        inputs=inputs,
        outputs=outputs,
        layers=layers,
        hidden=hidden,
        rules=rules,
        allow_dtype_change=allow_dtype_change,
        carry=False,
        held=frozenset(removed),
    )
    try:
        fields = fold_removed(fields, sides, removed)
    except PlanError as e:
        raise PlanError(params.in_user_words(str(e))) from None
    warnings = tuple(params.in_user_words(w) for w in fields["warnings"])
    tokens = [spec for spec in fields["input_specs"] if spec and spec[0] == "values"]
    fields = dict(fields, warnings=warnings, input_specs=tuple(tokens), output_specs=(), carry=None)
    return fields, None


def _outputs_known(rules: init.Rules, outputs) -> init.Rules:
    """`rules` whose per-ID `new_outputs` knows the new IDs of every output named in
    `outputs={index: pair}`, so that one dict can start units of several outputs (a policy's
    mean and its log-std)."""
    if not isinstance(rules.new_outputs, ById) or not isinstance(outputs, Mapping):
        return rules
    every = tuple(i for _, pair in sorted(outputs.items()) for i in pair[1])
    return dataclasses.replace(
        rules, new_outputs=dataclasses.replace(rules.new_outputs, elsewhere=every)
    )


def _check_mapping(arg: str, value, form: str) -> None:
    """Refuses an argument that should be a dict (or None) and is not."""
    if value is not None and not isinstance(value, Mapping):
        raise PlanError(f"`{arg}`: expected a dict {form}, got {type(value).__name__} {value!r}.")


def _id_count(pair) -> tuple:
    """How many IDs each side of an `(old_ids, new_ids)` pair names (None where not given)."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        return None, None
    return tuple(
        len(side) or None
        if isinstance(side, (Sequence, np.ndarray)) and not isinstance(side, str)
        else None
        for side in pair
    )
