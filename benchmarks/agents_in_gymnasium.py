"""Saved agents played in gymnasium's own environment: ``python benchmarks/agents_in_gymnasium.py
RUN_DIR [--episodes 10]``.

Loads every seed of a run written by ``jsurgery train`` (DQN or PPO) with
:func:`jsurgery.rl.load_agent` and plays greedy episodes in ``gymnasium.make(env_id)``, which
checks the agents outside the gymnax environments they were trained in. Prints each seed's mean
return and the mean over seeds. Needs the test extra (gymnasium).
"""

from __future__ import annotations

import argparse

import numpy as np


def episode_return(agent, env, seed: int) -> float:
    """The return of one greedy episode of ``agent`` in the gymnasium environment ``env``."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = agent.act(np.asarray(obs, np.float32)[None])[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


def gymnasium_returns(run_dir: str, episodes: int = 10) -> dict[int, float]:
    """Each saved seed's mean greedy return over ``episodes`` gymnasium episodes (env seeds
    ``0 .. episodes-1``)."""
    import gymnasium

    from jsurgery.rl import load_agent, load_run

    run = load_run(run_dir)
    env = gymnasium.make(run.env.env_id)
    returns = {}
    for seed in run.seeds:
        agent = load_agent(run_dir, seed)
        returns[seed] = float(np.mean([episode_return(agent, env, e) for e in range(episodes)]))
    env.close()
    return returns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory written by 'jsurgery train'")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per seed (default 10)")
    args = parser.parse_args(argv)
    returns = gymnasium_returns(args.run_dir, args.episodes)
    for seed, value in returns.items():
        print(f"seed {seed:>3}: {value:8.1f}")
    values = np.array(list(returns.values()))
    print(
        f"mean {values.mean():.1f} over {values.size} seeds (min {values.min():.1f}, max "
        f"{values.max():.1f}), {args.episodes} gymnasium episodes each"
    )


if __name__ == "__main__":
    main()
