"""Fidelity of `jsurgery.envs.LunarLander` to gymnasium's Box2D LunarLander-v3.

Five checks, all needing `gymnasium[box2d]`:

* trajectories: same terrain, same engine dispersion draws, same actions, no initial force; the
  observation gap per step over the first steps of free fall and engine firing;
* closed loop: gymnasium's own heuristic pilot flies both, with the same random draws;
* touchdown: the lander dropped onto the flat helipad, legs at rest, straight down at 1.0 to 2.6
  m/s with a tilt of 0, 0.05 or 0.1 rad, from 16 heights spread over one step's travel; the
  fraction that crashes, and the impact speed at which half crash;
* distributions: 1,000 random-policy episodes in each implementation; episode length, return,
  crash / landing / timeout fractions and final x side by side, drawn independently;
* paired distributions: the same 1,000 random-policy episodes replayed in both (each episode's
  terrain, initial force, dispersion draws and actions shared), so sampling noise cancels in the
  per-episode return gap.

Run: `python benchmarks/lunar_lander_fidelity.py [--seeds 5] [--steps 100] [--heuristic-seeds 100]
[--episodes 1000]`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.envs import OBS_IDS, LunarLander
from jsurgery.envs.lunar_lander import CHUNKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Box2D test support
from box2d_reference import (  # noqa: E402
    DROP_X,
    PAD_Y,
    box2d_drop_crashes,
    drop_heights,
    reference_draws,
)


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

    heights, force, dispersions = reference_draws(seed, len(actions))
    if not initial_force:
        force = np.zeros(2)  # the reference still draws it, from a zero-width range
    ctx = contextlib.nullcontext() if initial_force else _no_initial_force()
    with ctx:
        ref = gym.make("LunarLander-v3")
        ref_obs, _ = ref.reset(seed=seed)

    env = LunarLander()
    params = env.default_params
    obs, state = env.reset_from_draws(jnp.asarray(heights, jnp.float32), force)
    step = jax.jit(env.step_with_dispersion)
    ours, theirs, end = [np.asarray(obs)], [ref_obs], None
    for t, (a, dispersion) in enumerate(zip(actions, dispersions, strict=True)):
        ref_obs, _, ref_term, _, _ = ref.step(int(a))
        obs, state, _, term, _ = step(state, a, jnp.asarray(dispersion, jnp.float32), params)
        theirs.append(ref_obs)
        ours.append(np.asarray(obs))
        if ref_term or bool(term):
            end = t + 1
            break
    ref.close()
    return np.array(theirs), np.array(ours), end


def trajectory_table(seeds: int, steps: int) -> str:
    """Largest observation gap over `seeds` paired trajectories, at a few steps."""
    rng = np.random.default_rng(0)
    plans = {
        "free fall": lambda: np.zeros(steps, np.int32),
        "main engine": lambda: np.full(steps, 2, np.int32),
        "random actions": lambda: rng.integers(0, 4, steps).astype(np.int32),
    }
    rows = ["| actions | step | " + " | ".join(OBS_IDS[:6]) + " |", "|---|---:" + "|---:" * 6 + "|"]
    for name, plan in plans.items():
        gaps = []
        for seed in range(seeds):
            ref, ours, _ = paired_trajectories(seed, plan())
            n = min(len(ref), len(ours))
            gaps.append(np.abs(ref[:n] - ours[:n]))
        for t in [1, 10, 25, 50, steps]:
            g = [x[t] for x in gaps if len(x) > t]
            if g:
                cells = " | ".join(f"{v:.1e}" for v in np.max(g, 0)[:6])
                rows.append(f"| {name} | {t} | {cells} |")
    return "\n".join(rows)


def heuristic_table(seeds: int) -> str:
    """gymnasium's heuristic pilot in both implementations, same random draws (with the force)."""
    import types

    import gymnasium as gym
    from gymnasium.envs.box2d.lunar_lander import heuristic

    env = LunarLander()
    params = env.default_params
    step = jax.jit(env.step_with_dispersion)
    pilot = types.SimpleNamespace(unwrapped=types.SimpleNamespace(continuous=False))
    results = []
    for seed in range(seeds):
        heights, force, dispersions = reference_draws(seed, 1000)
        ref = gym.make("LunarLander-v3")
        ref_obs, _ = ref.reset(seed=seed)
        obs, state = env.reset_from_draws(jnp.asarray(heights, jnp.float32), force)
        obs = np.asarray(obs)
        out = {"ref": [0.0, 0, None], "jax": [0.0, 0, None]}
        for dispersion in jnp.asarray(dispersions, jnp.float32):
            if out["ref"][2] is None:
                ref_obs, r, term, trunc, _ = ref.step(heuristic(pilot, ref_obs))
                out["ref"][0] += r
                out["ref"][1] += 1
                if term or trunc:
                    out["ref"][2] = "landed" if r == 100 else "crashed" if term else "timeout"
            if out["jax"][2] is None:
                action = jnp.int32(heuristic(pilot, obs))
                obs, state, r, term, info = step(state, action, dispersion, params)
                obs = np.asarray(obs)
                out["jax"][0] += float(r)
                out["jax"][1] += 1
                if bool(term):
                    out["jax"][2] = "landed" if bool(info["landed"]) else "crashed"
            if out["ref"][2] and out["jax"][2]:
                break
        results.append(out)
    same = np.mean([o["ref"][2] == o["jax"][2] for o in results])
    ref_r = np.array([o["ref"][0] for o in results])
    jax_r = np.array([o["jax"][0] for o in results])
    ref_n = np.array([o["ref"][1] for o in results])
    jax_n = np.array([o["jax"][1] for o in results])
    return "\n".join(
        [
            "| heuristic pilot | Box2D | JAX |",
            "|---|---:|---:|",
            f"| mean return | {ref_r.mean():.1f} | {jax_r.mean():.1f} |",
            f"| mean episode length | {ref_n.mean():.0f} | {jax_n.mean():.0f} |",
            *(
                f"| {outcome} | "
                + " | ".join(
                    f"{np.mean([(o[k][2] or 'timeout') == outcome for o in results]):.2f}"
                    for k in ("ref", "jax")
                )
                + " |"
                for outcome in ("landed", "crashed", "timeout")
            ),
            f"| same outcome, seed by seed | {same:.2f} | |",
            f"| mean abs return gap, seed by seed | {np.abs(ref_r - jax_r).mean():.1f} | |",
        ]
    )


