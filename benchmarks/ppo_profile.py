"""Where the time of jsurgery's PPO goes: each part of an iteration timed as its own jitted call.

The parts are those :func:`jsurgery.rl.ppo.make_ppo` returns, vmapped over ``--seeds`` seeds as a
training run vmaps them, on the batch sizes of the CartPole preset (4 environments x 125 steps, 4
epochs of 4 minibatches):

- environment: the rollout's ``num_steps`` steps of all environments with the actions a rollout
  took, without the network (a ``lax.scan`` of the vmapped ``env.step``);
- network: the rollout's ``num_steps`` policy and value passes on the observations a rollout saw,
  with the action drawn and its log-probability, without the environment;
- rollout: ``collect``, both of the above interleaved as training runs them;
- advantages: the value of the last and of the final observations, and GAE;
- update: the epochs of minibatch gradient steps;
- shuffles: the update's ``num_epochs`` minibatch orders alone (``shuffled_order``), and the
  same drawn with ``jax.random.permutation`` (what the update used before) for comparison;
- iteration: a whole training iteration (rollout, advantages, update, bookkeeping);
- evaluation: one greedy evaluation (``eval_episodes`` episodes to the time limit).

With ``--rejax``, one iteration of rejax's PPO on the same settings (its ``train_iteration``,
vmapped the same way; see ``benchmarks/ppo_rejax.py``) is timed beside them.

Each is called ``--calls`` times, the parts in turn (so a load spike hits all of them), best call
kept; the estimate for a run multiplies by the calls a run makes (one per iteration, one per
evaluation).

    python benchmarks/ppo_profile.py                  # 20 seeds, 500,000-step run, best of 20
    python benchmarks/ppo_profile.py --rejax          # and one rejax iteration beside them
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jsurgery.rl.ppo import make_ppo
from jsurgery.rl.ppo_presets import cartpole_ppo_config
from jsurgery.rl.ppo_update import log_prob, sample_action, shuffled_order
from jsurgery.rl.runner import seed_keys

ENV_ID = "CartPole-v1"


def environment_only(parts):
    """``(env_state, actions, key) -> env_state`` after stepping with ``actions`` ``(T, envs)``."""
    env_step = jax.vmap(parts.env.step)
    num_envs = parts.config.num_envs

    def run(env_state, actions, key):
        def step(carry, action):
            state, key = carry
            key, env_key = jax.random.split(key)
            state = env_step(jax.random.split(env_key, num_envs), state, action)[1]
            return (state, key), None

        (env_state, _), _ = jax.lax.scan(step, (env_state, key), actions)
        return env_state

    return run


def network_only(parts):
    """``(params, observations, key) -> (actions, log_probs, values)`` for ``observations``
    ``(T, envs, obs)``, as the rollout computes them."""

    def run(params, observations, key):
        def step(key, obs):
            key, action_key = jax.random.split(key)
            policy, value, log_std = parts.apply(params, obs)
            action = sample_action(action_key, policy, log_std)
            return key, (action, log_prob(policy, log_std, action), value)

        return jax.lax.scan(step, key, observations)[1]

    return run


def shuffles(parts, draw):
    """``key -> orders``: the ``num_epochs`` minibatch orders of one update, drawn by ``draw``."""
    config = parts.config

    def run(key):
        epoch_keys = jax.random.split(key, config.num_epochs)
        return jax.vmap(lambda k: draw(k, config.batch_steps))(epoch_keys)

    return run


def programs(parts, keys):
    """Each part as a jitted, vmapped function of no arguments (its inputs bound)."""
    carry, _ = jax.jit(jax.vmap(parts.begin))(keys)
    collect = jax.jit(jax.vmap(parts.collect, in_axes=(0, None)))
    after, _, steps = collect(carry, jnp.int32(0))
    advantages = jax.jit(jax.vmap(parts.advantages))
    rollout = advantages(after.params, steps, after.obs)
    environment = jax.jit(jax.vmap(environment_only(parts)))
    network = jax.jit(jax.vmap(network_only(parts)))
    update = jax.jit(jax.vmap(parts.update, in_axes=(0, 0, 0, 0, None)))
    iteration = jax.jit(jax.vmap(lambda c: parts.blocks(c, 0, 1)))
    evaluate = jax.jit(jax.vmap(parts.evaluate))
    shuffle = jax.jit(jax.vmap(shuffles(parts, shuffled_order)))
    permutation = jax.jit(jax.vmap(shuffles(parts, jax.random.permutation)))
    return {
        "environment": lambda: environment(carry.env_state, steps.action, keys),
        "network": lambda: network(carry.params, steps.obs, keys),
        "rollout": lambda: collect(carry, jnp.int32(0)),
        "advantages": lambda: advantages(after.params, steps, after.obs),
        "update": lambda: update(after.params, after.opt_state, rollout, keys, jnp.float32(1.0)),
        "  shuffles, now": lambda: shuffle(keys),
        "  shuffles, before": lambda: permutation(keys),
        "iteration": lambda: iteration(carry),
        "evaluation": lambda: evaluate(carry.params, keys),
    }


def rejax_iteration(config, keys):
    """One iteration of rejax's PPO on ``config``, vmapped over ``keys``, as a call."""
    from ppo_rejax import make_rejax_train

    algo = make_rejax_train(config).__self__
    state = jax.jit(jax.vmap(algo.init_state))(keys)
    iteration = jax.jit(jax.vmap(algo.train_iteration))
    return lambda: iteration(state)


