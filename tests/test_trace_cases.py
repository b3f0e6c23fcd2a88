"""Networks as users write them that the tracer must follow: a one-hot of an integer argument
(an action), token IDs sliced or shifted before an embedding, a kernel transformed before its
matmul, and leaves the surgery does not touch (a float in the tree, a constant table built
inside the function). Each is judged by forward passes, old network on old inputs against new
network on the same inputs embedded by the plan."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery
from jsurgery.errors import PlanError

OBS = jax.random.normal(jax.random.key(3), (6, 3))


def _plan(old_m, new_m, old_args, new_args=None, **kwargs):
    new_args = old_args if new_args is None else new_args
    old = old_m.init(jax.random.key(0), *old_args)
    new = new_m.init(jax.random.key(1), *new_args)
    plan = jsurgery.make_plan(
        old, new, apply=(old_m.apply, new_m.apply), example=(old_args, new_args), **kwargs
    )
    return old, jsurgery.transplant(old, new, plan), plan


def _gap(old_m, new_m, old, out, plan, *args):
    embedded = plan.embed_inputs(*args)
    embedded = embedded if isinstance(embedded, tuple) else (embedded,)
    y_old = np.asarray(old_m.apply(old, *args))
    return float(np.abs(np.asarray(new_m.apply(out, *embedded)) - y_old).max())


# -- 1. a one-hot of an integer argument ---------------------------------------------------------
class Critic(nn.Module):
    """Q(s, a): the action, one-hot encoded inside the function, concatenated to the state."""

    n_actions: int

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, jax.nn.one_hot(action, self.n_actions)], -1)
        return nn.Dense(1, name="q")(nn.relu(nn.Dense(8, name="torso")(x)))


ACTIONS = jnp.array([0, 1, 2, 1, 0, 2])


def test_one_hot_action_space_grown_keeps_old_actions_exact():
    old, out, plan = _plan(
        Critic(3),
        Critic(4),
        (OBS, ACTIONS),
        inputs={1: (["left", "noop", "right"], ["noop", "up", "left", "right"])},
        **jsurgery.PRESERVING,
    )
    assert _gap(Critic(3), Critic(4), old, out, plan, OBS, ACTIONS) < 1e-5
    kernel = np.asarray(out["params"]["torso"]["kernel"])
    old_kernel = np.asarray(old["params"]["torso"]["kernel"])
    np.testing.assert_array_equal(kernel[3 + 1], np.zeros(8))  # "up": a new action, no fan-out
    np.testing.assert_array_equal(kernel[[3 + 0, 3 + 2, 3 + 3]], old_kernel[[3 + 1, 3 + 0, 3 + 2]])


def test_one_hot_action_space_grown_by_position():
    old, out, plan = _plan(Critic(3), Critic(4), (OBS, ACTIONS), **jsurgery.PRESERVING)
    assert _gap(Critic(3), Critic(4), old, out, plan, OBS, ACTIONS) < 1e-5


class OneBasedCritic(nn.Module):
    """Actions numbered from 1: the one-hot of `action - 1`."""

    n_actions: int

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, jax.nn.one_hot(action - 1, self.n_actions)], -1)
        return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))


def test_one_hot_of_shifted_actions_unchanged_width_is_exact():
    old_m, new_m = OneBasedCritic(3), OneBasedCritic(3)
    old, out, plan = _plan(old_m, new_m, (OBS, ACTIONS + 1), **jsurgery.PRESERVING)
    assert _gap(old_m, new_m, old, out, plan, OBS, ACTIONS + 1) < 1e-5  # action 3 included


@pytest.mark.parametrize("named", [False, True])
def test_one_hot_of_shifted_actions_grown_is_refused(named):
    ids = {1: (["none", "left", "right"], ["up", "none", "left", "right"])} if named else None
    with pytest.raises(PlanError, match=r"(?s)inputs\[1\].*sub at .*OneBasedCritic.__call__"):
        _plan(OneBasedCritic(3), OneBasedCritic(4), (OBS, ACTIONS + 1), inputs=ids)


# -- 2. token IDs sliced, padded or shifted before an embedding ----------------------------------
class ShiftedLM(nn.Module):
    """An embedding of the tokens cut (`t[:, 1:]`) or shifted right (lm1b's `shift_right`)."""

    vocab: int
    mode: str

    @nn.compact
    def __call__(self, tokens):
        if self.mode == "slice":
            tokens = tokens[:, 1:]
        else:
            tokens = jnp.pad(tokens, [(0, 0), (1, 0)])[:, :-1]
        return nn.Dense(3)(nn.relu(nn.Embed(self.vocab, 4)(tokens)))


TOKENS = jnp.array([[1, 2, 0, 1, 2], [2, 2, 1, 0, 0]])


@pytest.mark.parametrize("mode", ["slice", "shift"])
def test_cut_or_shifted_tokens_unchanged_network_is_identity(mode):
    old, out, plan = _plan(ShiftedLM(3, mode), ShiftedLM(3, mode), (TOKENS,))
    for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["slice", "shift"])
def test_cut_or_shifted_tokens_vocabulary_grown(mode):
    # the pad token (ID 0 of the shift) stays at position 0
    ids = (["<pad>", "a", "b"], ["<pad>", "b", "new", "a"])
    old_m, new_m = ShiftedLM(3, mode), ShiftedLM(4, mode)
    old, out, plan = _plan(old_m, new_m, (TOKENS,), inputs=ids, **jsurgery.PRESERVING)
    assert _gap(old_m, new_m, old, out, plan, TOKENS) < 1e-5


