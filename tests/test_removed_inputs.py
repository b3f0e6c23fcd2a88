"""Inputs removed with `removed_inputs={old_id: value}`: the new network on the kept inputs
computes what the old one computed with the removed inputs held at their values. Judged by
running both networks on inputs written here; refusals name what is wrong."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from surgery_models import MLP, apply_fn, rand

import jsurgery
from jsurgery.execute import gather

OLD_IDS = ["x", "x_dot", "theta", "theta_dot", "wind", "mass"]
NEW_IDS = ["theta", "x", "theta_dot", "x_dot"]  # permuted, and without "wind" and "mass"
KEPT = [2, 0, 3, 1]  # the old position of each new input
HELD = {"wind": 0.0, "mass": 1.5}


def _random(model, shape: tuple, seed: int):
    """Variables of `model` for inputs of `shape`, every leaf (biases too) drawn at random."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones(shape))
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


MODEL = MLP((16,), 3)
OLD, NEW = _random(MODEL, (1, 6), 0), _random(MODEL, (1, 4), 1)
TRACED = dict(
    apply=MODEL.apply,
    example=((jnp.ones((2, 6)),), (jnp.ones((2, 4)),)),
    inputs=(OLD_IDS, NEW_IDS),
)


def _old_inputs(n: int, seed: int, wind: float = 0.0, mass: float = 1.5) -> np.ndarray:
    """Random old inputs with the removed ones set: wind (column 4) and mass (column 5)."""
    x = rand((n, 6), seed)
    x[:, 4], x[:, 5] = wind, mass
    return x


def _close(a, b) -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


@pytest.fixture(scope="module")
def traced_plan():
    return jsurgery.make_plan(OLD, NEW, **TRACED, removed_inputs=HELD, **jsurgery.PRESERVING)


def test_the_new_network_on_the_kept_inputs_is_the_old_one_with_removed_inputs_held(traced_plan):
    out = jsurgery.transplant(OLD, NEW, traced_plan)
    x = _old_inputs(32, 1)
    x_free = rand((32, 6), 9)  # the removed inputs anywhere: check_preservation holds them
    y_old, y_new = apply_fn(MODEL)(OLD, x), apply_fn(MODEL)(out, x[:, KEPT])
    _close(y_old, y_new)
    moved = np.asarray(apply_fn(MODEL)(OLD, _old_inputs(32, 1, mass=0.0)))
    assert np.abs(moved - np.asarray(y_new)).max() > 1e-2  # the held value is what matters
    report = jsurgery.check_preservation(MODEL.apply, OLD, MODEL.apply, out, x_free, traced_plan)
    assert report.promises and not report.broken  # the old network ran with them held


def test_the_plan_promises_exact_with_the_removed_inputs_held_and_prints_the_fold(traced_plan):
    text = str(traced_plan)
    assert "with the removed inputs held at their values" in text
    assert "'mass' = 1.5" in text and "'wind' = 0" in text
    assert "fold" in text and "params/Dense_0/kernel" in text
    assert traced_plan.verified.startswith("verified")
    assert not [w for w in traced_plan.warnings if "dropped" in w]


def test_a_wrong_fold_is_caught_by_verification(monkeypatch):
    """Verification runs the old network with the removed inputs held: a fold that used
    another value (or none) breaks the exact promise, and make_plan refuses the plan."""
    right = gather.folded
    monkeypatch.setattr(gather, "folded", lambda old, folds, leaves: old)
    with pytest.raises(jsurgery.PlanError, match="differs"):
        jsurgery.make_plan(OLD, NEW, **TRACED, removed_inputs=HELD, **jsurgery.PRESERVING)
    twice = lambda old, folds, leaves: right(right(old, folds, leaves), folds, leaves)  # noqa: E731
    monkeypatch.setattr(gather, "folded", twice)
    with pytest.raises(jsurgery.PlanError, match="differs"):
        jsurgery.make_plan(OLD, NEW, **TRACED, removed_inputs=HELD, **jsurgery.PRESERVING)


