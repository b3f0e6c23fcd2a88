"""Property tests of the traced planner on random DAG MLPs (residual adds, two-branch concats,
two heads) with random input / output IDs and hidden widths.

The networks are linen modules built from a drawn spec (`graph_zoo.DagMLP`); make_plan traces
them, but nothing here compiles a forward pass: the reference forward pass is the same spec run in
float64 NumPy (`dag_forward`), and the IDs of every kernel row and column come from running it on
unit IDs (`dag_unit_ids`).
"""

import jax
import numpy as np
import pytest
from graph_zoo import (
    DagMLP,
    compare_outputs,
    dag_forward,
    dag_unit_ids,
    embed,
    kept,
    restrict,
    shapes,
    variables,
)
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import jsurgery

# No shrinking: each example traces and compiles three plans, and shrinking a failure costs
# minutes on two shared cores; the failing example is reported as drawn (derandomized, so the
# same one each run).
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
FEATURES = list("abcdefg")
ACTIONS = ["up", "down", "left", "right", "fire"]
AUX = ["v0", "v1", "v2", "v3", "v4"]

# Hidden layers and heads have at least 2 units here: size-1 unit axes (a bottleneck of one, a
# head cut down to one output) have their own cases in the zoo, so that a failure there does
# not hide every other one when hypothesis shrinks.
OPS = st.one_of(
    st.tuples(st.just("dense"), st.integers(2, 4)),
    st.tuples(st.just("res"), st.integers(2, 3)),
    st.tuples(st.just("cat"), st.integers(2, 3), st.integers(2, 3)),
)


def flat_widths(stem: int, body: tuple) -> list[int]:
    return [stem] + [w for op in body for w in op[1:]]


def with_widths(body: tuple, widths: list[int]) -> tuple[int, tuple]:
    """(stem, body) of the same ops with these widths (as `flat_widths` lists them)."""
    rest = iter(widths[1:])
    return widths[0], tuple((op[0], *(next(rest) for _ in op[1:])) for op in body)


@st.composite
def architectures(draw):
    return draw(st.integers(2, 4)), tuple(draw(st.lists(OPS, min_size=1, max_size=3)))


@st.composite
def id_change(draw, pool: list, max_old: int = 4, least: int = 1):
    """(old_ids, new_ids), each at least `least` long: some old IDs kept, some added, in a new
    order."""
    old = draw(st.lists(st.sampled_from(pool), min_size=least, max_size=max_old, unique=True))
    keep = draw(st.lists(st.sampled_from(old), unique=True))
    extra = draw(
        st.lists(
            st.sampled_from([u for u in pool if u not in old]),
            max_size=2,
            unique=True,
            min_size=max(least - len(keep), 0),
        )
    )
    return old, draw(st.permutations(keep + extra))


def _ids(pool: list, least: int = 1):
    return st.lists(st.sampled_from(pool), min_size=least, max_size=4, unique=True)


def _struct(n: int):
    return (jax.ShapeDtypeStruct((5, n), np.float32),)


def _plan(old_model, old_vars, new_model, new_vars, inputs, outputs, preset):
    return jsurgery.make_plan(
        old_vars,
        new_vars,
        apply=(old_model.apply, new_model.apply),
        example=(_struct(len(inputs[0])), _struct(len(inputs[1]))),
        inputs=inputs,
        outputs=outputs,
        **preset,
    )


# ----------------------------------------------------------------------------------------------
# The references themselves (these need no planner)
# ----------------------------------------------------------------------------------------------

FIXED = [
    (3, (("res", 2), ("cat", 2, 3))),
    (2, (("cat", 1, 2), ("res", 3), ("dense", 4))),
]


