"""LunarLander: the gymnax contract, the reference's rewards and endings, and Box2D fidelity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from box2d_reference import (
    DROP_X,
    PAD_Y,
    REST_Y,
    box2d_drop_crashes,
    drop_heights,
    keep_awake,
    reference_draws,
)

from jsurgery.envs import ACTION_IDS, OBS_IDS, LunarLander
from jsurgery.envs.lunar_lander import CHUNKS, DT, HELIPAD_Y, LEG_DOWN, MASS, SCALE, H

ENV = LunarLander()
PARAMS = ENV.default_params
STEP = jax.jit(ENV.step_with_dispersion)  # compiled once for the Box2D comparisons
FLAT = jnp.full((CHUNKS,), PAD_Y, jnp.float32)  # the smoothed helipad height
# The reference's observed height of the hull origin at its start height H; the reset's step moves
# it by at most the initial force's push (the force is at most `initial_random` newtons).
START_Y = (H - (HELIPAD_Y + LEG_DOWN / SCALE)) / (H / 2)
FORCE_PUSH_Y = PARAMS.initial_random * DT**2 / MASS["mass"] / (H / 2)


def shaping(obs):
    """The reference's shaping, from the issue's formula."""
    obs = np.asarray(obs, np.float64)
    return (
        -100 * np.hypot(obs[0], obs[1])
        - 100 * np.hypot(obs[2], obs[3])
        - 100 * abs(obs[4])
        + 10 * obs[6]
        + 10 * obs[7]
    )


def test_contract():
    assert ENV.num_actions == 4 and ENV.name == "LunarLander-v3"
    assert ENV.observation_space(PARAMS).shape == (8,)
    assert ENV.action_space(PARAMS).n == 4
    assert OBS_IDS == ("x", "y", "vx", "vy", "angle", "angular_velocity", "left_leg", "right_leg")
    assert ACTION_IDS == ("noop", "left", "main", "right")
    assert PARAMS.max_steps_in_episode == 1000


def test_reset_is_deterministic_per_key():
    obs, state = ENV.reset(jax.random.key(0), PARAMS)
    again, _ = ENV.reset(jax.random.key(0), PARAMS)
    other, _ = ENV.reset(jax.random.key(1), PARAMS)
    assert obs.shape == (8,) and obs.dtype == jnp.float32
    np.testing.assert_array_equal(obs, again)
    assert not np.array_equal(obs, other)
    # The reset's no-op step has run: one step of gravity, no contact.
    # Gravity and the legs settling onto their joints move it by under 2e-3 more.
    assert abs(float(obs[1]) - START_Y) < FORCE_PUSH_Y + 2e-3
    assert float(obs[6]) == 0.0 and float(obs[7]) == 0.0
    assert int(state.time) == 0


def test_vmapped_steps_are_deterministic_per_key():
    keys = jax.random.split(jax.random.key(2), 64)
    step = jax.jit(jax.vmap(ENV.step, in_axes=(0, 0, 0, None)))
    obs, state = jax.vmap(ENV.reset, in_axes=(0, None))(keys, PARAMS)
    actions = jnp.arange(64, dtype=jnp.int32) % 4
    out = step(keys, state, actions, PARAMS)
    again = step(keys, state, actions, PARAMS)
    assert out[0].shape == (64, 8) and out[0].dtype == jnp.float32
    assert out[2].shape == (64,) and out[3].dtype == jnp.bool_
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("action", "fuel"), [(0, 0.0), (1, 0.03), (2, 0.3), (3, 0.03)], ids=ACTION_IDS
)
def test_engine_fuel_cost_is_charged_on_top_of_shaping(action, fuel):
    obs, state = ENV.reset(jax.random.key(3), PARAMS)
    new_obs, _, reward, terminated, _, _ = ENV.step(jax.random.key(4), state, action, PARAMS)
    assert not bool(terminated)
    expected = shaping(new_obs) - shaping(obs) - fuel
    np.testing.assert_allclose(float(reward), expected, atol=2e-3)


def test_main_engine_pushes_along_the_hull_and_side_engines_turn_it():
    obs, state = ENV.reset(jax.random.key(5), PARAMS)
    after = {a: ENV.step(jax.random.key(6), state, a, PARAMS)[0] for a in range(4)}
    assert after[2][3] > after[0][3] + 0.05  # main engine: less downward speed
    assert after[3][5] < after[0][5] < after[1][5]  # the left engine turns it counter-clockwise


def test_crash_when_the_hull_touches_the_ground():
    obs, state = ENV.state_from_hull(FLAT, (10.0, 4.5), (0.0, -4.0), np.pi, 0.0)
    for t in range(40):
        obs, state, reward, terminated, truncated, info = ENV.step(
            jax.random.key(t), state, 0, PARAMS
        )
        if terminated:
            break
    assert bool(terminated) and float(reward) == -100.0 and not bool(truncated)
    final = info["final_observation"]
    assert float(final[1]) < 0.1  # ended at the ground, upside down
    reset_obs, _ = ENV.reset(jax.random.split(jax.random.key(t))[1], PARAMS)
    np.testing.assert_array_equal(obs, reset_obs)  # auto-reset, as gymnax does


def test_leaving_the_screen_crashes():
    _, state = ENV.state_from_hull(FLAT, (19.9, 8.0), (5.0, 0.0), 0.0, 0.0)
    _, _, reward, terminated, _, info = ENV.step(jax.random.key(0), state, 0, PARAMS)
    assert bool(terminated) and float(reward) == -100.0
    assert abs(float(info["final_observation"][0])) >= 1.0


def test_landing_at_rest_gives_100():
    obs, state = ENV.state_from_hull(FLAT, (10.0, REST_Y + 0.05), (0.0, -0.3), 0.0, 0.0)
    rewards, contacts = [], []
    for t in range(60):
        obs, state, reward, terminated, _, info = ENV.step(jax.random.key(t), state, 0, PARAMS)
        rewards.append(float(reward))
        contacts.append(np.asarray(info["final_observation"][6:]))
        if terminated:
            break
    assert bool(terminated) and bool(info["landed"]) and rewards[-1] == 100.0
    assert 25 <= len(rewards) <= 45  # Box2D sleeps after 0.5 s at rest
    np.testing.assert_array_equal(contacts[-2], [1.0, 1.0])
    assert sum(rewards[:-1]) > 15.0  # +10 per leg contact


def test_truncation_at_1000_steps():
    obs, state = ENV.reset(jax.random.key(7), PARAMS)
    state = state.replace(time=jnp.asarray(999, jnp.int32))
    obs, new, _, terminated, truncated, info = ENV.step(jax.random.key(8), state, 0, PARAMS)
    assert bool(truncated) and not bool(terminated)
    assert int(new.time) == 0 and not np.array_equal(obs, info["final_observation"])


def test_short_trajectory_stays_close_to_box2d():
    pytest.importorskip("Box2D")
    import gymnasium as gym
    import gymnasium.envs.box2d.lunar_lander as reference

    seed = 11
    actions = [0] * 10 + [2] * 15 + [1] * 5 + [3] * 8 + [2] * 12
    heights, _, dispersions = reference_draws(seed, len(actions))  # the force is switched off below
    saved = reference.INITIAL_RANDOM
    reference.INITIAL_RANDOM = 0.0
    try:
        ref = gym.make("LunarLander-v3")
        ref_obs, _ = ref.reset(seed=seed)
    finally:
        reference.INITIAL_RANDOM = saved
    obs, state = ENV.reset_from_draws(jnp.asarray(heights, jnp.float32), jnp.zeros(2))
    np.testing.assert_allclose(obs, ref_obs, atol=2e-3)
    for a, dispersion in zip(actions, jnp.asarray(dispersions, jnp.float32), strict=True):
        ref_obs, ref_reward, *_ = ref.step(a)
        obs, state, reward, _, _ = STEP(state, jnp.int32(a), dispersion, PARAMS)
        np.testing.assert_allclose(obs, ref_obs, atol=1e-3)
        np.testing.assert_allclose(float(reward), ref_reward, atol=0.05)


def _box2d_at_rest(seed):
    """gymnasium's LunarLander-v3 landed by its heuristic pilot, then settled with no-ops."""
    import gymnasium as gym
    from gymnasium.envs.box2d.lunar_lander import heuristic

    ref = gym.make("LunarLander-v3").unwrapped
    obs, _ = ref.reset(seed=seed)
    while not (obs[6] and obs[7]):
        obs, *_ = ref.step(heuristic(ref, obs))
    quiet = 0
    while quiet < 12:  # no-ops until the lander has been still for 12 steps
        keep_awake(ref)
        obs, _, terminated, *_ = ref.step(0)
        assert not terminated
        still = np.hypot(*ref.lander.linearVelocity) < 1e-3
        quiet = quiet + 1 if still and abs(ref.lander.angularVelocity) < 1e-3 else 0
    return ref


