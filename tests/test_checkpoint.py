"""Checkpoint surgery: orbax checkpoints written by other programs, restored into new networks."""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

pytest.importorskip("orbax.checkpoint")
import orbax.checkpoint as ocp  # noqa: E402

import jsurgery  # noqa: E402
from jsurgery.checkpoint import (  # noqa: E402
    CheckpointError,
    read_structure,
    restore_transplanted,
    save_state,
)

OLD_OBS, NEW_OBS = ["a", "b", "c"], ["d", "a", "b", "e", "c"]
OLD_ACTIONS, NEW_ACTIONS = ["left", "right"], ["left", "noop", "right"]


class MLP(nn.Module):
    hidden: tuple
    outputs: int

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.outputs)(x)


def _state(hidden, n_in, n_out, seed):
    model = MLP(hidden, n_out)
    params = model.init(jax.random.key(seed), jnp.zeros((1, n_in)))["params"]
    return model, train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.adam(1e-3)
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A TrainState after three Adam steps, saved by plain orbax (no jsurgery involved)."""
    model, state = _state((16, 16), 3, 2, 0)
    x = jax.random.normal(jax.random.key(1), (32, 3))
    loss = lambda params: (model.apply({"params": params}, x) ** 2).mean()  # noqa: E731
    for _ in range(3):
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
            state = state.apply_gradients(grads=jax.grad(loss)(state.params))
    directory = tmp_path_factory.mktemp("ckpt") / "old"
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, state)
    return model, state, directory


def _plan(old_params, new_params):
    return jsurgery.make_plan(
        old_params,
        new_params,
        inputs=(OLD_OBS, NEW_OBS),
        outputs=(OLD_ACTIONS, NEW_ACTIONS),
        **jsurgery.PRESERVING,
    )


def test_plain_orbax_train_state_into_a_wider_network(trained, tmp_path):
    model, old, directory = trained
    stored = read_structure(directory)
    assert stored["params"]["Dense_0"]["kernel"].shape == (3, 16)
    new_model, template = _state((24, 16), 5, 3, 7)
    plan = _plan(stored["params"], template.params)
    state = restore_transplanted(directory, template, plan)

    assert isinstance(state, train_state.TrainState) and state.step == 3
    assert state.tx is template.tx and state.apply_fn is template.apply_fn
    x_old = np.asarray(jax.random.normal(jax.random.key(2), (64, 3)))
    x_new = np.zeros((64, 5), np.float32)
    x_new[:, [1, 2, 4]] = x_old
    x_new[:, [0, 3]] = np.random.default_rng(0).normal(size=(64, 2))  # new features: any value
    q_old = model.apply({"params": old.params}, x_old)
    q_new = np.asarray(new_model.apply({"params": state.params}, x_new))
    np.testing.assert_allclose(q_new[:, [0, 2]], q_old, atol=1e-5)
    # The whole state equals the in-memory surgery of the same state.
    expected = jsurgery.transplant_state(old, template, plan)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
    adam = state.opt_state[0]
    assert int(adam.count) == 3
    mu, nu = (np.asarray(moment["Dense_0"]["kernel"]) for moment in (adam.mu, adam.nu))
    np.testing.assert_array_equal(mu[[0, 3]], 0.0)  # new inputs
    np.testing.assert_array_equal(nu[[1, 2, 4], :16], old.opt_state[0].nu["Dense_0"]["kernel"])

    save_state(tmp_path / "new", state)
    again = read_structure(tmp_path / "new")
    assert again["params"]["Dense_0"]["kernel"].shape == (5, 24)
    with ocp.StandardCheckpointer() as checkpointer:
        back = checkpointer.restore(tmp_path / "new", jax.tree.map(np.asarray, state))
    np.testing.assert_array_equal(back.params["Dense_2"]["bias"], state.params["Dense_2"]["bias"])


def test_plain_orbax_params_dict(trained, tmp_path):
    model, old, _ = trained
    variables = {"params": old.params}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "params", variables)
    new_model = MLP((16, 16), 3)
    template = new_model.init(jax.random.key(3), jnp.zeros((1, 5)))
    plan = _plan(read_structure(tmp_path / "params"), template)
    new = restore_transplanted(tmp_path / "params", template, plan)
    x_old = np.asarray(jax.random.normal(jax.random.key(4), (16, 3)))
    x_new = np.asarray(plan.embed_inputs(x_old))
    np.testing.assert_allclose(np.asarray(new_model.apply(new, x_new))[:, [0, 2]],
                               model.apply(variables, x_old), atol=1e-5)  # fmt: skip


def test_partial_checkpoint_is_refused_naming_the_missing_leaves(trained, tmp_path):
    _, old, _ = trained
    partial = {"params": {"Dense_0": old.params["Dense_0"], "Dense_2": old.params["Dense_2"]},
               "step": old.step, "opt_state": old.opt_state}  # fmt: skip
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "partial", partial)
    _, template = _state((24, 16), 5, 3, 7)
    plan = _plan(old.params, template.params)
    with pytest.raises(CheckpointError, match=r"missing leaves \['params/Dense_1/bias', "
                                              r"'params/Dense_1/kernel'\]"):  # fmt: skip
        restore_transplanted(tmp_path / "partial", template, plan)


def test_unexpected_and_reshaped_leaves_are_refused(trained, tmp_path):
    _, old, directory = trained
    _, template = _state((24, 16), 5, 3, 7)
    extra = {"params": {**old.params, "Dense_9": old.params["Dense_2"]}, "step": old.step,
             "opt_state": old.opt_state}  # fmt: skip
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "extra", extra)
    plan = _plan(old.params, template.params)
    with pytest.raises(CheckpointError, match=r"unexpected leaves \['params/Dense_9/bias', "):
        restore_transplanted(tmp_path / "extra", template, plan)
    _, smaller = _state((8, 16), 3, 2, 0)
    wrong_plan = _plan(smaller.params, template.params)  # the plan of another old network
    with pytest.raises(CheckpointError, match=r"params/Dense_0/kernel: stored \(3, 16\)"):
        restore_transplanted(directory, template, wrong_plan)
    with pytest.raises(CheckpointError, match="not an orbax checkpoint"):
        read_structure(tmp_path / "nothing")


class NnxMLP(nnx.Module):
    def __init__(self, n_in, hidden, n_out, rngs):
        self.hidden = nnx.Linear(n_in, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, n_out, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def test_nnx_state_saved_by_orbax(tmp_path):
    old = NnxMLP(3, 8, 2, nnx.Rngs(0))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "nnx", nnx.state(old))
    new = NnxMLP(5, 12, 3, nnx.Rngs(1))
    abstract = nnx.state(nnx.eval_shape(lambda: NnxMLP(3, 8, 2, nnx.Rngs(0))))
    plan = jsurgery.make_plan(abstract, nnx.state(new), inputs=(OLD_OBS, NEW_OBS),
                              outputs=(OLD_ACTIONS, NEW_ACTIONS), order=["hidden", "out"],
                              **jsurgery.PRESERVING)  # fmt: skip
    nnx.update(new, restore_transplanted(tmp_path / "nnx", nnx.state(new), plan))
    x_old = np.asarray(jax.random.normal(jax.random.key(5), (16, 3)))
    x_new = np.asarray(plan.embed_inputs(x_old))
    np.testing.assert_allclose(np.asarray(new(x_new))[:, [0, 2]], old(x_old), atol=1e-5)


SHARDED = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp, numpy as np, orbax.checkpoint as ocp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jsurgery
    from jsurgery.checkpoint import read_structure, restore_transplanted

    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    rng = np.random.default_rng(0)
    def mlp(n_in, h, n_out):
        return {"Dense_0": {"kernel": rng.normal(size=(n_in, h)).astype(np.float32),
                            "bias": rng.normal(size=(h,)).astype(np.float32)},
                "Dense_1": {"kernel": rng.normal(size=(h, n_out)).astype(np.float32),
                            "bias": rng.normal(size=(n_out,)).astype(np.float32)}}
    old, new = mlp(6, 16, 4), mlp(8, 32, 8)
    with ocp.StandardCheckpointer() as c:
        c.save(sys.argv[1], {"params": old})
    specs = {"Dense_0": {"kernel": P("data", "model"), "bias": P("model")},
             "Dense_1": {"kernel": P("model", None), "bias": P()}}
    new = {"params": jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), new,
                                  specs, is_leaf=lambda s: isinstance(s, P))}
    plan = jsurgery.make_plan(read_structure(sys.argv[1]), new,
                              inputs=(list(range(6)), [7, 0, 1, 2, 3, 4, 5, 6]),
                              outputs=(list("abcd"), list("dcbaefgh")), **jsurgery.PRESERVING)
    out = restore_transplanted(sys.argv[1], new, plan)
    ref = jsurgery.transplant({"params": old}, jax.device_get(new), plan)
    for o, r, t in zip(jax.tree.leaves(out), jax.tree.leaves(ref), jax.tree.leaves(new)):
        assert o.sharding.is_equivalent_to(t.sharding, o.ndim), (o.sharding, t.sharding)
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), atol=1e-6)
    print("OK")
    """
)


