"""Speed of `jsurgery.envs.LunarLander` against gymnasium's Box2D LunarLander-v3, in one run.

JAX: random actions, `jax.vmap` over N environments inside one jitted `lax.scan`, auto-reset
included (`Environment.step`); the compile is excluded and the best of `--repeats` runs counts.
Box2D: gymnasium's LunarLander-v3 stepping one environment with random actions, resetting at the
end of each episode, as a DQN loop over a single environment does.

Run: `python benchmarks/lunar_lander.py [--envs 1 256 4096] [--steps 200] [--box2d-steps 20000]`.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from jsurgery.envs import LunarLander


def jax_steps_per_second(num_envs: int, steps: int, repeats: int) -> float:
    env = LunarLander()
    params = env.default_params

    @jax.jit
    def run(key):
        keys = jax.random.split(key, num_envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (num_envs,), 0, 4)
            out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, num_envs), state, actions, params
            )
            return out[1], out[2].sum()

        state, rewards = jax.lax.scan(body, state, jax.random.split(key, steps))
        return rewards.sum()

    run(jax.random.key(0)).block_until_ready()
    best = np.inf
    for r in range(repeats):
        start = time.perf_counter()
        run(jax.random.key(r + 1)).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return num_envs * steps / best


def box2d_steps_per_second(steps: int) -> float:
    import gymnasium as gym

    env = gym.make("LunarLander-v3")
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, steps)
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 256, 4096])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--box2d-steps", type=int, default=20_000)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
    reference = box2d_steps_per_second(args.box2d_steps)
    print("| implementation | environments | steps/s | ratio to Box2D |")
    print("|---|---:|---:|---:|")
    print(f"| gymnasium Box2D | 1 | {reference:,.0f} | 1.0 |")
    for n in args.envs:
        rate = jax_steps_per_second(n, args.steps, args.repeats)
        print(f"| jsurgery JAX, vmapped | {n} | {rate:,.0f} | {rate / reference:.1f} |", flush=True)
    print(f"| gymnasium Box2D (again) | 1 | {box2d_steps_per_second(args.box2d_steps):,.0f} | |")


if __name__ == "__main__":
    main()
