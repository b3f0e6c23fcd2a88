"""Throughput of jsurgery's DQN (many seeds, one compiled call) against stable-baselines3 (one).

Both run the same DQN configuration (network and its layer normalisation, optimizer and step-size
schedule, batch, replay ratio, target updates, exploration, n-step returns, steps) on CartPole-v1:
stable-baselines3 on one seed on the CPU as its users run it, jsurgery on ``--seeds`` seeds vmapped
in one compiled call. Reported: environment steps per second of each (all seeds counted for
jsurgery, compilation excluded), the ratio, and compile time alone. Then the arithmetic the gradient
steps need per environment step, the rate at which jsurgery's run did it, the rate 100 times stable-
baselines3's throughput would need, the rate this CPU multiplies large float32 matrices at (the
practical ceiling), and the rate of the DQN's own batched products run alone (the bound on the ratio
they allow).

    python benchmarks/dqn_vs_sb3.py                      # CartPole-v1 preset, 50k steps, 20 seeds
    python benchmarks/dqn_vs_sb3.py --sb3-steps 10000    # a shorter stable-baselines3 run

stable-baselines3 runs the whole preset by default, so both sides include the first
``learning_starts`` steps, which do not train.
stable-baselines3's DQN has no Double DQN: with ``double_dqn`` set, jsurgery does one more forward
pass per gradient step than stable-baselines3, which makes the ratio conservative.

Needs the ``bench`` extra (stable-baselines3, torch, gymnasium), which the package never imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _layer_norm_policy():
    """stable-baselines3's MLP policy with a LayerNorm after each hidden Linear, as jsurgery's."""
    from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
    from torch import nn

    class LayerNormQNetwork(QNetwork):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            layers, width = [], self.features_dim
            for hidden in self.net_arch:
                layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), self.activation_fn()]
                width = hidden
            self.q_net = nn.Sequential(*layers, nn.Linear(width, int(self.action_space.n)))

    class LayerNormDQNPolicy(DQNPolicy):
        def make_q_net(self):
            net_args = self._update_features_extractor(self.net_args, features_extractor=None)
            return LayerNormQNetwork(**net_args).to(self.device)

    return LayerNormDQNPolicy


def sb3_run(config, env_id: str, total_steps: int, seed: int = 0) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    env = gym.make(env_id)
    learning_rate = config.learning_rate
    if config.learning_rate_end is not None:  # linear in the fraction of the run still to go

        def learning_rate(remaining, start=config.learning_rate, end=config.learning_rate_end):
            return end + (start - end) * remaining

    model = DQN(
        _layer_norm_policy() if config.layer_norm else "MlpPolicy",
        env,
        learning_rate=learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        n_steps=config.n_step,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.exploration_fraction,
        exploration_initial_eps=config.exploration_start,
        exploration_final_eps=config.exploration_end,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": list(config.hidden), "activation_fn": torch.nn.ReLU},
        device="cpu",
        seed=seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    seconds = time.perf_counter() - start
    mean, _ = evaluate_policy(model, gym.make(env_id), n_eval_episodes=config.eval_episodes)
    return {
        "steps": total_steps,
        "seconds": seconds,
        "steps_per_second": total_steps / seconds,
        "final_eval_return": float(mean),
        "torch_threads": torch.get_num_threads(),
    }


def jsurgery_run(config, env_id: str, seeds: int) -> dict:
    import jax

    from jsurgery.rl import train_seeds

    result = train_seeds(config, env_id, seeds, progress=False)
    final = result.metrics["eval_return"][:, -1]
    return {
        "seeds": seeds,
        "steps_per_seed": config.total_steps,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "steps_per_second": result.steps_per_second,
        "final_eval_return_mean": float(final.mean()),
        "final_eval_return_min": float(final.min()),
        "final_eval_return": final.tolist(),
        "devices": [str(d) for d in jax.devices()],
    }


def gradient_flops_per_step(config, env_id: str) -> float:
    """Floating-point operations of the gradient steps per environment step (matrix products only).

    Per transition in a batch: a forward pass of the online network, its backward pass (about two
    forward passes: gradients of the weights and of the inputs), a forward pass of the target
    network on the next observation and, with Double DQN, one of the online network too.
    """
    from jsurgery.rl.environments import make_env

    env = make_env(env_id)
    widths = [len(env.obs_ids), *config.hidden, len(env.action_ids)]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    passes = 4 + int(config.double_dqn)
    per_gradient_step = 2 * macs * passes * config.batch_size
    return per_gradient_step * config.gradient_steps / (config.train_freq * config.num_envs)


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate through XLA, best of `repeats`."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def batched_matmul_gflops(
    seeds: int, batch: int, width: int, loops: int = 2000, repeats: int = 5
) -> float:
    """The rate of the DQN's own products, ``seeds`` x [batch, width] x [width, width], alone.

    ``loops`` products chained in one compiled loop (each feeds the next, so none is skipped),
    best of ``repeats``: an upper bound for what the gradient steps' products can run at.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.full((seeds, batch, width), 1.0 / width, jnp.float32)
    w = jnp.full((seeds, width, width), 1.0 / width, jnp.float32)
    chain = jax.jit(
        lambda x, w: jax.lax.fori_loop(0, loops, lambda _, y: jnp.einsum("sbi,sio->sbo", y, w), x)
    )
    chain(x, w).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        chain(x, w).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * seeds * batch * width * width * loops / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=None, help="steps per seed (preset default)")
    parser.add_argument(
        "--sb3-steps", type=int, default=None, help="SB3 steps (default: the whole run)"
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    from jsurgery.rl.presets import default_config

    config = default_config(args.env, total_steps=args.steps)
    sb3_steps = min(args.sb3_steps or config.total_steps, config.total_steps)
    print(f"{args.env}: {config}")
    ours = jsurgery_run(config, args.env, args.seeds)
    print(
        f"jsurgery  {args.seeds} seeds x {config.total_steps} steps: "
        f"{ours['steps_per_second']:,.0f} steps/s (run {ours['run_seconds']:.1f} s, "
        f"compile {ours['compile_seconds']:.1f} s), final greedy return mean "
        f"{ours['final_eval_return_mean']:.1f}; per seed {np.round(ours['final_eval_return'], 1)}",
        flush=True,
    )
    theirs = sb3_run(config, args.env, sb3_steps)
    print(
        f"SB3       1 seed x {sb3_steps} steps: {theirs['steps_per_second']:,.0f} steps/s "
        f"(run {theirs['seconds']:.1f} s), final greedy return {theirs['final_eval_return']:.1f}"
    )
    ratio = ours["steps_per_second"] / theirs["steps_per_second"]
    print(f"ratio     {ratio:,.1f}x the environment steps per second of stable-baselines3")
    flops = gradient_flops_per_step(config, args.env)
    ceiling = matmul_gflops()
    own = batched_matmul_gflops(args.seeds, config.batch_size, max(config.hidden))
    arithmetic = {
        "gradient_mflop_per_env_step": flops / 1e6,
        "jsurgery_gflops": flops * ours["steps_per_second"] / 1e9,
        "gflops_for_100x_sb3": flops * 100 * theirs["steps_per_second"] / 1e9,
        "matmul_2048_gflops": ceiling,
        "batched_matmul_gflops": own,
    }
    print(
        f"arithmetic {arithmetic['gradient_mflop_per_env_step']:.2f} MFLOP of gradient steps per "
        f"environment step: jsurgery ran them at {arithmetic['jsurgery_gflops']:.0f} GFLOP/s; "
        f"100x stable-baselines3 would need {arithmetic['gflops_for_100x_sb3']:.0f} GFLOP/s; "
        f"a 2048 x 2048 float32 product runs at {ceiling:.0f} GFLOP/s on this machine, "
        f"{args.seeds} x [{config.batch_size}, {max(config.hidden)}] x [{max(config.hidden)}, "
        f"{max(config.hidden)}] products alone at {own:.0f} GFLOP/s (at most "
        f"{own * 1e9 / flops / theirs['steps_per_second']:.0f}x stable-baselines3)"
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "env_id": args.env,
                    "config": config.to_dict(),
                    "jsurgery": ours,
                    "sb3": theirs,
                    "ratio": ratio,
                    "arithmetic": arithmetic,
                    "machine": platform.platform(),
                    "cpu_count": os.cpu_count(),
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
