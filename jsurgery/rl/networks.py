"""The Q-network: a plain MLP whose layers the surgery core finds by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import flax.linen as nn
import jax

if TYPE_CHECKING:
    from jsurgery.rl.config import DQNConfig

__all__ = ["QNetwork"]


class QNetwork(nn.Module):
    """An MLP from observations to one Q-value per action.

    Hidden layers are ReLU ``Dense`` layers, the output layer is linear. Parameters are named
    ``{"params": {"Dense_0": ..., "Dense_1": ..., ...}}`` with ``Dense_{len(hidden)}`` the output.
    With ``layer_norm``, each hidden ``Dense_i`` is followed by ``LayerNorm_i`` before the ReLU
    (layer normalisation keeps temporal-difference learning stable; Gallici et al., 2024,
    "Simplifying Deep Temporal Difference Learning").

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = QNetwork(hidden=(16,), num_actions=2)
        >>> params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
        >>> sorted(params["params"]), params["params"]["Dense_0"]["kernel"].shape
        (['Dense_0', 'Dense_1'], (4, 16))
        >>> net = QNetwork(hidden=(16,), num_actions=2, layer_norm=True)
        >>> sorted(net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"])
        ['Dense_0', 'Dense_1', 'LayerNorm_0']
    """

    hidden: Sequence[int] = (64, 64)
    num_actions: int = 2
    layer_norm: bool = False

    @classmethod
    def for_config(cls, config: DQNConfig, num_actions: int) -> QNetwork:
        """The network a :class:`~jsurgery.rl.DQNConfig` describes, with ``num_actions`` outputs."""
        return cls(hidden=config.hidden, num_actions=num_actions, layer_norm=config.layer_norm)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return nn.Dense(self.num_actions)(x)
