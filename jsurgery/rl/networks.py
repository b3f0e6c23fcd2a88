"""The Q-network: a plain MLP whose layers the surgery core finds by name."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

__all__ = ["QNetwork"]


class QNetwork(nn.Module):
    """An MLP from observations to one Q-value per action.

    Hidden layers are ReLU ``Dense`` layers, the output layer is linear. Parameters are named
    ``{"params": {"Dense_0": ..., "Dense_1": ..., ...}}`` with ``Dense_{len(hidden)}`` the output.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = QNetwork(hidden=(16,), num_actions=2)
        >>> params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
        >>> sorted(params["params"]), params["params"]["Dense_0"]["kernel"].shape
        (['Dense_0', 'Dense_1'], (4, 16))
    """

    hidden: Sequence[int] = (64, 64)
    num_actions: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)
