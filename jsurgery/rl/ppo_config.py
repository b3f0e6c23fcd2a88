"""The PPO configuration: one frozen dataclass, checked when it is made."""

from __future__ import annotations

import dataclasses
from typing import Any

from jsurgery.rl.config import check_periods

__all__ = ["PPOConfig"]

ACTIVATIONS = ("tanh", "relu")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Everything a PPO run needs besides the environment and the key.

    Steps are environment steps of one seed. An iteration collects ``num_steps`` steps in each of
    ``num_envs`` environments (``num_envs * num_steps`` steps, one learning-curve point), computes
    advantages with GAE, then takes ``num_epochs`` passes over the batch in ``num_minibatches``
    shuffled minibatches, one gradient step each. The greedy policy (the most probable action, or
    the Gaussian's mean) is evaluated at step 0 and every ``eval_every`` steps.

    Attributes:
        hidden: hidden-layer widths of the actor and of the critic (two separate MLPs).
        activation: ``"tanh"`` or ``"relu"`` after each hidden layer.
        layer_norm: layer normalisation after each hidden layer, before its activation.
        learning_rate: Adam step size (at step 0, when ``learning_rate_end`` is set).
        learning_rate_end: if set, the step size falls linearly to this value at ``total_steps``.
        num_envs: environments per seed.
        num_steps: steps per environment in each iteration's rollout.
        num_epochs: passes over each rollout.
        num_minibatches: minibatches per pass; ``num_envs * num_steps`` must be a multiple.
        gamma: discount.
        gae_lambda: the GAE lambda.
        clip_eps: the probability-ratio clip of the policy loss (and of the value change, when
            ``clip_value``).
        clip_value: clip the value function's change as the policy's (PPO2, purejaxrl).
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        max_grad_norm: gradients are clipped to this global norm.
        reward_scale: rewards are multiplied by this before advantages are computed.
        log_std_init: the Gaussian policy's starting ``log_std`` (continuous actions); it is a
            learned parameter, one per action dimension, independent of the observation.
        total_steps: steps per seed; a multiple of ``eval_every``.
        eval_every: steps between greedy evaluations; a multiple of ``num_envs * num_steps``.
        eval_episodes: episodes per greedy evaluation.
    """

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    layer_norm: bool = False
    learning_rate: float = 2.5e-4
    learning_rate_end: float | None = 0.0
    num_envs: int = 4
    num_steps: int = 128
    num_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    clip_value: bool = True
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0
    log_std_init: float = 0.0
    total_steps: int = 51_200
    eval_every: int = 5_120
    eval_episodes: int = 10

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))
        positive = (
            "num_envs", "num_steps", "num_epochs", "num_minibatches", "total_steps", "eval_every",
            "eval_episodes",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}`: expected a positive integer, got {value!r}")
        if any(width <= 0 for width in self.hidden):
            raise ValueError(f"`hidden`: widths must be positive, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation`: expected one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}`: expected a value in [0, 1], got {getattr(self, name)}")
        for name in ("clip_eps", "max_grad_norm", "reward_scale"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"`{name}`: expected a positive value, got {getattr(self, name)}")
        if self.batch_steps % self.num_minibatches:
            raise ValueError(
                f"`num_minibatches`: {self.num_minibatches} does not divide num_envs * num_steps "
                f"= {self.batch_steps}"
            )
        check_periods(self, "num_envs * num_steps")

    @property
    def batch_steps(self) -> int:
        """Transitions in one iteration's rollout."""
        return self.num_envs * self.num_steps

    @property
    def block_steps(self) -> int:
        """Steps per seed in one iteration (one learning-curve point)."""
        return self.batch_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_steps // self.num_minibatches

    @property
    def num_evals(self) -> int:
        """Greedy evaluations in a run, the one at step 0 included."""
        return self.total_steps // self.eval_every + 1

    @property
    def num_blocks(self) -> int:
        """Learning-curve points (iterations) in a run."""
        return self.total_steps // self.block_steps

    def replace(self, **changes: Any) -> PPOConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> PPOConfig:
        return cls(**{**fields, "hidden": tuple(fields["hidden"])})