@pytest.mark.parametrize("action", [1, 3])
def test_resting_lander_sways_after_a_side_pulse_as_box2d_does(action):
    """Box2D's friction at rest converges only partly per step: the hull sways after a push."""
    pytest.importorskip("Box2D")
    ref = _box2d_at_rest(seed=0)
    terrain = [p[0][1] for p in ref.sky_polys] + [ref.sky_polys[-1][1][1]]
    _, state = ENV.state_from_hull(
        jnp.asarray(terrain, jnp.float32),
        tuple(ref.lander.position),
        (0.0, 0.0),
        ref.lander.angle,
        0.0,
    )
    for _ in range(40):  # settle on the same ground
        obs, state, *_ = STEP(state, jnp.int32(0), jnp.zeros(2, jnp.float32), PARAMS)
    ours, theirs = [], []
    for t in range(10):
        a = action if t == 0 else 0
        bits = ref.np_random.bit_generator.state
        dispersion = [ref.np_random.uniform(-1, 1) / SCALE for _ in range(2)]
        ref.np_random.bit_generator.state = bits  # the reference draws the same two values
        keep_awake(ref)
        ref_obs, *_ = ref.step(a)
        obs, state, *_ = STEP(state, jnp.int32(a), jnp.asarray(dispersion, jnp.float32), PARAMS)
        ours.append(float(obs[2]))
        theirs.append(float(ref_obs[2]))
    ours, theirs = np.array(ours), np.array(theirs)
    # The sideways velocity swings back past zero (by about a quarter of the push) and decays.
    assert np.sign(theirs[2]) == -np.sign(theirs[0]) and abs(theirs[2]) > 1e-3
    np.testing.assert_allclose(ours, theirs, atol=4e-4)


