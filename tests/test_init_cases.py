"""Init rules where a start that looks exact is not: an identity-started layer inserted before an
activation that is not idempotent, and a pessimistic start of a new token through tied input and
output embeddings.

Each case is judged by forward passes of the old and new networks, with the expected values
computed here from the old network's outputs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import apply_fn, rand, randomise_biases

import jsurgery

ACTIVATIONS = {"tanh": nn.tanh, "gelu": nn.gelu, "relu": nn.relu}


class ActorTorso(nn.Module):
    """purejaxrl's actor: Dense -> activation per hidden layer, then the logits."""

    hidden: int
    activation: str
    out: int = 3

    @nn.compact
    def __call__(self, x):
        for i in range(self.hidden):
            x = ACTIVATIONS[self.activation](nn.Dense(8, name=f"hidden_{i}")(x))
        return nn.Dense(self.out, name="logits")(x)


def _inserted_plan(activation: str, traced: bool):
    """A third hidden layer inserted into a two-layer torso under PRESERVING: the old and new
    models, the old variables, the plan and the transplanted new variables."""
    old_m, new_m = ActorTorso(2, activation), ActorTorso(3, activation)
    x = jnp.ones((1, 4))
    old = randomise_biases(_init(old_m, 0), 1)
    template = _init(new_m, 2)
    traced_args = dict(apply=(old_m.apply, new_m.apply), example=((x,), (x,)))
    plan = jsurgery.make_plan(
        old, template, **(traced_args if traced else {}), **jsurgery.PRESERVING
    )
    return old_m, new_m, old, plan, jsurgery.transplant(old, template, plan)


def _init(model, seed: int):
    return jax.jit(model.init)(jax.random.key(seed), jnp.ones((1, 4)))


def _moved(old_m, new_m, old, new) -> float:
    """The largest change of the outputs on random inputs of either sign."""
    x = 2.0 * rand((64, 4), 7)
    return float(np.abs(apply_fn(old_m)(old, x) - apply_fn(new_m)(new, x)).max())


def _about_inserted(plan) -> list:
    return [w for w in plan.warnings if "hidden_2" in w]


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_identity_layer_before_a_non_idempotent_activation_is_warned_with_its_name(activation):
    old_m, new_m, old, plan, new = _inserted_plan(activation, traced=True)
    assert _moved(old_m, new_m, old, new) > 1e-2  # tanh(tanh(h)) != tanh(h): the warning is true
    (warning,) = _about_inserted(plan)
    assert "hidden_2/kernel" in warning and activation in warning
    assert "not exact" in warning
    assert "residual" in warning and "zero_fanout" in warning


def test_identity_layer_before_relu_is_exact_and_not_warned():
    old_m, new_m, old, plan, new = _inserted_plan("relu", traced=True)
    assert _moved(old_m, new_m, old, new) < 1e-5
    assert _about_inserted(plan) == []


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_params_only_identity_layer_says_it_is_exact_only_before_an_idempotent_activation(
    activation,
):
    _, _, _, plan, _ = _inserted_plan(activation, traced=False)
    (warning,) = _about_inserted(plan)
    assert "hidden_2/kernel" in warning and "idempotent" in warning and "relu" in warning
    assert "linear" in warning and "apply=" in warning


def test_identity_conv_and_linear_layers_stay_unwarned():
    """A Dirac conv before a ReLU and a Dense layer before the (linear) output are exact."""

    class Stack(nn.Module):
        convs: int

        @nn.compact
        def __call__(self, x):
            for i in range(self.convs):
                x = nn.relu(nn.Conv(4, (3, 3), name=f"conv_{i}")(x))
            x = nn.Dense(5, name="last")(x.reshape(x.shape[0], -1))
            return x

    old_m, new_m = Stack(1), Stack(2)
    x = jnp.ones((1, 3, 3, 2))
    old = randomise_biases(jax.jit(old_m.init)(jax.random.key(0), x), 1)
    template = jax.jit(new_m.init)(jax.random.key(2), x)
    plan = jsurgery.make_plan(
        old, template, apply=(old_m.apply, new_m.apply), example=((x,), (x,)), **jsurgery.PRESERVING
    )
    new = jsurgery.transplant(old, template, plan)
    xs = rand((16, 3, 3, 2), 3)
    np.testing.assert_allclose(apply_fn(new_m)(new, xs), apply_fn(old_m)(old, xs), atol=1e-5)
    assert [w for w in plan.warnings if "conv_1" in w] == []


# Tied input and output embeddings.

OLD_VOCAB = ["a", "b", "c", "d", "e"]
NEW_VOCAB = ["a", "b", "z", "c", "d", "e"]


class TiedLM(nn.Module):
    """Tokens embedded by `Embed`, the logits read through the same table (`Embed.attend`)."""

    vocab: int

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(self.vocab, 6, name="embed")
        h = nn.tanh(nn.Dense(6, name="mix")(embed(tokens)))
        return embed.attend(h)