def random_policy_box2d(episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    import gymnasium as gym

    env = gym.make("LunarLander-v3")
    rng = np.random.default_rng(seed)
    stats = {k: [] for k in ("length", "return", "crash", "landing", "timeout", "final_x")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 100_000 + episode)
        total, n = 0.0, 0
        while True:
            obs, r, term, trunc, _ = env.step(int(rng.integers(0, 4)))
            total += r
            n += 1
            if term or trunc:
                break
        stats["length"].append(n)
        stats["return"].append(total)
        stats["crash"].append(term and r == -100)
        stats["landing"].append(term and r == 100)
        stats["timeout"].append(trunc and not term)
        stats["final_x"].append(obs[0])
    return {k: np.asarray(v, np.float64) for k, v in stats.items()}


def random_policy_jax(episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    env = LunarLander()
    params = env.default_params

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, episodes), params
        )
        alive = jnp.ones(episodes, bool)
        zeros = jnp.zeros(episodes, jnp.float32)
        acc = dict(
            length=jnp.zeros(episodes, jnp.int32),
            ret=zeros,
            crash=alive & False,
            landing=alive & False,
            timeout=alive & False,
            final_x=zeros,
        )

        def body(carry, key):
            state, alive, acc = carry
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (episodes,), 0, 4)
            _, state, r, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, episodes), state, actions, params
            )
            done = alive & (term | trunc)
            acc = dict(
                length=acc["length"] + alive.astype(jnp.int32),
                ret=acc["ret"] + jnp.where(alive, r, 0.0),
                crash=acc["crash"] | (done & info["crashed"] & ~info["landed"]),
                landing=acc["landing"] | (done & info["landed"]),
                timeout=acc["timeout"] | (done & trunc & ~term),
                final_x=jnp.where(done, info["final_observation"][:, 0], acc["final_x"]),
            )
            return (state, alive & ~done, acc), None

        carry, _ = jax.lax.scan(body, (state, alive, acc), jax.random.split(k_run, 1000))
        return carry[2]

    acc = jax.device_get(run(jax.random.key(seed)))
    return {
        "length": acc["length"],
        "return": acc["ret"],
        "crash": acc["crash"],
        "landing": acc["landing"],
        "timeout": acc["timeout"],
        "final_x": acc["final_x"],
    }