def test_the_params_only_path_folds_into_the_first_dense_layer():
    plan = jsurgery.make_plan(OLD, NEW, inputs=(OLD_IDS, NEW_IDS), removed_inputs=HELD)
    out = jsurgery.transplant(OLD, NEW, plan)
    x = _old_inputs(32, 2)
    _close(apply_fn(MODEL)(OLD, x), apply_fn(MODEL)(out, x[:, KEPT]))
    assert "with the removed inputs held at their values" in str(plan)


def test_without_removed_inputs_the_outputs_move_and_the_plan_says_so():
    plan = jsurgery.make_plan(OLD, NEW, inputs=(OLD_IDS, NEW_IDS))
    (warning,) = [w for w in plan.warnings if "dropped" in w]
    assert "'wind'" in warning and "'mass'" in warning


class ActorCritic(nn.Module):
    """Two heads, each with its own first layer reading the observation: the critic's a
    DenseGeneral (kernel `(in, 2, 4)`, bias `(2, 4)`)."""

    actor_width: int

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.actor_width, name="actor_in")(x))
        actor = nn.Dense(3, name="actor_out")(h)
        h = nn.relu(nn.DenseGeneral((2, 4), name="critic_in")(x)).reshape(*x.shape[:-1], 8)
        return actor, nn.Dense(1, name="critic_out")(h)


