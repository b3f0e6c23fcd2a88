"""The DQN configuration: one frozen dataclass, checked when it is made."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["DQNConfig"]


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Everything a DQN run needs besides the environment and the key.

    Steps are environment steps of one seed (``num_envs`` environments each add one per iteration).
    An iteration steps all ``num_envs`` environments once; every ``train_freq`` iterations (a block
    of ``train_freq * num_envs`` steps) the agent takes ``gradient_steps`` gradient steps, once more
    than ``learning_starts`` steps are in the buffer. The learning curve gets one point per block
    and the greedy policy is evaluated at step 0 and every ``eval_every`` steps.

    Attributes:
        hidden: hidden-layer widths of the Q-network.
        layer_norm: layer normalisation after each hidden layer, before its ReLU.
        learning_rate: Adam step size (at step 0, when ``learning_rate_end`` is set).
        learning_rate_end: if set, the step size falls linearly to this value at ``total_steps``.
        buffer_size: replay capacity in transitions.
        batch_size: transitions per gradient step.
        gamma: discount.
        n_step: rewards summed before bootstrapping (n-step returns; 1 is plain DQN). A return
            stops early at the end of an episode.
        target_update_interval: steps between target updates.
        tau: target update ``target <- tau * online + (1 - tau) * target``; 1.0 is a hard copy.
        exploration_start: epsilon at step 0 (set it low when continuing from a trained network).
        exploration_end: epsilon after ``exploration_fraction * total_steps`` steps.
        exploration_fraction: fraction of the run over which epsilon falls linearly.
        train_freq: iterations between training phases.
        gradient_steps: gradient steps per training phase.
        learning_starts: steps collected before the first gradient step.
        num_envs: environments per seed.
        total_steps: steps per seed; a multiple of ``eval_every``.
        eval_every: steps between greedy evaluations; a multiple of ``train_freq * num_envs``.
        eval_episodes: episodes per greedy evaluation.
        double_dqn: pick next actions with the online network (Double DQN).
        max_grad_norm: gradients are clipped to this global norm.
    """

    hidden: tuple[int, ...] = (64, 64)
    layer_norm: bool = False
    learning_rate: float = 1e-3
    learning_rate_end: float | None = None
    buffer_size: int = 50_000
    batch_size: int = 64
    gamma: float = 0.99
    n_step: int = 1
    target_update_interval: int = 500
    tau: float = 1.0
    exploration_start: float = 1.0
    exploration_end: float = 0.05
    exploration_fraction: float = 0.1
    train_freq: int = 4
    gradient_steps: int = 1
    learning_starts: int = 1_000
    num_envs: int = 1
    total_steps: int = 50_000
    eval_every: int = 5_000
    eval_episodes: int = 10
    double_dqn: bool = False
    max_grad_norm: float = 10.0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))
        positive = (
            "buffer_size", "batch_size", "n_step", "target_update_interval", "train_freq",
            "gradient_steps", "num_envs", "total_steps", "eval_every", "eval_episodes",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}`: expected a positive integer, got {value!r}")
        if any(width <= 0 for width in self.hidden):
            raise ValueError(f"`hidden`: widths must be positive, got {self.hidden}")
        if self.learning_starts < 0:
            raise ValueError(f"`learning_starts`: expected >= 0, got {self.learning_starts}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"`tau`: expected 0 < tau <= 1, got {self.tau}")
        for name in ("exploration_start", "exploration_end", "exploration_fraction", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"`{name}`: expected a number in [0, 1], got {getattr(self, name)}"
                )
        for name in ("learning_rate", "max_grad_norm"):
            if not 0.0 < getattr(self, name) < float("inf"):
                raise ValueError(f"`{name}`: expected a positive number, got {getattr(self, name)}")
        if self.learning_rate_end is not None and not 0.0 <= self.learning_rate_end < float("inf"):
            raise ValueError(
                f"`learning_rate_end`: expected a number >= 0 or None, got {self.learning_rate_end}"
            )
        check_periods(self, "train_freq * num_envs")

    @property
    def block_steps(self) -> int:
        """Steps per seed between two training phases (one learning-curve point)."""
        return self.train_freq * self.num_envs

    @property
    def num_evals(self) -> int:
        """Greedy evaluations in a run, the one at step 0 included."""
        return self.total_steps // self.eval_every + 1

    @property
    def num_blocks(self) -> int:
        """Learning-curve points in a run."""
        return self.total_steps // self.block_steps

    def replace(self, **changes: Any) -> DQNConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> DQNConfig:
        return cls(**{**fields, "hidden": tuple(fields["hidden"])})


def check_periods(config: Any, block_name: str) -> None:
    """Refuses an ``eval_every`` that is not a multiple of ``config.block_steps`` (named
    ``block_name`` in the message) and a ``total_steps`` that is not a multiple of
    ``eval_every``, each with a value that would do; shared by the DQN's and PPO's configs."""
    block = config.block_steps
    if config.eval_every % block:
        raise ValueError(
            f"`eval_every`: {config.eval_every} is not a multiple of {block_name} = {block}; use "
            f"e.g. eval_every={max(block, config.eval_every // block * block)}"
        )
    if config.total_steps % config.eval_every:
        raise ValueError(
            f"`total_steps`: {config.total_steps} is not a multiple of eval_every = "
            f"{config.eval_every}; use e.g. total_steps="
            f"{-(-config.total_steps // config.eval_every) * config.eval_every}"
        )