def distribution_table(episodes: int) -> str:
    start = time.perf_counter()
    ref = random_policy_box2d(episodes)
    mid = time.perf_counter()
    ours = random_policy_jax(episodes)
    end = time.perf_counter()
    rows = [f"| random policy, {episodes} episodes | Box2D | JAX |", "|---|---:|---:|"]
    for key in ("length", "return", "final_x"):
        for name, fn in (("mean", np.mean), ("std", np.std), ("median", np.median)):
            rows.append(f"| {key} {name} | {fn(ref[key]):.2f} | {fn(ours[key]):.2f} |")
    for key in ("crash", "landing", "timeout"):
        rows.append(f"| {key} fraction | {ref[key].mean():.3f} | {ours[key].mean():.3f} |")
    try:
        from scipy.stats import ks_2samp

        for key in ("length", "return", "final_x"):
            rows.append(f"| KS p-value, {key} | {ks_2samp(ref[key], ours[key]).pvalue:.3f} | |")
    except ImportError:
        pass
    rows.append(f"| wall time, s (JAX includes compile) | {mid - start:.1f} | {end - mid:.1f} |")
    return "\n".join(rows)


DROP_TILTS = (0.0, 0.05, 0.1)
DROP_SPEEDS = np.round(np.arange(1.0, 2.61, 0.1), 2)
DROP_PHASES = 16


def drop_crashes() -> dict[str, np.ndarray]:
    """Crash or not, per (tilt, speed, phase), in both implementations."""
    env = LunarLander()
    params = env.default_params
    terrain = jnp.full((CHUNKS,), PAD_Y, jnp.float32)

    @jax.jit
    def crashes(y, angle, speed):
        _, state = env.state_from_hull(
            terrain, jnp.stack([jnp.float32(DROP_X), y]), jnp.stack([0.0, -speed]), angle, 0.0
        )

        def body(carry, _):
            state, crashed, done = carry
            _, state, _, term, info = env.step_with_dispersion(state, 0, jnp.zeros(2), params)
            return (state, crashed | (~done & info["crashed"]), done | term), None

        (_, crashed, _), _ = jax.lax.scan(body, (state, False, False), None, 60)
        return crashed

    shape = (len(DROP_TILTS), len(DROP_SPEEDS), DROP_PHASES)
    ref, ours = np.zeros(shape, bool), np.zeros(shape, bool)
    ys = np.array([[drop_heights(a, v, DROP_PHASES) for v in DROP_SPEEDS] for a in DROP_TILTS])
    for i, a in enumerate(DROP_TILTS):
        for j, v in enumerate(DROP_SPEEDS):
            ref[i, j] = [box2d_drop_crashes(a, v, y) for y in ys[i, j]]
    tilts = np.broadcast_to(np.asarray(DROP_TILTS)[:, None, None], shape)
    speeds = np.broadcast_to(DROP_SPEEDS[None, :, None], shape)
    batched = jax.vmap(crashes)(
        *(jnp.asarray(x.reshape(-1), jnp.float32) for x in (ys, tilts, speeds))
    )
    ours[...] = np.asarray(batched).reshape(shape)
    return {"box2d": ref, "jax": ours}


def _half_crash_speed(fractions: np.ndarray) -> str:
    """The speed at which the crash fraction first reaches 0.5, interpolated between speeds."""
    for j in range(1, len(DROP_SPEEDS)):
        if fractions[j] >= 0.5 > fractions[j - 1]:
            step = DROP_SPEEDS[j] - DROP_SPEEDS[j - 1]
            share = (0.5 - fractions[j - 1]) / (fractions[j] - fractions[j - 1])
            return f"{DROP_SPEEDS[j - 1] + share * step:.2f}"
    return f"<= {DROP_SPEEDS[0]}" if fractions[0] >= 0.5 else f"> {DROP_SPEEDS[-1]}"


def drop_table() -> str:
    runs = drop_crashes()
    fractions = {name: crashed.mean(-1) for name, crashed in runs.items()}
    rows = [
        "| tilt, rad | implementation | "
        + " | ".join(f"{v:.1f}" for v in DROP_SPEEDS)
        + " | half crash at, m/s |",
        "|---|---" + "|---:" * (len(DROP_SPEEDS) + 1) + "|",
    ]
    for i, tilt in enumerate(DROP_TILTS):
        for name, label in (("box2d", "Box2D"), ("jax", "JAX")):
            cells = " | ".join(f"{x:.2f}" for x in fractions[name][i])
            rows.append(f"| {tilt} | {label} | {cells} | {_half_crash_speed(fractions[name][i])} |")
    return "\n".join(rows)