def test_sharded_restore_lands_with_the_template_sharding(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path / "ckpt")],
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def flip_bytes(directory, fraction=0.5, count=4):
    """Inverts ``count`` bytes at ``fraction`` of the largest data file of an orbax checkpoint."""
    data_files = [p for p in directory.rglob("*") if p.is_file() and p.parent.name == "d"]
    biggest = max(data_files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    start = int(len(data) * fraction)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    biggest.write_bytes(bytes(data))


@pytest.fixture
def wide_checkpoint(tmp_path):
    """Params of a 3-128-128-2 MLP saved by save_state; Dense_1/kernel is the largest leaf."""
    model, state = _state((128, 128), 3, 2, 0)
    directory = save_state(tmp_path / "wide", {"params": state.params})
    plan = jsurgery.make_plan(state.params, state.params)
    return directory, {"params": state.params}, plan


def test_save_state_records_a_checksum_for_every_stored_leaf(wide_checkpoint):
    directory, state, plan = wide_checkpoint
    recorded = json.loads((directory / "checksums.json").read_text())["crc32"]
    stored = jax.tree_util.tree_flatten_with_path(read_structure(directory))[0]
    assert set(recorded) == {"/".join(str(k.key) for k in kp) for kp, _ in stored}
    back = restore_transplanted(directory, state, plan)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_flipped_byte_in_the_data_is_a_checkpoint_error_naming_the_leaf(wide_checkpoint):
    directory, state, plan = wide_checkpoint
    flip_bytes(directory)
    with pytest.raises(CheckpointError, match=r"leaf params/Dense_1/kernel is damaged"):
        restore_transplanted(directory, state, plan)


@pytest.mark.parametrize("name", ["_METADATA", "_CHECKPOINT_METADATA", "_sharding",
                                  "checksums.json"])  # fmt: skip
@pytest.mark.parametrize("damage", ["truncated", "not UTF-8"])
def test_damaged_metadata_is_a_checkpoint_error_naming_the_file(wide_checkpoint, name, damage):
    directory, state, plan = wide_checkpoint
    path = directory / name
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2] if damage == "truncated" else b"\xff\xfe" + text)
    with pytest.raises(CheckpointError, match=rf"{name} is damaged"):
        restore_transplanted(directory, state, plan)


def test_bfloat16_into_float32_is_refused_without_allow_dtype_change(wide_checkpoint, tmp_path):
    _, state, plan = wide_checkpoint
    half = jax.tree.map(lambda leaf: leaf.astype(jnp.bfloat16), state)
    directory = save_state(tmp_path / "bf16", half)
    with pytest.raises(CheckpointError, match=r"Dense_0/bias: stored bfloat16, expected float32.*"
                                              r"allow_dtype_change=True"):  # fmt: skip
        restore_transplanted(directory, state, plan)
    back = restore_transplanted(directory, state, plan, allow_dtype_change=True)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(half), strict=True):
        assert got.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want, np.float32))