def test_shift_pad_token_moved_is_refused():
    with pytest.raises(PlanError, match=r"(?s)padded with the constant 0.*'<pad>'.*'a'"):
        _plan(
            ShiftedLM(3, "shift"),
            ShiftedLM(4, "shift"),
            (TOKENS,),
            inputs=(["<pad>", "a", "b"], ["a", "<pad>", "b", "new"]),
        )


# -- 3. a kernel transformed before its matmul ---------------------------------------------------
class Transformed(nn.Module):
    """A linear layer whose kernel passes through an op before its matmul: scaled by a constant,
    NoisyNet in eval mode (`mu + 0 * sigma`), or a nonlinear map the planner cannot follow."""

    features: int
    mode: str

    @nn.compact
    def __call__(self, x):
        k = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        if self.mode == "scale":
            return x @ (k * 1.0)
        if self.mode == "noisy":
            sigma = self.param("sigma", nn.initializers.ones, k.shape)
            return x @ (k + 0.0 * sigma)
        return x @ jnp.tanh(k)


class TwoLayers(nn.Module):
    width: int
    mode: str

    @nn.compact
    def __call__(self, x):
        h = nn.relu(Transformed(self.width, self.mode, name="torso")(x))
        return Transformed(2, self.mode, name="head")(h)


@pytest.mark.parametrize("mode", ["scale", "noisy"])
def test_transformed_kernel_widened_net2net_is_exact(mode):
    old_m, new_m = TwoLayers(4, mode), TwoLayers(6, mode)
    old, out, plan = _plan(old_m, new_m, (OBS,), **jsurgery.PRESERVING)
    assert _gap(old_m, new_m, old, out, plan, OBS) < 1e-5
    assert not [w for w in plan.warnings if "attention" in w]


def test_transformed_kernel_widened_with_hidden_ids_is_exact():
    old_m, new_m = TwoLayers(4, "noisy"), TwoLayers(6, "noisy")
    hidden = {"torso": ([0, 1, 2, 3], [0, 1, 2, 3, 4, 5])}
    old, out, plan = _plan(old_m, new_m, (OBS,), hidden=hidden, **jsurgery.PRESERVING)
    assert _gap(old_m, new_m, old, out, plan, OBS) < 1e-5


def test_kernel_transform_not_followed_names_the_layer_not_attention():
    _, _, plan = _plan(TwoLayers(4, "tanh"), TwoLayers(6, "tanh"), (OBS,), **jsurgery.PRESERVING)
    (warning,) = [w for w in plan.warnings if "dot_general" in w]
    assert "Transformed.__call__" in warning and "kernel" in warning
    assert "attention" not in warning


# -- 4. leaves the surgery does not touch --------------------------------------------------------
class Torso(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(self.width)(x)))


def _normalised(width):
    """Brax-style: the params beside a running normaliser whose epsilon is a Python float."""
    module = Torso(width)

    def apply(tree, x):
        norm = tree["norm"]
        return module.apply(
            {"params": tree["params"]}, (x - norm["mean"]) / (norm["std"] + norm["std_eps"])
        )

    params = module.init(jax.random.key(width), OBS)["params"]
    stats = {"mean": jnp.full(3, 0.5), "std": jnp.full(3, 2.0), "std_eps": 1e-8}
    return {"params": params, "norm": stats}, apply


@pytest.mark.parametrize("width", [4, 6])
def test_float_leaf_is_kept_and_the_plan_is_exact(width):
    old, old_apply = _normalised(4)
    new, new_apply = _normalised(width)
    plan = jsurgery.make_plan(
        old, new, apply=(old_apply, new_apply), example=((OBS,), (OBS,)), **jsurgery.PRESERVING
    )
    out = jsurgery.transplant(old, new, plan)
    assert type(out["norm"]["std_eps"]) is float and out["norm"]["std_eps"] == 1e-8
    np.testing.assert_allclose(new_apply(out, OBS), old_apply(old, OBS), atol=1e-5)


class Positional(nn.Module):
    """Token embeddings plus a sinusoidal table built inside the function with `.at[].set`."""

    vocab: int
    d_model: int

    @nn.compact
    def __call__(self, tokens):
        length = tokens.shape[1]
        pos = jnp.arange(length, dtype=jnp.float32)[:, None]
        rate = -float(np.log(1e4)) / self.d_model
        div = jnp.exp(jnp.arange(0, self.d_model, 2, dtype=jnp.float32) * rate)
        pe = jnp.zeros((length, self.d_model))
        pe = pe.at[:, 0::2].set(jnp.sin(pos * div)).at[:, 1::2].set(jnp.cos(pos * div))
        return nn.Dense(3)(nn.relu(nn.Embed(self.vocab, self.d_model)(tokens) + pe))


def test_constant_positional_table_vocabulary_grown_is_exact():
    old_m, new_m = Positional(3, 4), Positional(4, 4)
    ids = (["a", "b", "c"], ["c", "a", "new", "b"])
    old, out, plan = _plan(old_m, new_m, (TOKENS,), inputs=ids, **jsurgery.PRESERVING)
    assert _gap(old_m, new_m, old, out, plan, TOKENS) < 1e-5


def test_constant_positional_table_d_model_changed_is_warned():
    old_m, new_m = Positional(3, 4), Positional(3, 6)
    old, out, plan = _plan(old_m, new_m, (TOKENS,), **jsurgery.PRESERVING)
    (warning,) = [w for w in plan.warnings if "constant" in w]
    assert "scatter" in warning and "Positional.__call__" in warning
    assert _gap(old_m, new_m, old, out, plan, TOKENS) > 1e-3  # what the warning warns of
