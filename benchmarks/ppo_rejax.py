"""jsurgery's PPO beside rejax's PPO: the same configuration, all seeds vmapped, one process.

Both are fully jitted over gymnax's CartPole-v1 and both train as
``jax.jit(jax.vmap(train))(keys)``, one compiled call for all seeds. Compilation
(``lower(...).compile()``) and running are timed apart; runs alternate between the two (so a load
spike on the shared machine hits both), best of ``--repeats``. Reported per library: compile
seconds, run seconds, environment steps per second (all seeds), the final greedy return (mean and
minimum over seeds), and the ratio of run times.

The configuration is jsurgery's CartPole preset (purejaxrl's PPO settings): 4 environments x 125
steps per iteration, 4 epochs of 4 minibatches, tanh (64, 64) actor and critic, Adam with step
size 2.5e-4 falling linearly to 0 by iteration, clip 0.2, value clipping, GAE 0.95, gamma 0.99,
entropy 0.01, value weight 0.5, gradient clip 0.5; a greedy evaluation of 10 episodes every 50,000
steps. rejax gets the same fields (its ``learning_rate`` a schedule that is constant within an
iteration, as jsurgery's), and its evaluation callback is replaced by a greedy 10-episode one (its
own evaluator, the most probable action) so both evaluate the same amount. What stays rejax's own:
separate optimizers and gradient passes for actor and critic, per-element gradient clipping
(``optax.clip``) where jsurgery clips the global norm, Flax's default initialisation where jsurgery
starts orthogonal, and no bootstrapping through the time limit (jsurgery adds one critic pass over
the rollout's final observations per iteration for it).

rejax 0.1.3 expects gymnax's older step signature ``(obs, state, reward, done, info)``; gymnax
1.0 returns ``terminated`` and ``truncated`` apart, so rejax gets the environment through
:class:`FiveTupleEnv`, which joins them into ``done`` (one ``or`` per step).

    python benchmarks/ppo_rejax.py                         # 20 seeds x 500,000 steps, best of 3
    python benchmarks/ppo_rejax.py --steps 100000 --repeats 1
    python benchmarks/ppo_rejax.py --with-permutation   # and jsurgery as it shuffled before

``--with-permutation`` adds a third run: jsurgery with its minibatch orders drawn by
``jax.random.permutation``, as its update did before ``shuffled_order``, to measure that change
in the same process.

Needs the ``bench`` extra (rejax), which the package never imports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jsurgery.rl import ppo_update
from jsurgery.rl.ppo import make_train
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_presets import cartpole_ppo_config
from jsurgery.rl.runner import seed_keys

ENV_ID = "CartPole-v1"


class FiveTupleEnv:
    """A gymnax 1.0 environment with the step signature rejax 0.1.3 calls:
    ``step(key, state, action, params) -> (obs, state, reward, done, info)``."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        if name == "env":  # not set yet, as while a copy is being made
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key, params):
        return self.env.reset(key, params)

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


