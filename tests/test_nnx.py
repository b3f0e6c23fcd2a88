"""NNX models: nnx.State and nnx.Module in, the same kind out."""

import jax
import numpy as np
import pytest
from flax import nnx
from surgery_models import NnxMLP, rand

import jsurgery


@pytest.mark.parametrize("as_module", [False, True], ids=["state", "module"])
def test_nnx_widen_insert_and_add_inputs_preserves_function(as_module):
    old_m = NnxMLP(2, (4,), 2, nnx.Rngs(0))
    new_m = NnxMLP(3, (8, 8), 3, nnx.Rngs(1))
    old = old_m if as_module else nnx.state(old_m)
    new = new_m if as_module else nnx.state(new_m)
    plan = jsurgery.make_plan(
        old,
        new,
        inputs=(["a", "b"], ["b", "c", "a"]),
        outputs=(["l", "r"], ["l", "n", "r"]),
        **jsurgery.PRESERVING,
    )
    assert plan.layer_map == {"layers/0": "layers/0", "layers/1": None, "head": "head"}
    out = jsurgery.transplant(old, new, plan)
    if as_module:
        assert isinstance(out, NnxMLP)
        model = out
    else:
        assert isinstance(out, nnx.State)
        model = nnx.merge(nnx.graphdef(new_m), out)
    x = rand((6, 2))
    np.testing.assert_allclose(model(plan.embed_inputs(x))[:, [0, 2]], old_m(x), atol=1e-5)


def test_nnx_batchnorm_stats_follow_units():
    class Net(nnx.Module):
        def __init__(self, h, rngs):
            self.lin = nnx.Linear(3, h, rngs=rngs)
            self.bn = nnx.BatchNorm(h, use_running_average=True, rngs=rngs)
            self.out = nnx.Linear(h, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.bn(self.lin(x))))

    old_m, new_m = Net(4, nnx.Rngs(0)), Net(7, nnx.Rngs(1))
    old_m.bn.mean[...] = jax.random.normal(jax.random.key(3), (4,))
    old_m.bn.var[...] = jax.random.uniform(jax.random.key(4), (4,)) + 0.5
    plan = jsurgery.make_plan(old_m, new_m, new_hidden="net2net")
    out = jsurgery.transplant(old_m, new_m, plan)
    np.testing.assert_allclose(out.bn.mean[...][:4], old_m.bn.mean[...])
    x = rand((5, 3))
    np.testing.assert_allclose(out(x), old_m(x), atol=1e-5)


class TrainModeNet(nnx.Module):
    """BatchNorm and Dropout, built in train mode (batch statistics, dropout on)."""

    def __init__(self, h, rngs):
        self.lin = nnx.Linear(3, h, rngs=rngs)
        self.bn = nnx.BatchNorm(h, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(h, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.bn(self.lin(x)))))


def _snapshot(module) -> list:
    state = nnx.state(module, (nnx.Param, nnx.BatchStat, nnx.RngCount))
    return [np.array(x) for x in jax.tree.leaves(state)]


def test_nnx_module_in_train_mode_is_traced_without_changing_it():
    old_m, new_m = TrainModeNet(4, nnx.Rngs(0)), TrainModeNet(7, nnx.Rngs(1))
    old_m.bn.mean[...] = jax.random.normal(jax.random.key(3), (4,))
    old_m.bn.var[...] = jax.random.uniform(jax.random.key(4), (4,)) + 0.5
    before = _snapshot(old_m)
    x = rand((5, 3))
    plan = jsurgery.make_plan(old_m, new_m, example=((x,), (x,)), **jsurgery.PRESERVING)
    for a, b in zip(before, _snapshot(old_m), strict=True):
        np.testing.assert_array_equal(a, b)  # parameters, statistics and RNG counts untouched
    assert old_m.drop.deterministic is False and old_m.bn.use_running_average is False
    out = jsurgery.transplant(old_m, new_m, plan)
    old_m.eval()
    out.eval()
    np.testing.assert_allclose(out(x), old_m(x), atol=1e-5)
    np.testing.assert_array_equal(out.bn.mean[...][:4], old_m.bn.mean[...])
