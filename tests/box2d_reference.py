"""Driving gymnasium's Box2D LunarLander-v3 into the states the JAX model is compared in.

Test support, shared with `benchmarks/lunar_lander_fidelity.py`; not part of the package. The
functions that touch Box2D import gymnasium when called, so this module imports without
`gymnasium[box2d]`.
"""

from __future__ import annotations

import numpy as np

from jsurgery.envs.lunar_lander import (
    CHUNKS,
    CONTACT_RADIUS,
    DT,
    HELIPAD_Y,
    LEG_CORNERS,
    LINEAR_SLOP,
    SCALE,
    H,
    leg_angles,
    leg_centres,
)

__all__ = [
    "DROP_X",
    "PAD_Y",
    "REST_Y",
    "box2d_drop_crashes",
    "drop_heights",
    "keep_awake",
    "lowest_foot",
    "reference_draws",
]

DROP_X = 10.0  # on the helipad
PAD_Y = 0.99 * HELIPAD_Y  # the smoothed helipad height, the same for every terrain


def reference_draws(seed: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The terrain heights, initial force and per-step engine dispersions the reference draws.

    In the order gymnasium's `reset(seed=seed)` and `step` draw them from their generator.
    """
    from gymnasium.utils import seeding

    rng, _ = seeding.np_random(seed)
    heights = rng.uniform(0, H / 2, size=(CHUNKS + 1,))
    force = np.array([rng.uniform(-1000, 1000), rng.uniform(-1000, 1000)])
    rng.uniform(-1, 1), rng.uniform(-1, 1)  # the reset's no-op step
    return heights, force, rng.uniform(-1, 1, size=(steps, 2)) / SCALE


def lowest_foot(angle: float) -> float:
    """Height of the lowest leg corner relative to the hull origin, legs at rest, hull tilted."""
    c, s = np.cos(angle), np.sin(angle)
    lowest = np.inf
    for centre, a in zip(leg_centres(np.zeros(2)), leg_angles(np.zeros(2)), strict=True):
        for kx, ky in LEG_CORNERS:
            px = centre[0] + np.cos(a) * kx - np.sin(a) * ky
            py = centre[1] + np.sin(a) * kx + np.cos(a) * ky
            lowest = min(lowest, s * px + c * py)
    return lowest


#: Hull origin of a lander standing level on its feet on the pad: Box2D keeps resting shapes
#: ``CONTACT_RADIUS - LINEAR_SLOP`` apart.
REST_Y = PAD_Y - lowest_foot(0.0) + CONTACT_RADIUS - LINEAR_SLOP


def drop_heights(angle: float, speed: float, phases: int) -> np.ndarray:
    """Hull origins for drops onto the pad: the lowest foot starts 0.05 m up plus a fraction
    ``(k + 0.5) / phases`` of one step's travel at ``speed``, so the drops touch down at ``phases``
    evenly spread points within a step."""
    fractions = (np.arange(phases) + 0.5) / phases
    return PAD_Y - lowest_foot(angle) + 0.05 + fractions * speed * DT


def keep_awake(ref) -> None:
    """Resets Box2D's sleep timers of the lander's bodies; the dynamics are unchanged."""
    for body in [ref.lander, *ref.legs]:
        body.awake = True


def box2d_drop_crashes(angle: float, speed: float, y: float, steps: int = 60) -> bool:
    """Box2D's lander, legs at rest, hull origin at (DROP_X, y) tilted by `angle`, falling straight
    down at `speed` onto the flat helipad with no engine; True if the episode ends in a crash."""
    import gymnasium as gym

    ref = gym.make("LunarLander-v3").unwrapped
    ref.reset(seed=0)
    c, s = np.cos(angle), np.sin(angle)
    ref.lander.position = (DROP_X, y)
    ref.lander.angle = angle
    ref.lander.linearVelocity = (0.0, -speed)
    ref.lander.angularVelocity = 0.0
    rest = zip(leg_centres(np.zeros(2)), leg_angles(np.zeros(2)), strict=True)
    for leg, ((px, py), a) in zip(ref.legs, rest, strict=True):
        leg.position = (DROP_X + c * px - s * py, y + s * px + c * py)
        leg.angle = angle + a
        leg.linearVelocity = (0.0, -speed)
        leg.angularVelocity = 0.0
    keep_awake(ref)
    for _ in range(steps):
        _, reward, terminated, *_ = ref.step(0)
        if terminated:
            return reward == -100
    return False
