"""The PPO network: an actor MLP and a critic MLP side by side, found by the surgery core by
name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jsurgery.rl.ppo_config import PPOConfig

__all__ = ["MLP", "ActorCritic", "orthogonal"]


def orthogonal(scale: float = 1.0) -> Callable:
    """A kernel initialiser of orthonormal rows or columns times ``scale``, drawn uniformly (the
    distribution of ``flax.linen.initializers.orthogonal``), for 2-D kernels.

    The orthonormal columns come from Gram-Schmidt (twice per column, for accuracy) on a Gaussian
    matrix in a ``lax.fori_loop`` rather than from LAPACK's QR: XLA's CPU runtime (jaxlib 0.10)
    can deadlock when a vmapped QR custom call runs beside the loops of a training run compiled
    into the same program.

    Example:
        >>> kernel = orthogonal(2.0)(jax.random.PRNGKey(0), (3, 5))
        >>> bool(jnp.allclose(kernel @ kernel.T, 4.0 * jnp.eye(3), atol=1e-5))
        True
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        rows, columns = shape
        tall = jax.random.normal(key, (max(rows, columns), min(rows, columns)), jnp.float32)

        def orthonormalise(j, basis):
            column = tall[:, j]
            for _ in range(2):
                column = column - basis @ (basis.T @ column)
            return basis.at[:, j].set(column / jnp.linalg.norm(column))

        basis = jax.lax.fori_loop(0, tall.shape[1], orthonormalise, jnp.zeros_like(tall))
        return (scale * (basis if rows >= columns else basis.T)).astype(dtype)

    return init


class MLP(nn.Module):
    """Hidden ``Dense`` layers (each optionally followed by ``LayerNorm``) with ``activation``, then
    a linear output layer of ``outputs`` units scaled at initialisation by ``output_scale``.

    Kernels start orthogonal (gain sqrt(2) for hidden layers, ``output_scale`` for the output) and
    biases at zero, as in cleanrl's and purejaxrl's PPO.
    """

    hidden: Sequence[int]
    outputs: int
    activation: str = "tanh"
    layer_norm: bool = False
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = {"tanh": jnp.tanh, "relu": nn.relu}[self.activation]
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=orthogonal(np.sqrt(2.0)))(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.outputs, kernel_init=orthogonal(self.output_scale))(x)


class ActorCritic(nn.Module):
    """The policy and the value function of PPO, as two MLPs of the same widths.

    ``__call__(obs) -> (policy, value)``: for discrete actions ``policy`` holds one logit per
    action; for continuous ones it is the Gaussian's mean per action dimension, and the Gaussian's
    ``log_std`` is the parameter ``params["log_std"]`` (one per dimension, independent of the
    observation). Parameters are named ``{"params": {"actor": {"Dense_0", ...}, "critic":
    {"Dense_0", ...}}}``, plus ``"log_std"`` for continuous actions.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ActorCritic(hidden=(16,), num_actions=2)
        >>> params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
        >>> sorted(params["params"]), params["params"]["actor"]["Dense_1"]["kernel"].shape
        (['actor', 'critic'], (16, 2))
        >>> logits, value = net.apply(params, jnp.zeros((3, 4)))
        >>> logits.shape, value.shape
        ((3, 2), (3,))
        >>> net = ActorCritic(hidden=(16,), num_actions=1, continuous=True)
        >>> net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))["params"]["log_std"].shape
        (1,)
    """

    hidden: Sequence[int] = (64, 64)
    num_actions: int = 2
    continuous: bool = False
    activation: str = "tanh"
    layer_norm: bool = False
    log_std_init: float = 0.0

    @classmethod
    def for_config(cls, config: PPOConfig, num_actions: int, continuous: bool) -> ActorCritic:
        """The network a :class:`~jsurgery.rl.PPOConfig` describes."""
        return cls(
            hidden=config.hidden,
            num_actions=num_actions,
            continuous=continuous,
            activation=config.activation,
            layer_norm=config.layer_norm,
            log_std_init=config.log_std_init,
        )

    def setup(self):
        shape = {"activation": self.activation, "layer_norm": self.layer_norm}
        self.actor = MLP(self.hidden, self.num_actions, output_scale=0.01, **shape)
        self.critic = MLP(self.hidden, 1, output_scale=1.0, **shape)
        if self.continuous:
            self.log_std = self.param(
                "log_std", nn.initializers.constant(self.log_std_init), (self.num_actions,)
            )

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.actor(obs), self.critic(obs)[..., 0]

    def value(self, obs: jax.Array) -> jax.Array:
        """The critic alone: ``apply(params, obs, method=ActorCritic.value)``."""
        return self.critic(obs)[..., 0]