def _jax_drop_crashes(angle, speed, y, steps=60):
    _, state = ENV.state_from_hull(FLAT, (DROP_X, y), (0.0, -speed), angle, 0.0)
    for _ in range(steps):
        _, state, _, terminated, info = STEP(state, jnp.int32(0), jnp.zeros(2), PARAMS)
        if terminated:
            return bool(info["crashed"])
    return False


def test_tilted_hard_landing_crashes_as_often_as_in_box2d():
    """A leg reaching the ground within a step is stopped alone and the hull keeps its speed, as
    Box2D's time of impact does: tilted landings at 1.3-1.5 m/s crash about as often."""
    pytest.importorskip("Box2D")
    tilt, drops = 0.05, []
    for speed in (1.3, 1.4, 1.5):
        for y in drop_heights(tilt, speed, phases=8):  # 8 touchdown points within a step
            drops.append((box2d_drop_crashes(tilt, speed, y), _jax_drop_crashes(tilt, speed, y)))
    theirs, ours = np.mean(drops, axis=0)
    assert theirs > 0.6  # most of these landings crash in Box2D
    assert abs(ours - theirs) <= 0.15, (ours, theirs)


def test_imports_without_box2d():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['Box2D'] = None\n"
        "from jsurgery.envs import LunarLander; print(LunarLander().num_actions)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4"
