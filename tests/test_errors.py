"""Every bad input gets a PlanError that names the argument, leaf path or IDs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from surgery_models import CNN, MLP

import jsurgery


def shapes(model, n_in, dtype=jnp.float32):
    shape = (1, *n_in) if isinstance(n_in, tuple) else (1, n_in)
    return jax.eval_shape(model.init, jax.random.key(0), jnp.ones(shape, dtype))


class Odd(nn.Module):
    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.ones, (x.shape[-1], 2))
        return x @ w


class General(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.DenseGeneral((2, 3))(x)


class Loose(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x) * self.param("scale_all", nn.initializers.ones, (2,))


MLP_A, MLP_B = shapes(MLP((4,), 2), 3), shapes(MLP((4,), 3), 3)

# (id, old, new, make_plan kwargs, words the message must contain)
PLAN_ERRORS = [
    (
        "duplicate-new-input-ids",
        MLP_A,
        MLP_A,
        dict(inputs=(["a", "b", "c"], ["a", "b", "b"])),
        ["inputs[1]", "duplicates", "'b'"],
    ),
    (
        "duplicate-old-output-ids",
        MLP_A,
        MLP_A,
        dict(outputs=(["l", "l"], ["l", "r"])),
        ["outputs[0]", "duplicates", "'l'"],
    ),
    (
        "ids-as-a-string",
        MLP_A,
        MLP_A,
        dict(inputs=("abc", ["a", "b", "c"])),
        ["inputs[0]", "sequence", "'abc'"],
    ),
    (
        "input-id-count",
        MLP_A,
        MLP_A,
        dict(inputs=(["a", "b"], ["a", "b", "c"])),
        ["inputs[0]", "2 IDs", "3 units", "Dense_0"],
    ),
    (
        "output-id-count",
        MLP_A,
        MLP_B,
        dict(outputs=(["l", "r"], ["l", "r"])),
        ["outputs[1]", "2 IDs", "3 units", "Dense_1"],
    ),
    (
        "hidden-id-count",
        MLP_A,
        MLP_A,
        dict(hidden={"Dense_0": ([0, 1, 2], [0, 1, 2])}),
        ["hidden['Dense_0']", "3 IDs", "4 units"],
    ),
    (
        "hidden-unknown-layer",
        MLP_A,
        MLP_A,
        dict(hidden={"Dense_7": ([0], [0])}),
        ["`hidden`", "Dense_7"],
    ),
    (
        "layers-unknown-new-path",
        MLP_A,
        MLP_A,
        dict(layers={"Dense_9": "Dense_0"}),
        ["`layers`", "Dense_9", "new layers"],
    ),
    (
        "layers-unknown-old-path",
        MLP_A,
        MLP_A,
        dict(layers={"Dense_0": "Conv_3"}),
        ["`layers`", "Conv_3", "old layers"],
    ),
    (
        "layers-kind-mismatch",
        shapes(CNN((4,), (), 2), (5, 5, 1)),
        shapes(MLP((4,), 2), 3),
        dict(layers={"Dense_0": "Conv_0", "Dense_1": "Dense_0"}),
        ["Dense_0", "Conv_0", "kernel (3, 3, 1, 4)"],
    ),
    (
        "flatten-spatial-size-changed",
        shapes(CNN((4,), (), 2), (5, 5, 1)),
        shapes(CNN((4,), (), 2), (6, 6, 1)),
        {},
        ["Dense_0", "flatten", "25", "36"],
    ),
    (
        "conv-window-changed",
        shapes(CNN((4,), (), 2), (5, 5, 1)),
        shapes(CNN((4,), (), 2, window=(5, 5)), (5, 5, 1)),
        {},
        ["Conv_0/kernel", "window"],
    ),
    (
        "unsupported-leaf-name",
        shapes(Odd(), 3),
        shapes(Odd(), 3),
        {},
        ["(root)", "unsupported leaves ['w']", "Dense/Linear"],
    ),
    (
        "unsupported-dense-general",
        shapes(General(), 3),
        shapes(General(), 3),
        {},
        ["DenseGeneral", "not supported", "Dense/Linear"],
    ),
    ("unsupported-loose-param", shapes(Loose(), 3), shapes(Loose(), 3), {}, ["scale_all"]),
    (
        "dtype-changed",
        MLP_A,
        jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.bfloat16), MLP_A),
        {},
        ["Dense_0", "float32", "bfloat16", "allow_dtype_change"],
    ),
    ("bad-option", MLP_A, MLP_A, dict(new_hidden="net2wider"), ["new_hidden", "net2wider"]),
    (
        "bad-output-init-key",
        MLP_A,
        MLP_B,
        dict(outputs=(["l", "r"], ["l", "r", "n"]), new_outputs={"x": "zeros"}),
        ["new_outputs", "'x'", "not a new output"],
    ),
    (
        "bad-output-init-value",
        MLP_A,
        MLP_B,
        dict(outputs=(["l", "r"], ["l", "r", "n"]), new_outputs={"n": "up"}),
        ["new_outputs", "'n'", "'up'"],
    ),
    ("not-a-tree", [1, 2], MLP_A, {}, ["`old`", "list"]),
    (
        "even-window-dirac",
        shapes(CNN((4,), (), 2, window=(2, 2)), (5, 5, 1)),
        shapes(CNN((4, 4), (), 2, window=(2, 2)), (5, 5, 1)),
        {},
        ["Conv_1", "odd windows"],
    ),
]


@pytest.mark.parametrize("case", PLAN_ERRORS, ids=[c[0] for c in PLAN_ERRORS])
def test_plan_errors_name_what_is_wrong(case):
    _, old, new, kwargs, words = case
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert isinstance(info.value, ValueError)


def _real(model, n_in, seed=0):
    return model.init(jax.random.key(seed), jnp.ones((1, n_in)))


def test_transplant_refuses_a_template_of_another_structure():
    old, new = _real(MLP((4,), 2), 3), _real(MLP((4,), 3), 3)
    plan = jsurgery.make_plan(old, new)
    with pytest.raises(jsurgery.PlanError, match="Dense_1/kernel.*made for"):
        jsurgery.transplant(old, _real(MLP((4,), 5), 3), plan)
    with pytest.raises(jsurgery.PlanError, match="missing leaves.*Dense_2"):
        jsurgery.transplant(old, _real(MLP((4, 4), 3), 3), plan)
    with pytest.raises(jsurgery.PlanError, match="old"):
        jsurgery.transplant(new, new, plan)
    with pytest.raises(jsurgery.PlanError, match="Plan"):
        jsurgery.transplant(old, new, {"not": "a plan"})


def test_matched_layer_that_loses_a_leaf_is_an_error():
    class NoBias(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(4)(x))
            return nn.Dense(2, use_bias=False)(x)

    with pytest.raises(jsurgery.PlanError, match="Dense_1/bias.*dropped silently"):
        jsurgery.make_plan(shapes(MLP((4,), 2), 3), shapes(NoBias(), 3))