def test_an_actor_critic_folds_into_both_first_layers_and_net2net_copies_the_folded_bias():
    old_m, new_m = ActorCritic(8), ActorCritic(12)
    old, new = _random(old_m, (1, 6), 2), _random(new_m, (1, 4), 3)
    kw = dict(TRACED, apply=(old_m.apply, new_m.apply))
    plan = jsurgery.make_plan(old, new, **kw, removed_inputs=HELD, **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    x = _old_inputs(32, 4)
    ys = jax.jit(old_m.apply)(old, x), jax.jit(new_m.apply)(out, x[:, KEPT])
    for y_old, y_new in zip(*ys, strict=True):
        _close(y_old, y_new)
    for layer in ("actor_in", "critic_in"):
        kernel, bias = old["params"][layer]["kernel"], old["params"][layer]["bias"]
        want = bias + 1.5 * kernel[5]  # wind (row 4) is held at 0, mass (row 5) at 1.5
        got = out["params"][layer]
        np.testing.assert_allclose(got["bias"][..., : bias.shape[-1]], want, rtol=1e-6)
        np.testing.assert_array_equal(got["kernel"][..., : bias.shape[-1]], kernel[KEPT, ...])


class Frames(nn.Module):
    """A stack of frames flattened into one dense layer: feature r of frame j is row 6j + r."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(8)(x.reshape(*x.shape[:-2], -1)))
        return nn.Dense(2)(h)


def test_a_removed_feature_is_held_in_every_frame_of_a_flattened_stack():
    model = Frames()
    old, new = _random(model, (1, 3, 6), 4), _random(model, (1, 3, 4), 5)
    example = ((jnp.ones((2, 3, 6)),), (jnp.ones((2, 3, 4)),))
    kw = dict(apply=model.apply, example=example, inputs=(OLD_IDS, NEW_IDS))
    plan = jsurgery.make_plan(old, new, **kw, removed_inputs=HELD)
    out = jsurgery.transplant(old, new, plan)
    x = rand((16, 3, 6), 6)
    x[..., 4], x[..., 5] = 0.0, 1.5
    apply = jax.jit(model.apply)
    _close(apply(old, x), apply(out, x[..., KEPT]))
    kernel = np.asarray(old["params"]["Dense_0"]["kernel"])
    want = old["params"]["Dense_0"]["bias"] + 1.5 * kernel[[5, 11, 17]].sum(axis=0)
    np.testing.assert_allclose(out["params"]["Dense_0"]["bias"], want, rtol=1e-6)


def test_adam_moments_of_a_folded_bias_are_kept():
    """The bias's gradient is the same with the input folded, so its moments carry over; the
    removed rows' moments go with the rows."""
    plan = jsurgery.make_plan(OLD, NEW, inputs=(OLD_IDS, NEW_IDS), removed_inputs=HELD)
    mu = jax.tree.map(lambda x: jnp.arange(x.size, dtype=x.dtype).reshape(x.shape), OLD)
    moved = jsurgery.transplant_moments(mu, NEW, plan)["params"]["Dense_0"]
    np.testing.assert_array_equal(moved["bias"], mu["params"]["Dense_0"]["bias"])
    want = np.asarray(mu["params"]["Dense_0"]["kernel"])[KEPT]
    np.testing.assert_array_equal(moved["kernel"], want)
    state = optax.adam(1e-3).init(OLD["params"])
    new_state = jsurgery.transplant_state(state, optax.adam(1e-3).init(NEW["params"]), plan)
    assert new_state[0].mu["Dense_0"]["kernel"].shape == (4, 16)


class Head(nn.Module):
    """One first layer on the observation, after `pre` (None: none), with or without a bias."""

    pre: str | None = None
    bias: bool = True

    @nn.compact
    def __call__(self, x):
        if self.pre == "tanh":
            x = jnp.tanh(x)
        elif self.pre == "norm":
            x = nn.LayerNorm()(x)
        elif self.pre == "concat":
            x = jnp.concatenate([x, x], axis=-1)
        h = nn.relu(nn.Dense(8, use_bias=self.bias)(x))
        return nn.Dense(3, use_bias=self.bias)(h)


def _shapes(model, shape: tuple):
    """The variables' shapes (no values: these plans are refused before any run)."""
    return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


def _head_plan(model, removed):
    return jsurgery.make_plan(
        _shapes(model, (1, 6)),
        _shapes(model, (1, 4)),
        apply=model.apply,
        example=(
            (jax.ShapeDtypeStruct((2, 6), jnp.float32),),
            (jax.ShapeDtypeStruct((2, 4), jnp.float32),),
        ),
        inputs=(OLD_IDS, NEW_IDS),
        removed_inputs=removed,
    )


@pytest.mark.parametrize(
    "model, words",
    [
        (Head(bias=False), ["Dense_0/kernel", "no bias", "give the layer a bias"]),
        (Head(pre="tanh"), ["tanh", "before"]),
        (Head(pre="norm"), ["LayerNorm_0", "before"]),
        (Head(pre="concat"), ["concatenate", "before"]),
    ],
    ids=["no-bias", "elementwise", "norm", "concat"],
)
def test_a_removed_input_that_does_not_reach_an_affine_first_layer_is_refused(model, words):
    with pytest.raises(jsurgery.PlanError) as info:
        _head_plan(model, HELD)
    message = str(info.value)
    for word in words + ["removed_inputs", "'wind'"]:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "removed, words",
    [
        ({"gravity": 1.0}, ["'gravity'", "not an old input"]),
        ({"wind": 0.0, "theta": 1.0}, ["'theta'", "still an input of the new network"]),
        ({"wind": float("nan")}, ["'wind'", "nan", "finite number"]),
        ({"wind": np.inf}, ["'wind'", "inf", "finite number"]),
        ({"wind": "calm"}, ["'wind'", "'calm'", "finite number"]),
        ({"wind": [0.0, 1.0]}, ["'wind'", "finite number"]),
        (["wind"], ["removed_inputs", "dict"]),
    ],
    ids=["unknown-id", "kept-id", "nan", "inf", "text", "list-value", "not-a-dict"],
)
def test_bad_removed_inputs_are_refused(removed, words):
    with pytest.raises(jsurgery.PlanError) as info:
        _head_plan(Head(), removed)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


class Conv(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Conv(4, (3, 3))(x).mean(axis=(1, 2))


def test_a_convolution_reading_a_removed_channel_is_refused():
    model = Conv()
    old, new = _shapes(model, (1, 5, 5, 3)), _shapes(model, (1, 5, 5, 2))
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(
            old,
            new,
            apply=model.apply,
            example=(
                (jax.ShapeDtypeStruct((1, 5, 5, 3), jnp.float32),),
                (jax.ShapeDtypeStruct((1, 5, 5, 2), jnp.float32),),
            ),
            inputs=(["r", "g", "b"], ["r", "g"]),
            removed_inputs={"b": 0.5},
        )
    for word in ("'b'", "Conv_0/kernel", "convolution", "border"):
        assert word in str(info.value), (word, str(info.value))