def best_times(calls: dict, repeats: int) -> dict:
    """Best time of each call, calling them in turn; each is run once first (compilation)."""
    for call in calls.values():
        jax.block_until_ready(call())
    times = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500_000, help="steps per seed of the run")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each part")
    parser.add_argument("--rejax", action="store_true", help="time a rejax iteration too")
    args = parser.parse_args()

    config = cartpole_ppo_config(args.steps)
    parts = make_ppo(config, ENV_ID)
    keys = seed_keys(range(args.seeds))
    calls = programs(parts, keys)
    if args.rejax:
        calls["rejax iteration"] = rejax_iteration(config, keys)
    times = best_times(calls, args.calls)

    per_run = {name: config.num_blocks for name in times}
    per_run["evaluation"] = config.num_evals
    run_total = times["iteration"] * config.num_blocks + times["evaluation"] * config.num_evals
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(
        f"{ENV_ID}, {args.seeds} seeds, {config.num_envs} envs x {config.num_steps} steps, "
        f"{config.num_epochs} epochs x {config.num_minibatches} minibatches; a "
        f"{config.total_steps:,}-step run: {config.num_blocks} iterations, {config.num_evals} "
        f"evaluations; best of {args.calls} calls"
    )
    print(f"\n{'part':<20} {'ms/call':>8} {'calls/run':>9} {'s/run':>7} {'share':>6}")
    for name, seconds in times.items():
        if name == "rejax iteration":
            continue
        estimate = seconds * per_run[name]
        print(
            f"{name:<20} {seconds * 1e3:>8.2f} {per_run[name]:>9} {estimate:>7.1f} "
            f"{estimate / run_total:>6.0%}"
        )
    parts_sum = times["rollout"] + times["advantages"] + times["update"]
    print(
        f"\nrollout + advantages + update = {parts_sum * 1e3:.2f} ms against a whole iteration's "
        f"{times['iteration'] * 1e3:.2f} ms; estimated run (iterations + evaluations): "
        f"{run_total:.1f} s"
    )
    if args.rejax:
        theirs = times["rejax iteration"]
        print(
            f"rejax: {theirs * 1e3:.2f} ms per iteration; rejax iteration / jsurgery iteration: "
            f"{theirs / times['iteration']:.2f}"
        )


if __name__ == "__main__":
    main()
