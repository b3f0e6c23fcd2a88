"""A DQN trained in the JAX LunarLander, evaluated greedily in both it and gymnasium's Box2D one.

Trains with the environment's preset (`jsurgery.commands.train.train_command`, skipped when `--out`
already holds a saved agent), then plays `--episodes` greedy episodes of each seed's agent in each
implementation through `load_agent(...).act`, and prints the mean returns side by side, per seed
and over seeds, with a bootstrap interval of the per-seed difference.

Run: `python benchmarks/lunar_lander_transfer.py [--steps 200000] [--seeds 1] [--episodes 100]
[--out runs/lunar_lander_transfer] [--json transfer.json]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.envs import LunarLander


def play_jax(agent, episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Greedy episodes in the JAX environment, all at once; the first episode of each counts."""
    env = LunarLander()
    params = env.default_params
    keys = jax.random.split(jax.random.key(seed), episodes)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    alive = np.ones(episodes, bool)
    total = np.zeros(episodes)
    landed = np.zeros(episodes, bool)
    for t in range(params.max_steps_in_episode):
        actions = jnp.asarray(agent.act(np.asarray(obs)), jnp.int32)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed + 1), t), episodes)
        obs, state, reward, terminated, truncated, info = step(keys, state, actions, params)
        total += np.where(alive, np.asarray(reward), 0.0)
        done = alive & np.asarray(terminated | truncated)
        landed |= done & np.asarray(info["landed"])
        alive &= ~done
        if not alive.any():
            break
    return {"return": total, "landed": landed}


def play_box2d(agent, episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    import gymnasium as gym

    env = gym.make("LunarLander-v3")
    returns, landed = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 100_000 + episode)
        total = 0.0
        while True:
            action = int(agent.act(np.asarray(obs, np.float32)[None])[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            if terminated or truncated:
                break
        returns.append(total)
        landed.append(terminated and reward == 100)
    return {"return": np.asarray(returns), "landed": np.asarray(landed)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/lunar_lander_transfer")
    parser.add_argument("--json", default=None, help="also write the per-seed figures here")
    args = parser.parse_args()
    from jsurgery.commands.train import train_command
    from jsurgery.rl.agent import load_agent

    if not (Path(args.out) / "agent.json").exists():
        train_command("LunarLander-v3", seeds=args.seeds, steps=args.steps, out=args.out)
    print(
        f"| seed | JAX mean return ({args.episodes} episodes) | Box2D mean return | "
        "JAX landed | Box2D landed |"
    )
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for seed in range(args.seeds):
        agent = load_agent(args.out, seed=seed)
        ours, ref = play_jax(agent, args.episodes), play_box2d(agent, args.episodes)
        rows.append(
            {
                "seed": seed,
                "jax_return": float(ours["return"].mean()),
                "box2d_return": float(ref["return"].mean()),
                "jax_landed": float(ours["landed"].mean()),
                "box2d_landed": float(ref["landed"].mean()),
            }
        )
        row = rows[-1]
        print(
            f"| {seed} | {row['jax_return']:.1f} | {row['box2d_return']:.1f} | "
            f"{row['jax_landed']:.2f} | {row['box2d_landed']:.2f} |",
            flush=True,
        )
    jax_returns = np.array([row["jax_return"] for row in rows])
    box2d_returns = np.array([row["box2d_return"] for row in rows])
    difference = box2d_returns - jax_returns
    print(
        f"| mean of {args.seeds} | {jax_returns.mean():.1f} | {box2d_returns.mean():.1f} | "
        f"{np.mean([r['jax_landed'] for r in rows]):.2f} | "
        f"{np.mean([r['box2d_landed'] for r in rows]):.2f} |"
    )
    if args.seeds > 1:
        from jsurgery.experiments.statistics import bootstrap_mean

        _, low, high = bootstrap_mean(difference)  # paired: the same agent in both
        print(
            f"Box2D minus JAX, per seed: mean {difference.mean():+.1f}, 95% bootstrap interval "
            f"[{low:+.1f}, {high:+.1f}] over {args.seeds} seeds"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"episodes": args.episodes, "seeds": rows}, file, indent=1)


if __name__ == "__main__":
    main()
