"""Check a preset against its target: ``python -m jsurgery.rl.verify NAME [--seeds 20]``.

Each check trains the preset on its environment view and prints the mean greedy-return curve and
the final greedy return of every seed. ``python -m jsurgery.rl.verify --list`` names the checks.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_presets import acrobot_ppo_config, cartpole_ppo_config, pendulum_ppo_config
from jsurgery.rl.presets import (
    acrobot_config,
    cartpole_config,
    lunar_lander_config,
    small_acrobot_config,
    small_cartpole_config,
)
from jsurgery.rl.runner import train_seeds

CHECKS: dict[str, tuple[Callable[[], DQNConfig | PPOConfig], Callable[[], IdEnv], str]] = {
    "cartpole": (cartpole_config, lambda: make_env("CartPole-v1"), ">= 475 in 19 of 20 seeds"),
    "acrobot": (acrobot_config, lambda: make_env("Acrobot-v1"), "mean >= -90"),
    "lunarlander": (lunar_lander_config, lambda: make_env("LunarLander-v3"), "mean >= 200"),
    "small-cartpole-16": (
        small_cartpole_config,
        lambda: make_env("CartPole-v1", obs=["x_dot", "theta"]),
        "above the step-0 return",
    ),
    "small-cartpole-4-4": (
        lambda: small_cartpole_config(hidden=(4, 4)),
        lambda: make_env("CartPole-v1"),
        "above the step-0 return",
    ),
    "small-cartpole-8": (
        lambda: small_cartpole_config(hidden=(8,)),
        lambda: make_env("CartPole-v1"),
        "above the step-0 return",
    ),
    "small-acrobot": (
        small_acrobot_config,
        lambda: make_env("Acrobot-v1", actions=["torque+1", "noop"]),
        "above the step-0 return",
    ),
    "ppo-cartpole": (cartpole_ppo_config, lambda: make_env("CartPole-v1"), "mean >= 475"),
    "ppo-acrobot": (acrobot_ppo_config, lambda: make_env("Acrobot-v1"), "mean >= -100"),
    "ppo-pendulum": (pendulum_ppo_config, lambda: make_env("Pendulum-v1"), "mean >= -250"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(CHECKS))
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from this one on (default 0)"
    )
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for name, (_, env, target) in CHECKS.items():
            print(f"{name}: {env()} target: {target}")
        return
    make_config, make_view, target = CHECKS[args.name]
    config, env = make_config(), make_view()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    result = train_seeds(config, env, seeds)
    evals = result.metrics["eval_return"]
    final = evals[:, -1]
    np.set_printoptions(linewidth=120, precision=1, suppress=True)
    print(f"{args.name}: {env}, seeds {seeds.start}..{seeds.stop - 1}\n{config}")
    print(f"steps           {result.metrics['eval_steps'][0]}")
    print(f"mean greedy     {evals.mean(axis=0)}")
    print(f"final per seed  {final}")
    print(
        f"final mean {final.mean():.1f}, min {final.min():.1f}, max {final.max():.1f}; "
        f">= 475: {(final >= 475).sum()} of {final.size}; target: {target}"
    )
    print(
        f"{result.steps_per_second:,.0f} steps/s over all seeds; "
        f"compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