def iteration_schedule(config: PPOConfig) -> optax.Schedule:
    """jsurgery's step size as an optax schedule of the optimizer's update count: constant within
    an iteration, falling linearly from ``learning_rate`` to ``learning_rate_end``."""
    updates_per_iteration = config.num_epochs * config.num_minibatches
    start, end = config.learning_rate, config.learning_rate_end

    def schedule(count):
        progress = (count // updates_per_iteration) / config.num_blocks
        return start + (end - start) * jnp.minimum(progress, 1.0)

    return schedule


def policy_logits(policy, obs):
    """The action logits of rejax's ``DiscretePolicy``."""
    return policy.action_logits(policy.features(obs))


def make_rejax_train(config: PPOConfig):
    """rejax's ``PPO.train`` on ``config``'s settings, evaluating greedily as jsurgery does."""
    import gymnax
    import rejax
    from rejax.evaluate import evaluate

    env, env_params = gymnax.make(ENV_ID)
    env = FiveTupleEnv(env)
    algo = rejax.PPO.create(
        env=env,
        env_params=env_params,
        agent_kwargs={"activation": config.activation, "hidden_layer_sizes": config.hidden},
        num_envs=config.num_envs,
        num_steps=config.num_steps,
        num_epochs=config.num_epochs,
        num_minibatches=config.num_minibatches,
        learning_rate=iteration_schedule(config),
        max_grad_norm=config.max_grad_norm,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_eps=config.clip_eps,
        vf_coef=config.vf_coef,
        ent_coef=config.ent_coef,
        total_timesteps=config.total_steps,
        eval_freq=config.eval_every,
    )

    def greedy_evaluation(algo, ts, key):
        def act(obs, _):
            logits = algo.actor.apply(ts.actor_ts.params, obs[None], method=policy_logits)
            return jnp.argmax(logits[0])

        _, returns = evaluate(
            act, key, env, env_params, config.eval_episodes, env_params.max_steps_in_episode
        )
        return returns.mean()

    return algo.replace(eval_callback=greedy_evaluation).train


def jsurgery_final_return(out) -> jax.Array:
    return out[1]["eval_return"][:, -1]


def rejax_final_return(out) -> jax.Array:
    return out[1][:, -1]


@contextlib.contextmanager
def permutation_shuffles():
    """While open, jsurgery's PPO update traces ``jax.random.permutation`` for its minibatch
    orders (the update before ``shuffled_order``)."""
    packed = ppo_update.shuffled_order
    ppo_update.shuffled_order = jax.random.permutation
    try:
        yield
    finally:
        ppo_update.shuffled_order = packed


def compiled(train, keys, tracing=contextlib.nullcontext):
    """``jax.jit(jax.vmap(train))`` compiled for ``keys`` (traced inside ``tracing()``), and the
    seconds compiling took."""
    start = time.perf_counter()
    with tracing():
        program = jax.jit(jax.vmap(train)).lower(keys).compile()
    return program, time.perf_counter() - start


def best_runs(programs: dict, keys, repeats: int) -> tuple[dict, dict]:
    """Best run time of each compiled program, running them in turn; and their last outputs."""
    seconds = {name: [] for name in programs}
    outputs = {}
    for _ in range(repeats):
        for name, program in programs.items():
            start = time.perf_counter()
            outputs[name] = jax.block_until_ready(program(keys))
            seconds[name].append(time.perf_counter() - start)
    return {name: min(times) for name, times in seconds.items()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500_000, help="environment steps per seed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--with-permutation",
        action="store_true",
        help="also run jsurgery drawing minibatch orders with jax.random.permutation",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    config = cartpole_ppo_config(args.steps)
    keys = seed_keys(range(args.seeds))
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), {os.cpu_count()} CPUs")
    print(f"{ENV_ID}, {args.seeds} seeds x {config.total_steps:,} steps: {config}")
    trains = {"jsurgery": make_train(config, ENV_ID), "rejax": make_rejax_train(config)}
    finals = {"jsurgery": jsurgery_final_return, "rejax": rejax_final_return}
    tracing = {}
    if args.with_permutation:
        trains["jsurgery, permutation"] = make_train(config, ENV_ID)
        finals["jsurgery, permutation"] = jsurgery_final_return
        tracing["jsurgery, permutation"] = permutation_shuffles
    programs, compile_seconds = {}, {}
    for name, train in trains.items():
        context = tracing.get(name, contextlib.nullcontext)
        programs[name], compile_seconds[name] = compiled(train, keys, context)
    run_seconds, outputs = best_runs(programs, keys, args.repeats)

    total = args.seeds * config.total_steps
    rows = {}
    print(f"\n{'':<22} {'compile s':>9} {'run s':>8} {'steps/s':>10} {'final greedy return':>22}")
    for name in programs:
        final = np.asarray(finals[name](outputs[name]))
        rows[name] = {
            "compile_seconds": compile_seconds[name],
            "run_seconds": run_seconds[name],
            "steps_per_second": total / run_seconds[name],
            "final_return_mean": float(final.mean()),
            "final_return_min": float(final.min()),
            "final_return": final.tolist(),
        }
        row = rows[name]
        print(
            f"{name:<22} {row['compile_seconds']:>9.1f} {row['run_seconds']:>8.1f} "
            f"{row['steps_per_second']:>10,.0f} {row['final_return_mean']:>11.1f} "
            f"(min {row['final_return_min']:.1f})"
        )
    ratio = run_seconds["rejax"] / run_seconds["jsurgery"]
    compile_ratio = compile_seconds["rejax"] / compile_seconds["jsurgery"]
    print(
        f"\nrejax run time / jsurgery run time: {ratio:.2f} (above 1: jsurgery is faster); "
        f"compile: {compile_ratio:.2f}; best of {args.repeats}"
    )
    if args.with_permutation:
        before = run_seconds["jsurgery, permutation"] / run_seconds["jsurgery"]
        print(f"jsurgery with jax.random.permutation / jsurgery: {before:.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "env_id": ENV_ID,
                    "seeds": args.seeds,
                    "repeats": args.repeats,
                    "config": config.to_dict(),
                    "results": rows,
                    "run_ratio_rejax_over_jsurgery": ratio,
                    "compile_ratio_rejax_over_jsurgery": compile_ratio,
                    "machine": platform.platform(),
                    "cpu_count": os.cpu_count(),
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