@pytest.mark.parametrize("arch", FIXED, ids=["res-cat", "cat-res-dense"])
def test_numpy_reference_is_the_linen_module(arch):
    model = DagMLP(*arch, heads=(3, 2))
    params = variables(model, ((4,),), seed=3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    for a, b in zip(model.apply(params, x), dag_forward(model, params, x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@SETTINGS
@given(architectures())
def test_unit_ids_name_every_kernel_row_and_column(arch):
    model = DagMLP(*arch, heads=(2, 1))
    tree = shapes(model, ((3,),))["params"]
    layers = dag_unit_ids(model, ["a", "b", "c"], (["l", "r"], ["v"]))
    assert set(layers) == set(tree)
    for path, (rows, cols) in layers.items():
        assert tree[path]["kernel"].shape == (len(rows), len(cols))
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)


# ----------------------------------------------------------------------------------------------
# PRESERVING keeps both heads on the features both networks see
# ----------------------------------------------------------------------------------------------


@st.composite
def preserving_surgeries(draw):
    stem, body = draw(architectures())
    widths = [w + draw(st.integers(0, 2)) for w in flat_widths(stem, body)]
    inputs = draw(id_change(FEATURES))
    actions = draw(id_change(ACTIONS, 3, least=2))
    aux = draw(st.one_of(st.none(), id_change(AUX, 3, least=2)))
    n_aux = draw(st.integers(2, 3)) if aux is None else None
    return stem, body, widths, inputs, actions, aux, n_aux, draw(st.integers(0, 2**16))


@SETTINGS
@given(preserving_surgeries())
def test_preserving_keeps_both_heads_on_random_dags(surgery):
    stem, body, widths, inputs, actions, aux, n_aux, seed = surgery
    heads = lambda k: (len(actions[k]), n_aux if aux is None else len(aux[k]))
    old_model = DagMLP(stem, body, heads(0))
    new_model = DagMLP(*with_widths(body, widths), heads(1))
    old = variables(old_model, ((len(inputs[0]),),), seed)
    new = variables(new_model, ((len(inputs[1]),),), seed + 1)
    outputs = {0: actions} if aux is None else {0: actions, 1: aux}
    plan = _plan(old_model, old, new_model, new, inputs, outputs, jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    x = np.random.default_rng(seed).normal(size=(5, len(inputs[0]))).astype(np.float32)
    y_old = dag_forward(old_model, old, restrict(x, *inputs))
    y_new = dag_forward(new_model, out, embed(x, *inputs))
    compare_outputs(y_old, y_new, outputs, 1e-4)


# ----------------------------------------------------------------------------------------------
# A -> B -> C equals A -> C on every value copied both ways (TRANSPLANT, named IDs)
# ----------------------------------------------------------------------------------------------


@st.composite
def chains(draw):
    stem, body = draw(architectures())
    nets = []
    for _ in range(3):
        widths = [draw(st.integers(2, 4)) for _ in flat_widths(stem, body)]
        nets.append(
            (
                with_widths(body, widths),
                draw(_ids(FEATURES)),
                draw(_ids(ACTIONS, 2)),
                draw(_ids(AUX, 2)),
            )
        )
    return nets, draw(st.integers(0, 2**16))


def _common(a: list, b: list, c: list) -> list:
    """IDs of `c` that `a` and `b` also have, in `c`'s order."""
    return [u for u in c if u in a and u in b]


def _at(ids: list, wanted: list) -> np.ndarray:
    return kept(ids, wanted)[1]


@SETTINGS
@given(chains())
def test_a_to_b_to_c_equals_a_to_c_on_every_value_copied_both_ways(chain):
    nets, seed = chain
    models = [DagMLP(*arch, heads=(len(act), len(aux))) for arch, _, act, aux in nets]
    trees = [
        variables(m, ((len(net[1]),),), seed + k)
        for k, (m, net) in enumerate(zip(models, nets, strict=True))
    ]

    def plan(i, j):
        return _plan(
            models[i],
            trees[i],
            models[j],
            trees[j],
            (nets[i][1], nets[j][1]),
            {0: (nets[i][2], nets[j][2]), 1: (nets[i][3], nets[j][3])},
            jsurgery.TRANSPLANT,
        )

    via_b = jsurgery.transplant(
        jsurgery.transplant(trees[0], trees[1], plan(0, 1)), trees[2], plan(1, 2)
    )
    direct = jsurgery.transplant(trees[0], trees[2], plan(0, 2))
    ids = [dag_unit_ids(m, net[1], (net[2], net[3])) for m, net in zip(models, nets, strict=True)]
    for path, (rows_c, cols_c) in ids[2].items():
        (rows_a, cols_a), (rows_b, cols_b) = ids[0][path], ids[1][path]
        rows, cols = _common(rows_a, rows_b, rows_c), _common(cols_a, cols_b, cols_c)
        old = trees[0]["params"][path]
        for leaf, at_c, at_a in (
            (
                "kernel",
                np.ix_(_at(rows_c, rows), _at(cols_c, cols)),
                np.ix_(_at(rows_a, rows), _at(cols_a, cols)),
            ),
            ("bias", _at(cols_c, cols), _at(cols_a, cols)),
        ):
            got = np.asarray(via_b["params"][path][leaf])[at_c]
            np.testing.assert_array_equal(got, np.asarray(direct["params"][path][leaf])[at_c])
            np.testing.assert_array_equal(got, np.asarray(old[leaf])[at_a])