def paired_random_policy(episodes: int, steps: int = 1000) -> dict[str, dict[str, np.ndarray]]:
    """Episode e: seed e's draws and one random action sequence, played in both implementations."""
    import gymnasium as gym

    draws = [reference_draws(e, steps) for e in range(episodes)]
    actions = np.stack(
        [np.random.default_rng(1_000_000 + e).integers(0, 4, steps) for e in range(episodes)]
    ).astype(np.int32)

    ref = gym.make("LunarLander-v3")
    theirs = {k: [] for k in ("length", "return", "outcome")}
    for e in range(episodes):
        ref.reset(seed=e)
        total = 0.0
        for t in range(steps):
            _, r, term, trunc, _ = ref.step(int(actions[e, t]))
            total += r
            if term or trunc:
                break
        theirs["length"].append(t + 1)
        theirs["return"].append(total)
        theirs["outcome"].append("timeout" if not term else "landed" if r == 100 else "crashed")
    ref.close()

    env = LunarLander()
    params = env.default_params

    @jax.jit
    def run(heights, forces, dispersions, actions):
        _, state = jax.vmap(env.reset_from_draws)(heights, forces)
        step = jax.vmap(env.step_with_dispersion, in_axes=(0, 0, 0, None))

        def body(carry, inputs):
            state, alive, length, total, landed = carry
            action, dispersion = inputs
            _, state, r, term, info = step(state, action, dispersion, params)
            return (
                state,
                alive & ~term,
                length + alive,
                total + jnp.where(alive, r, 0.0),
                landed | (alive & term & info["landed"]),
            ), alive & term

        zeros = jnp.zeros(episodes)
        init = (state, jnp.ones(episodes, bool), zeros.astype(jnp.int32), zeros, zeros > 0)
        (_, alive, length, total, landed), _ = jax.lax.scan(
            body, init, (actions.T, jnp.swapaxes(dispersions, 0, 1))
        )
        return alive, length, total, landed

    alive, length, total, landed = jax.device_get(
        run(
            jnp.asarray(np.stack([d[0] for d in draws]), jnp.float32),
            jnp.asarray(np.stack([d[1] for d in draws]), jnp.float32),
            jnp.asarray(np.stack([d[2] for d in draws]), jnp.float32),
            jnp.asarray(actions),
        )
    )
    outcome = np.where(alive, "timeout", np.where(landed, "landed", "crashed"))
    ours = {"length": length, "return": total, "outcome": outcome}
    return {
        "box2d": {k: np.asarray(v) for k, v in theirs.items()},
        "jax": {k: np.asarray(v) for k, v in ours.items()},
    }


def paired_table(episodes: int) -> str:
    runs = paired_random_policy(episodes)
    ref, ours = runs["box2d"], runs["jax"]
    gap = ours["return"] - ref["return"]
    boot = np.random.default_rng(0).choice(gap, size=(10_000, gap.size)).mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    rows = [
        f"| random policy, the same {episodes} episodes in both | Box2D | JAX |",
        "|---|---:|---:|",
        f"| return mean | {ref['return'].mean():.2f} | {ours['return'].mean():.2f} |",
        f"| length mean | {ref['length'].mean():.2f} | {ours['length'].mean():.2f} |",
    ]
    for outcome in ("crashed", "landed", "timeout"):
        rows.append(
            f"| {outcome} fraction | {np.mean(ref['outcome'] == outcome):.3f} | "
            f"{np.mean(ours['outcome'] == outcome):.3f} |"
        )
    rows.append(
        f"| same outcome, episode by episode | {np.mean(ref['outcome'] == ours['outcome']):.3f} | |"
    )
    rows.append(
        f"| return gap JAX - Box2D, mean [95% bootstrap] "
        f"| {gap.mean():+.2f} [{low:+.2f}, {high:+.2f}] | |"
    )
    try:
        from scipy.stats import ks_2samp

        for key in ("length", "return"):
            rows.append(f"| KS p-value, {key} | {ks_2samp(ref[key], ours[key]).pvalue:.3f} | |")
    except ImportError:
        pass
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--heuristic-seeds", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    print(trajectory_table(args.seeds, args.steps), flush=True)
    print()
    print(heuristic_table(args.heuristic_seeds), flush=True)
    print()
    print(drop_table(), flush=True)
    print()
    print(distribution_table(args.episodes), flush=True)
    print()
    print(paired_table(args.episodes), flush=True)


if __name__ == "__main__":
    main()
