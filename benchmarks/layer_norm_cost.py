"""What the CartPole preset's LayerNorm layers cost per gradient step, side by side in one process.

Times a vmapped scan of Double DQN gradient steps (Huber loss, Adam after global-norm clipping,
batch 64 of random transitions) for ``--seeds`` seeds of the preset's (64, 64) network, with and
without ``layer_norm``, alternating the two and keeping the best of ``--repeats`` timings of each.

    python benchmarks/layer_norm_cost.py            # 20 seeds, 250 gradient steps per call
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from jsurgery.rl import QNetwork, make_optimizer
from jsurgery.rl.presets import cartpole_config


def gradient_steps(config, seeds: int, steps: int):
    """A jitted function of a key: ``steps`` gradient steps for each of ``seeds`` networks."""
    network = QNetwork.for_config(config, num_actions=2)
    optimizer = make_optimizer(config)

    def loss(params, target_params, obs, next_obs, action, reward):
        q = jnp.take_along_axis(network.apply(params, obs), action[:, None], -1)[:, 0]
        next_action = jnp.argmax(network.apply(params, next_obs), -1)
        next_q = network.apply(target_params, next_obs)
        next_q = jnp.take_along_axis(next_q, next_action[:, None], -1)[:, 0]
        target = jax.lax.stop_gradient(reward + config.gamma * next_q)
        return optax.huber_loss(q, target).mean()

    def run(key):
        params = network.init(key, jnp.zeros((1, 4)))
        opt_state = optimizer.init(params)

        def step(carry, key):
            params, opt_state = carry
            obs_key, next_key, action_key = jax.random.split(key, 3)
            batch = config.batch_size
            obs = jax.random.normal(obs_key, (batch, 4))
            next_obs = jax.random.normal(next_key, (batch, 4))
            action = jax.random.randint(action_key, (batch,), 0, 2)
            grads = jax.grad(loss)(params, params, obs, next_obs, action, jnp.ones(batch))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))
        return params

    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    compiled = jax.jit(jax.vmap(run))
    return lambda: jax.block_until_ready(compiled(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    preset = cartpole_config()
    runs = {
        flag: gradient_steps(preset.replace(layer_norm=flag), args.seeds, args.steps)
        for flag in (False, True)
    }
    best = {flag: float("inf") for flag in runs}
    for run in runs.values():
        run()  # compile
    for _ in range(args.repeats):
        for flag, run in runs.items():
            start = time.perf_counter()
            run()
            best[flag] = min(best[flag], time.perf_counter() - start)
    per_step = {flag: seconds / args.steps * 1e3 for flag, seconds in best.items()}
    print(
        f"one vmapped gradient step, {args.seeds} seeds, network {preset.hidden}: "
        f"{per_step[False]:.3f} ms without LayerNorm, {per_step[True]:.3f} ms with; "
        f"ratio {per_step[True] / per_step[False]:.2f}"
    )


if __name__ == "__main__":
    main()
