"""Fidelity of `jsurgery.envs.LunarLander` to gymnasium's Box2D LunarLander-v3.

Two checks, both needing `gymnasium[box2d]`:

* trajectories: same terrain, same engine dispersion draws, same actions, no initial force; the
  observation gap per step over the first steps of free fall and engine firing;
* distributions: 1,000 random-policy episodes in each implementation; episode length, return,
  crash / landing / timeout fractions and final x side by side.

Run: `python benchmarks/lunar_lander_fidelity.py [--episodes 1000] [--steps 100]`.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.envs import LunarLander
from jsurgery.envs.lunar_lander import CHUNKS, H, SCALE


@contextlib.contextmanager
def _no_initial_force():
    import gymnasium.envs.box2d.lunar_lander as reference

    saved = reference.INITIAL_RANDOM
    reference.INITIAL_RANDOM = 0.0
    try:
        yield
    finally:
        reference.INITIAL_RANDOM = saved


def paired_trajectories(seed: int, actions, initial_force: bool = False):
    """Step both implementations with the reference's random draws; returns (ref, jax) obs.

    The JAX environment receives the terrain heights, the initial force and every engine
    dispersion that the reference draws from its generator, replayed from the same seed.

    Returns:
      Two (len(actions) + 1, 8) arrays and the step at which either episode ended (or None).
    """
    import gymnasium as gym
    from gymnasium.utils import seeding

    rng, _ = seeding.np_random(seed)
    heights = rng.uniform(0, H / 2, size=(CHUNKS + 1,))
    ctx = contextlib.nullcontext() if initial_force else _no_initial_force()
    with ctx:
        import gymnasium.envs.box2d.lunar_lander as reference

        bound = reference.INITIAL_RANDOM
        force = np.array([rng.uniform(-bound, bound), rng.uniform(-bound, bound)])
        ref = gym.make("LunarLander-v3")
        ref_obs, _ = ref.reset(seed=seed)
    rng.uniform(-1, 1), rng.uniform(-1, 1)  # the reset's no-op step

    env = LunarLander()
    params = env.default_params
    obs, state = env.reset_from_draws(jnp.asarray(heights, jnp.float32), force)
    step = jax.jit(env.step_with_dispersion)
    ours, theirs, end = [np.asarray(obs)], [ref_obs], None
    for t, a in enumerate(actions):
        dispersion = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1)]) / SCALE
        ref_obs, _, ref_term, _, _ = ref.step(int(a))
        obs, state, _, term, _ = step(state, a, jnp.asarray(dispersion, jnp.float32), params)
        theirs.append(ref_obs)
        ours.append(np.asarray(obs))
        if ref_term or bool(term):
            end = t + 1
            break
    ref.close()
    return np.array(theirs), np.array(ours), end


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    rngs = np.random.default_rng(0)
    for name, make in [
        ("free fall", lambda: np.zeros(args.steps, np.int32)),
        ("main engine", lambda: np.full(args.steps, 2, np.int32)),
        ("random", lambda: rngs.integers(0, 4, args.steps).astype(np.int32)),
    ]:
        gaps = []
        for seed in range(args.seeds):
            ref, ours, _ = paired_trajectories(seed, make())
            n = min(len(ref), len(ours))
            gaps.append(np.abs(ref[:n] - ours[:n]))
        print(name)
        for t in [1, 5, 10, 20, 40, args.steps]:
            g = [x[t] for x in gaps if len(x) > t]
            if g:
                print(f"  step {t:3d}: max |obs gap| per value", np.round(np.max(g, 0), 4))


if __name__ == "__main__":
    main()