def _tied(new_outputs):
    old_m, new_m = TiedLM(len(OLD_VOCAB)), TiedLM(len(NEW_VOCAB))
    tokens = jnp.zeros((1, 3), jnp.int32)
    old = randomise_biases(jax.jit(old_m.init)(jax.random.key(0), tokens), 1)
    template = jax.jit(new_m.init)(jax.random.key(1), tokens)
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((tokens,), (tokens,)),
        inputs=(OLD_VOCAB, NEW_VOCAB),
        outputs=(OLD_VOCAB, NEW_VOCAB),
        **{**jsurgery.PRESERVING, "new_outputs": new_outputs},
    )
    new = jsurgery.transplant(old, template, plan)
    rng = np.random.default_rng(4)
    old_tokens = rng.integers(0, len(OLD_VOCAB), (16, 3))
    to_new = np.asarray([NEW_VOCAB.index(t) for t in OLD_VOCAB])
    y_old = np.asarray(apply_fn(old_m)(old, old_tokens), np.float64)
    y_new = np.asarray(apply_fn(new_m)(new, to_new[old_tokens]), np.float64)
    return plan, y_old, y_new, to_new


@pytest.mark.parametrize("new_outputs", ["pessimistic", "mean"])
def test_tied_embedding_new_token_starts_at_the_mean_of_the_old_logits(new_outputs):
    plan, y_old, y_new, to_new = _tied(new_outputs)
    np.testing.assert_allclose(y_new[..., to_new], y_old, atol=1e-5)  # old tokens: old logits
    new_token = NEW_VOCAB.index("z")
    np.testing.assert_allclose(y_new[..., new_token], y_old.mean(-1), atol=1e-5)
    (line,) = [row for row in str(plan).splitlines() if row.strip().startswith("params/embed")]
    assert "1 new (mean)" in line and "pessimistic" not in line


def test_tied_embedding_pessimistic_start_is_warned_and_settled_by_mean_or_a_copy():
    plan, *_ = _tied("pessimistic")
    (warning,) = [w for w in plan.warnings if "margin" in w]
    assert "embed/embedding" in warning and "'z'" in warning and "mean" in warning
    assert "new_outputs" in warning and "bias" in warning


def test_tied_embedding_per_id_copy_gives_the_copied_tokens_logit():
    old_m, new_m = TiedLM(len(OLD_VOCAB)), TiedLM(len(NEW_VOCAB))
    tokens = jnp.zeros((1, 3), jnp.int32)
    old = jax.jit(old_m.init)(jax.random.key(0), tokens)
    template = jax.jit(new_m.init)(jax.random.key(1), tokens)
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((tokens,), (tokens,)),
        inputs=(OLD_VOCAB, NEW_VOCAB),
        outputs=(OLD_VOCAB, NEW_VOCAB),
        **{**jsurgery.PRESERVING, "new_outputs": {"z": "c"}},
    )
    new = jsurgery.transplant(old, template, plan)
    old_tokens = np.asarray([[0, 1, 4], [3, 2, 2]])
    to_new = np.asarray([NEW_VOCAB.index(t) for t in OLD_VOCAB])
    y_old = np.asarray(apply_fn(old_m)(old, old_tokens))
    y_new = np.asarray(apply_fn(new_m)(new, to_new[old_tokens]))
    np.testing.assert_allclose(y_new[..., to_new], y_old, atol=1e-5)
    np.testing.assert_allclose(y_new[..., NEW_VOCAB.index("z")], y_old[..., 2], atol=1e-5)


def test_pessimistic_output_of_a_layer_without_bias_starts_at_the_mean_and_is_warned():
    """An output layer without a bias cannot be lowered by the margin either."""

    class NoBiasHead(nn.Module):
        out: int

        @nn.compact
        def __call__(self, x):
            return nn.Dense(self.out, use_bias=False, name="head")(nn.relu(nn.Dense(5)(x)))

    old_m, new_m = NoBiasHead(2), NoBiasHead(3)
    x = jnp.ones((1, 4))
    old = randomise_biases(_init(old_m, 0), 1)
    template = _init(new_m, 2)
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((x,), (x,)),
        outputs=(["l", "r"], ["l", "n", "r"]),
        **jsurgery.PRESERVING,
    )
    new = jsurgery.transplant(old, template, plan)
    xs = rand((16, 4), 5)
    y_old = np.asarray(apply_fn(old_m)(old, xs), np.float64)
    y_new = np.asarray(apply_fn(new_m)(new, xs), np.float64)
    np.testing.assert_allclose(y_new[:, [0, 2]], y_old, atol=1e-5)
    np.testing.assert_allclose(y_new[:, 1], y_old.mean(-1), atol=1e-5)
    (warning,) = [w for w in plan.warnings if "margin" in w]
    assert "head/kernel" in warning and "'n'" in warning
