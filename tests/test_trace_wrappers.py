"""The tracer sees through functions wrapped by custom derivatives and rematerialisation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery


@jax.custom_vjp
def clipped_relu(x):
    return jnp.clip(x, 0.0, 6.0)


def _fwd(x):
    return clipped_relu(x), x


def _bwd(x, g):
    return (g * ((x > 0) & (x < 6)),)


clipped_relu.defvjp(_fwd, _bwd)


class Wrapped(nn.Module):
    """A two-layer MLP whose hidden block is wrapped: custom_vjp activation, `jax.checkpoint`
    (remat) around the hidden Dense, or flax's `nn.remat` on a sub-module."""

    width: int
    wrap: str

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width)(x)
        if self.wrap == "custom_vjp":
            h = clipped_relu(h)
        elif self.wrap == "checkpoint":
            kernel = self.param("square", nn.initializers.lecun_normal(), (self.width, self.width))
            h = jax.checkpoint(lambda a, k: nn.relu(a @ k))(h, kernel)
        else:
            h = nn.remat(nn.Dense)(self.width)(nn.relu(h))
        return nn.Dense(3)(nn.relu(h))


@pytest.mark.parametrize("wrap", ["custom_vjp", "checkpoint", "nn.remat"])
def test_wrapped_blocks_are_widened_and_given_new_inputs_exactly(wrap):
    old_m, new_m = Wrapped(4, wrap), Wrapped(7, wrap)
    x_old = jax.random.normal(jax.random.key(0), (6, 2))
    x_new = jnp.zeros((6, 3))
    old = old_m.init(jax.random.key(1), x_old)
    new = new_m.init(jax.random.key(2), x_new)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((x_old,), (x_new,)),
        inputs=(["a", "b"], ["a", "n", "b"]),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(
        new_m.apply(out, plan.embed_inputs(x_old)), old_m.apply(old, x_old), atol=1e-5
    )
    first = np.asarray(out["params"]["Dense_0"]["kernel"])
    old_first = np.asarray(old["params"]["Dense_0"]["kernel"])
    # new input "n" reads nothing; new hidden units 4, 5, 6 replicate units 0, 1, 2
    np.testing.assert_array_equal(first[1], 0.0)
    np.testing.assert_array_equal(first[[0, 2]][:, [4, 5, 6]], old_first[:, [0, 1, 2]])
