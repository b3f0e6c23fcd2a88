"""LunarLander-v3 (discrete actions, no wind) as a jittable gymnax environment.

The physics is a reduced rigid-body model written in `jax.numpy`, built to reproduce the behaviour
of gymnasium's Box2D `LunarLander-v3` at a fraction of the cost:

* the hull and both legs move as one rigid body (the leg motors hold the legs against their joint
  limits in flight, so the three Box2D bodies move together); its mass, centre of mass and inertia
  are those of the Box2D hull polygon (density 5) and leg boxes (density 1);
* each leg keeps one degree of freedom, its joint deflection away from the rest limit. A leg is
  massless: it stays rigid while the ground torque about its joint is below the motor's 40 N m,
  yields (opens) when the ground pushes harder, and closes again at the motor speed 0.3 rad/s
  (0.39 rad/s with its foot on the ground, Box2D's measured rate there);
* the bottom corners of the legs touch the terrain polyline through sequential-impulse contacts (no
  restitution, friction sqrt(0.2 * 0.1)), with Box2D's contact radius, slop and position correction;
  as in Box2D, a contact is solved only from a step that starts with the foot within the contact
  radius, and a leg reaching the ground within a step is stopped alone (time of impact);
  the legs' contact flags follow Box2D's begin/end events per terrain segment;
* with the lander resting on both legs, the feet's friction converges only partly each step, at
  the rate Box2D's solver converges it (`SWAY_RELAX`), so a push at rest makes it sway as there;
* the hull touching the terrain ends the episode (crash), as in the reference, so its contacts
  only need detecting; the lander is at rest (landing) when Box2D would put it to sleep.

Everything the reference draws at random (terrain heights, the initial force, the engine dispersion)
is drawn with the same distributions from the JAX key. The README's "LunarLander-v3 in JAX" section
lists every deviation from the reference and the measured fidelity.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

OBS_IDS = ("x", "y", "vx", "vy", "angle", "angular_velocity", "left_leg", "right_leg")
ACTION_IDS = ("noop", "left", "main", "right")

# World (gymnasium LunarLander-v3 figures).
FPS = 50
DT = 1.0 / FPS
SCALE = 30.0
GRAVITY = -10.0
VIEWPORT_W, VIEWPORT_H = 600, 400
W = VIEWPORT_W / SCALE
H = VIEWPORT_H / SCALE
CHUNKS = 11
CHUNK_W = W / (CHUNKS - 1)
HELIPAD_Y = H / 4
MAIN_ENGINE_POWER = 13.0
SIDE_ENGINE_POWER = 0.6
MAIN_ENGINE_Y_LOCATION = 4.0
SIDE_ENGINE_HEIGHT = 14.0
SIDE_ENGINE_OFFSET_X = 17.0  # the reference offsets side thrust by 17 px across but 14 px up
SIDE_ENGINE_AWAY = 12.0
LEG_AWAY, LEG_DOWN = 20.0, 18.0
LEG_W, LEG_H = 2.0, 8.0
LEG_MOTOR_TORQUE = 40.0
LEG_MOTOR_SPEED = 0.3
# A leg closing with its foot on the ground runs ahead of the motor speed in Box2D (its solver
# does not converge the light leg's joint): dropped on the pad, a leg closes 0.085 rad in 11 steps,
# peaking at 0.58 rad/s. LEG_GROUND_CLOSE_SPEED is that mean rate.
LEG_GROUND_CLOSE_SPEED = 0.39
LEG_REST_ANGLE = 0.35  # |leg angle - hull angle| at the joint limit the motor pushes against
LEG_TRAVEL = 0.5  # joint range between the two limits
LEG_OPEN_AFTER_RESET = 0.1419  # joint deflection Box2D's solver leaves after the reset step
INITIAL_SPIN = -4.579e-4  # rad/s per newton of horizontal initial force, fitted to Box2D's reset
HULL_POLY = np.array([(-14, 17), (-17, 0), (-17, -10), (17, -10), (17, 0), (14, 17)], np.float64)

# Box2D solver constants (b2Settings.h) and material figures of the reference.
CONTACT_RADIUS = 0.02  # polygon radius + edge radius
LINEAR_SLOP = 0.005
BAUMGARTE = 0.2
MAX_LINEAR_CORRECTION = 0.2
LEG_FRICTION = math.sqrt(0.2 * 0.1)  # legs keep Box2D's default 0.2, the terrain has 0.1
# Separation at which Box2D's time of impact stops a body arriving within a step:
# max(LINEAR_SLOP, CONTACT_RADIUS - 3 * LINEAR_SLOP).
TOI_TARGET = 0.005
SLEEP_LINEAR = 0.01
SLEEP_ANGULAR = 2.0 / 180.0 * math.pi
TIME_TO_SLEEP = 0.5
# Box2D's sequential-impulse solver (the reference steps with 6 * 30 velocity iterations) does not
# converge the friction of the light leg bodies: with the lander resting on both legs, each step
# closes only SWAY_RELAX of the gap between the warm-started total friction impulse and the one
# that would stop the feet (its slowest mode shrinks by 0.99378 per iteration: 1 - 0.99378**180 =
# 0.675, measured on Box2D over 30 to 720 iterations). What is left makes the resting lander sway
# for a few steps after a push, and spins the hull by SWAY_SPIN rad/s per m/s of that leftover
# horizontal velocity. Both constants are fitted on the flat helipad.
SWAY_RELAX = 0.675
SWAY_SPIN = -0.1465


def _mass_properties() -> dict[str, Any]:
    """Mass, centres and inertias of the Box2D bodies, with the legs at their rest limits."""
    poly = HULL_POLY / SCALE
    area, centroid, second = 0.0, np.zeros(2), 0.0
    for i in range(len(poly)):
        p, q = poly[i], poly[(i + 1) % len(poly)]
        cross = p[0] * q[1] - p[1] * q[0]
        area += cross / 2
        centroid += cross * (p + q) / 6
        second += cross * (p @ p + p @ q + q @ q) / 12
    centroid /= area
    hull_mass = 5.0 * area
    hull_inertia = 5.0 * second - hull_mass * centroid @ centroid
    hw, hh = LEG_W / SCALE, LEG_H / SCALE
    leg_mass = 1.0 * 4 * hw * hh
    leg_inertia = leg_mass * (hw * hw + hh * hh) / 3
    legs = leg_centres(np.zeros(2))
    mass = hull_mass + 2 * leg_mass
    com = (hull_mass * centroid + leg_mass * legs.sum(0)) / mass
    inertia = hull_inertia + hull_mass * np.sum((centroid - com) ** 2)
    inertia += sum(leg_inertia + leg_mass * np.sum((c - com) ** 2) for c in legs)
    return dict(
        hull_mass=hull_mass, hull_centroid=centroid, leg_mass=leg_mass, mass=mass, inertia=inertia
    )


LEG_SIDE = np.array([-1.0, 1.0])  # the reference's i for legs[0], legs[1]; legs[0] sits at +x


def leg_angles(leg_open, xp=np):
    """Leg angle relative to the hull for a joint deflection `leg_open` (2,)."""
    return -LEG_SIDE * (LEG_REST_ANGLE + leg_open)


def leg_centres(leg_open, xp=np):
    """Leg box centres in the hull frame, (2, 2): the joint sits at the hull origin."""
    a = leg_angles(leg_open, xp)
    c, s = xp.cos(a), xp.sin(a)
    ax, ay = LEG_SIDE * LEG_AWAY / SCALE, LEG_DOWN / SCALE
    return -xp.stack([c * ax - s * ay, s * ax + c * ay], axis=-1)


MASS = _mass_properties()
_M = float(MASS["mass"])
_I = float(MASS["inertia"])
_HULL_C = MASS["hull_centroid"].astype(np.float32)
LEG_CORNERS = (
    np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float32)
    * np.array([LEG_W, LEG_H], np.float32)
    / SCALE
)  # leg box corners in the leg frame


def _com_offset(leg_open):
    """Centre of mass of hull + legs in the hull frame, (2,)."""
    legs = leg_centres(leg_open, jnp)
    hull = MASS["hull_mass"] * jnp.asarray(_HULL_C)
    return (hull + MASS["leg_mass"] * legs.sum(0)) / _M


def _rotate(a, v):
    c, s = jnp.cos(a), jnp.sin(a)
    return jnp.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def _dot(a, b):
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]


def _cross(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _terrain(terrain_y, x):
    """Height and unit normal of the terrain segment under each `x` (outside [0, W]: no ground)."""
    seg = jnp.clip(jnp.floor(x / CHUNK_W), 0, CHUNKS - 2).astype(jnp.int32)
    y0, y1 = terrain_y[seg], terrain_y[seg + 1]
    x0 = seg.astype(jnp.float32) * CHUNK_W
    dy = y1 - y0
    norm = jnp.sqrt(dy * dy + CHUNK_W * CHUNK_W)
    normal = jnp.stack([-dy / norm, jnp.full_like(dy, CHUNK_W) / norm], axis=-1)
    return x0, y0, normal


def _separation(terrain_y, points):
    """Signed distance of world `points` (..., 2) from the terrain line under them, and normals."""
    x0, y0, normal = _terrain(terrain_y, points[..., 0])
    s = normal[..., 0] * (points[..., 0] - x0) + normal[..., 1] * (points[..., 1] - y0)
    inside = (points[..., 0] >= 0.0) & (points[..., 0] <= W)
    return jnp.where(inside, s, jnp.inf), normal


def smooth_terrain(heights):
    """The reference's terrain: 12 raw heights -> 11 chunk heights with the flat helipad.

    Args:
      heights: (12,) raw heights drawn uniformly in [0, H/2).

    Returns:
      (11,) heights of the terrain vertices at x = 0, 2, ..., 20.
    """
    mid = CHUNKS // 2
    h = jnp.asarray(heights, jnp.float32).at[mid - 2 : mid + 3].set(HELIPAD_Y)
    prev = jnp.concatenate([h[-1:], h[: CHUNKS - 1]])  # the reference wraps height[-1]
    return 0.33 * (prev + h[:CHUNKS] + h[1 : CHUNKS + 1])


@struct.dataclass
class EnvState(environment.EnvState):
    """Lander state. `pos`/`vel` are those of the centre of mass of hull + legs."""

    pos: jax.Array
    vel: jax.Array
    angle: jax.Array
    angular_velocity: jax.Array
    leg_open: jax.Array  # (2,) joint deflection from the rest limit, in [0, LEG_TRAVEL]
    leg_rate: jax.Array  # (2,) its rate over the last step
    leg_contact: jax.Array  # (2,) bool, the reference's `ground_contact` flags
    leg_touch: jax.Array  # (2, CHUNKS - 1) bool, leg near each terrain segment at this pose
    leg_seen: jax.Array  # (2, CHUNKS - 1) bool, the same one step earlier
    hull_touch: jax.Array  # bool, hull within the contact radius of the terrain at this pose
    impulse: jax.Array  # (4, 2) normal and friction impulses of the feet, warm start
    terrain_y: jax.Array  # (11,)
    prev_shaping: jax.Array
    sleep_time: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 1000
    initial_random: float = 1000.0  # bound of the uniform initial force, newtons


def _hull_pose(state: EnvState):
    """Hull origin (Box2D's `lander.position`) and hull centroid velocity (`linearVelocity`)."""
    com = _com_offset(state.leg_open)
    origin = state.pos - _rotate(state.angle, com)
    arm = _rotate(state.angle, jnp.asarray(_HULL_C) - com)
    # Legs swinging about their joints move the hull the other way (momentum is conserved).
    legs = leg_centres(state.leg_open, jnp)
    swing = (-LEG_SIDE * state.leg_rate)[:, None] * jnp.stack([-legs[:, 1], legs[:, 0]], -1)
    drift = _rotate(state.angle, MASS["leg_mass"] / _M * swing.sum(0))
    vel = state.vel + state.angular_velocity * jnp.stack([-arm[1], arm[0]]) - drift
    return origin, vel


def observe(state: EnvState) -> jax.Array:
    """The reference's 8 normalised values, float32."""
    origin, vel = _hull_pose(state)
    return jnp.stack(
        [
            (origin[0] - W / 2) / (W / 2),
            (origin[1] - (HELIPAD_Y + LEG_DOWN / SCALE)) / (H / 2),
            vel[0] * (W / 2) / FPS,
            vel[1] * (H / 2) / FPS,
            state.angle,
            20.0 * state.angular_velocity / FPS,
            state.leg_contact[0].astype(jnp.float32),
            state.leg_contact[1].astype(jnp.float32),
        ]
    ).astype(jnp.float32)


def _shaping(obs):
    return (
        -100.0 * jnp.sqrt(obs[0] * obs[0] + obs[1] * obs[1])
        - 100.0 * jnp.sqrt(obs[2] * obs[2] + obs[3] * obs[3])
        - 100.0 * jnp.abs(obs[4])
        + 10.0 * obs[6]
        + 10.0 * obs[7]
    )


def _engine_impulse(state: EnvState, action, dispersion):
    """Linear and angular velocity change of the engines, and the fuel used."""
    origin, _ = _hull_pose(state)
    tip = jnp.stack([jnp.sin(state.angle), jnp.cos(state.angle)])
    side = jnp.stack([-tip[1], tip[0]])
    d0, d1 = dispersion[0], dispersion[1]
    main = action == 2
    along = MAIN_ENGINE_Y_LOCATION / SCALE + 2.0 * d0
    m_off = jnp.stack([tip[0] * along + side[0] * d1, -tip[1] * along - side[1] * d1])
    m_at = origin + m_off
    m_imp = -m_off * MAIN_ENGINE_POWER * main.astype(jnp.float32)
    lateral = (action == 1) | (action == 3)
    direction = (action - 2).astype(jnp.float32)
    across = 3.0 * d1 + direction * SIDE_ENGINE_AWAY / SCALE
    s_off = jnp.stack([tip[0] * d0 + side[0] * across, -tip[1] * d0 - side[1] * across])
    s_at = (
        origin
        + s_off
        + jnp.stack([-tip[0] * SIDE_ENGINE_OFFSET_X / SCALE, tip[1] * SIDE_ENGINE_HEIGHT / SCALE])
    )
    s_imp = -s_off * SIDE_ENGINE_POWER * lateral.astype(jnp.float32)
    dv = (m_imp + s_imp) / _M
    dw = (_cross(m_at - state.pos, m_imp) + _cross(s_at - state.pos, s_imp)) / _I
    return dv, dw, main.astype(jnp.float32), lateral.astype(jnp.float32)


def _leg_frames(leg_open, pos, angle):
    """Joint (hull origin) position, leg centres (2, 2) and leg angles (2,) in the world."""
    com = _com_offset(leg_open)
    joint = pos - _rotate(angle, com)
    centres = joint + _rotate(angle, leg_centres(leg_open, jnp))
    return joint, centres, angle + leg_angles(leg_open, jnp)


def _leg_corners(centres, leg_angles):
    """World corners of both leg boxes, (2, 4, 2)."""
    return centres[:, None, :] + _rotate(leg_angles[:, None], jnp.asarray(LEG_CORNERS)[None])


def _leg_touching(terrain_y, centres, leg_angles):
    """Which terrain segments each leg box is within the contact radius of, (2, CHUNKS - 1)."""
    corners = _leg_corners(centres, leg_angles)  # (2, 4, 2)
    xs = jnp.arange(CHUNKS, dtype=jnp.float32) * CHUNK_W
    verts = jnp.stack([xs, terrain_y], -1)  # (11, 2)
    a, d = verts[:-1], verts[1:] - verts[:-1]  # (10, 2)
    rel = corners[:, :, None, :] - a  # (2, 4, 10, 2)
    t = jnp.sum(rel * d, -1) / jnp.sum(d * d, -1)
    within = (t > 0.0) & (t < 1.0)
    closest = rel - jnp.clip(t, 0.0, 1.0)[..., None] * d
    dist = jnp.sqrt(jnp.sum(closest * closest, -1))
    below = within & (_cross(d, rel) < 0.0)  # under the segment's line
    corner_hit = ((dist < CONTACT_RADIUS) | below).any(1)  # (2, 10)
    local = _rotate(-leg_angles[:, None], verts[None] - centres[:, None, :])  # (2, 11, 2)
    half = jnp.asarray(LEG_CORNERS[2])
    out = jnp.maximum(jnp.abs(local) - half, 0.0)
    vertex_hit = jnp.sum(out * out, -1) < CONTACT_RADIUS**2  # (2, 11)
    return corner_hit | vertex_hit[:, :-1] | vertex_hit[:, 1:]


def _hull_gap(terrain_y, joint, angle):
    """Smallest distance between the hull polygon and the terrain (negative: overlap)."""
    poly = jnp.asarray(HULL_POLY / SCALE, jnp.float32)
    sep, _ = _separation(terrain_y, joint + _rotate(angle, poly))
    xs = jnp.arange(CHUNKS, dtype=jnp.float32) * CHUNK_W
    local = _rotate(-angle, jnp.stack([xs, terrain_y], -1) - joint)  # (11, 2) hull frame
    edge = jnp.roll(poly, -1, axis=0) - poly
    outward = jnp.stack([edge[:, 1], -edge[:, 0]], -1) / jnp.linalg.norm(edge, axis=-1)[:, None]
    dist = jnp.sum((local[:, None, :] - poly[None]) * outward, -1)  # counter-clockwise polygon
    return jnp.minimum(jnp.min(sep), jnp.min(jnp.max(dist, axis=-1)))


# The two bottom corners of each leg carry the contact forces.
_FEET = np.array([0, 1, 4, 5])
_FOOT_LEG = np.array([0, 0, 1, 1])


def physics_step(state: EnvState, action, dispersion, iterations: int = 6):
    """Advance the lander by one 1/50 s step.

    Contact events follow Box2D's timing: contacts found at the start of a step (from the pose the
    previous step ended in) are reported after it, and a hull that sweeps into the ground within
    a step (Box2D's time-of-impact event) is reported at once.

    Args:
      state: current state.
      action: int32 scalar, 0 noop, 1 left engine, 2 main engine, 3 right engine.
      dispersion: (2,) engine dispersion, uniform in [-1/SCALE, 1/SCALE) in the reference.
      iterations: contact solver iterations.

    Returns:
      The new state, the crash flag, and the main and side engine powers spent.
    """
    dv, dw, m_power, s_power = _engine_impulse(state, action, dispersion)
    vel = state.vel + dv + jnp.array([0.0, GRAVITY * DT], jnp.float32)
    omega = state.angular_velocity + dw

    # Foot contacts, from the pose at the start of the step.
    joint, centres, leg_angles = _leg_frames(state.leg_open, state.pos, state.angle)
    feet = _leg_corners(centres, leg_angles).reshape(8, 2)[_FEET]
    sep, normal = _separation(state.terrain_y, feet)
    tangent = jnp.stack([normal[:, 1], -normal[:, 0]], axis=-1)
    arm = feet - state.pos
    rn, rt = _cross(arm, normal), _cross(arm, tangent)
    k_n = 1.0 / (1.0 / _M + rn * rn / _I)
    k_t = 1.0 / (1.0 / _M + rt * rt / _I)
    open_sign = -LEG_SIDE[_FOOT_LEG].astype(np.float32)  # d(leg angle) / d(leg_open)
    lever = open_sign * _cross(feet - joint, normal)  # d(separation) / d(leg_open)
    # Box2D solves a foot's contact only from a step that starts with the foot within the contact
    # radius. A leg with no foot that close is left to time of impact (`fresh`, below).
    near = sep < CONTACT_RADIUS
    grounded = near.reshape(2, 2).any(1)
    fresh = ~grounded
    # Foot speed of a closing leg, no further than the rest limit within the step.
    speed = jnp.where(grounded, LEG_GROUND_CLOSE_SPEED, LEG_MOTOR_SPEED)
    closing = jnp.minimum(speed[_FOOT_LEG], state.leg_open[_FOOT_LEG] / DT)
    motor = -closing * lever
    # A yielding leg swings its foot along the ground too (d(tangential position) / d(leg_open));
    # the friction that resists that slide takes part of the load off the motor.
    lever_t = open_sign * _cross(feet - joint, tangent)
    room = state.leg_open[_FOOT_LEG] < LEG_TRAVEL
    cost = jnp.maximum(lever - LEG_FRICTION * jnp.abs(lever_t), 0.0)
    cost = jnp.where(room, cost, 0.0)  # motor torque per unit normal impulse
    budget = LEG_MOTOR_TORQUE * DT
    lam = jnp.where(near[:, None], state.impulse, 0.0)
    warm = lam[:, :1] * normal + lam[:, 1:] * tangent
    vel = vel + warm.sum(0) / _M
    omega = omega + _cross(arm, warm).sum() / _I
    perp = jnp.stack([-arm[:, 1], arm[:, 0]], axis=-1)

    # Sequential impulses; one loop iteration visits the four feet.
    def solve(_, carry):
        vel, omega, lam_n, lam_t = carry
        lam_n, lam_t = list(lam_n), list(lam_t)
        for i in range(4):
            other = i ^ 1  # the other foot of the same leg
            pv = vel + omega * perp[i]
            vn = _dot(pv, normal[i]) + motor[i]
            new = jnp.maximum(lam_n[i] - k_n[i] * vn, 0.0)
            left = jnp.maximum(budget - lam_n[other] * cost[other], 0.0)
            new = jnp.where(
                cost[i] > 1e-6, jnp.minimum(new, left / jnp.maximum(cost[i], 1e-6)), new
            )
            new = jnp.where(near[i], new, 0.0)
            dn = new - lam_n[i]
            pv = pv + dn * (normal[i] / _M + rn[i] / _I * perp[i])
            limit = LEG_FRICTION * new
            new_t = jnp.clip(lam_t[i] - k_t[i] * _dot(pv, tangent[i]), -limit, limit)
            p = dn * normal[i] + (new_t - lam_t[i]) * tangent[i]
            vel = vel + p / _M
            omega = omega + _cross(arm[i], p) / _I
            lam_n[i], lam_t[i] = new, new_t
        return vel, omega, tuple(lam_n), tuple(lam_t)

    lam_n, lam_t = tuple(lam[i, 0] for i in range(4)), tuple(lam[i, 1] for i in range(4))
    vel, omega, lam_n, lam_t = jax.lax.fori_loop(0, iterations, solve, (vel, omega, lam_n, lam_t))
    lam_n, lam_t = jnp.stack(lam_n), jnp.stack(lam_t)

    used = (lam_n * cost).reshape(2, 2).sum(1)
    yielding = (used >= budget * (1.0 - 1e-4)) & (state.leg_open < LEG_TRAVEL)
    leg_rate = jnp.where(yielding, 0.0, jnp.where(state.leg_open > 0.0, -speed, 0.0))

    # Friction at rest converges only partly in Box2D (see SWAY_RELAX): relax the total friction
    # impulse of the feet from its warm start towards the impulse that would stop them.
    resting = (
        (lam_n > 0.0).reshape(2, 2).any(1).all() & jnp.all(state.leg_open == 0.0) & ~yielding.any()
    )
    share = lam_n / jnp.maximum(lam_n.sum(), 1e-9)
    mean_tangent = jnp.sum(share[:, None] * tangent, 0)
    slip = jnp.sum(share * _dot(vel + omega * perp, tangent))  # feet speed after the solve
    warm_total, solved_total = jnp.sum(lam[:, 1]), jnp.sum(lam_t)
    stopping = solved_total - _M * slip
    relaxed = warm_total + SWAY_RELAX * (stopping - warm_total)
    cap = LEG_FRICTION * lam_n.sum()
    leftover = jnp.where(resting, jnp.clip(relaxed, -cap, cap) - solved_total, 0.0)
    vel = vel + leftover * mean_tangent / _M
    omega = jnp.where(resting, SWAY_SPIN * leftover / _M, omega)
    lam_t = lam_t + leftover * share

    # Integrate, then correct penetrations: a yielding leg opens, the body is pushed out.
    pos = state.pos + vel * DT
    angle = state.angle + omega * DT
    leg_open = jnp.maximum(state.leg_open + leg_rate * DT, 0.0)
    moved = leg_open - state.leg_open
    sep_end = sep + DT * jnp.sum((vel + omega * perp) * normal, -1) + moved[_FOOT_LEG] * lever
    need = jnp.where(
        lever > 1e-3, (CONTACT_RADIUS - LINEAR_SLOP - sep_end) / jnp.maximum(lever, 1e-3), 0.0
    )
    need = jnp.where(near, need, -jnp.inf)  # only feet in contact hold a leg
    # A leg held at the motor's torque limit follows the ground: it opens as far as the ground
    # pushes its foot, and closes (no faster than the motor) as the lander rises off it.
    opening = jnp.where(yielding, jnp.maximum(need.reshape(2, 2).max(1), -speed * DT), 0.0)
    # Time of impact stops a fresh leg alone, as it reaches TOI_TARGET from the ground; the rest of
    # the lander keeps its speed, so the leg ends the step opened by as much.
    caught = jnp.where(
        lever > 1e-3, jnp.maximum(TOI_TARGET - sep_end, 0.0) / jnp.maximum(lever, 1e-3), 0.0
    )
    opening = jnp.where(fresh, caught.reshape(2, 2).max(1), opening)
    opening = jnp.clip(opening, -leg_open, LEG_TRAVEL - leg_open)
    leg_open = leg_open + opening
    sep_end = sep_end + opening[_FOOT_LEG] * lever

    def push_out(_, carry):
        dpos, dang = carry
        for i in range(4):
            s = sep_end[i] + _dot(dpos, normal[i]) + dang * rn[i]
            c = BAUMGARTE * (s - CONTACT_RADIUS + LINEAR_SLOP)
            c = jnp.where(near[i], jnp.clip(c, -MAX_LINEAR_CORRECTION, 0.0), 0.0)
            dpos = dpos - c * k_n[i] * normal[i] / _M
            dang = dang - c * k_n[i] * rn[i] / _I
        return dpos, dang

    dpos, dang = jax.lax.fori_loop(
        0, 3, push_out, (jnp.zeros(2, jnp.float32), jnp.zeros((), jnp.float32))
    )
    pos = pos + dpos
    angle = angle + dang

    # Contact events, Box2D style: begin/end per terrain segment, the last event sets the flag.
    began = (state.leg_touch & ~state.leg_seen).any(1)
    ended = (state.leg_seen & ~state.leg_touch).any(1)
    leg_contact = jnp.where(ended, False, jnp.where(began, True, state.leg_contact))
    joint, centres, leg_angles = _leg_frames(leg_open, pos, angle)
    hull_gap = _hull_gap(state.terrain_y, joint, angle)
    crashed = state.hull_touch | (hull_gap < LINEAR_SLOP)

    # Box2D's sleep rule over the island of hull and legs.
    leg_arm = centres - pos
    leg_vel = vel + omega * jnp.stack([-leg_arm[:, 1], leg_arm[:, 0]], axis=-1)
    still = (
        (jnp.sum(vel * vel) <= SLEEP_LINEAR**2)
        & jnp.all(jnp.sum(leg_vel * leg_vel, -1) <= SLEEP_LINEAR**2)
        & (omega * omega <= SLEEP_ANGULAR**2)
        & jnp.all(leg_rate == 0.0)
        & jnp.all(opening == 0.0)
    )
    new = state.replace(
        pos=pos,
        vel=vel,
        angle=angle,
        angular_velocity=omega,
        leg_open=leg_open,
        leg_rate=(leg_open - state.leg_open) / DT,
        leg_contact=leg_contact,
        leg_touch=_leg_touching(state.terrain_y, centres, leg_angles),
        leg_seen=state.leg_touch,
        hull_touch=hull_gap < CONTACT_RADIUS,
        impulse=jnp.stack([lam_n, lam_t], -1),
        sleep_time=jnp.where(still, state.sleep_time + DT, 0.0),
    )
    return new, crashed, m_power, s_power


def _start(pos, vel, angle, angular_velocity, leg_open, terrain_y):
    """The first observation and state of an episode: the lander in flight, with no contact yet."""
    state = EnvState(
        pos=pos,
        vel=vel,
        angle=angle,
        angular_velocity=angular_velocity,
        leg_open=leg_open,
        leg_rate=jnp.zeros((2,), jnp.float32),
        leg_contact=jnp.zeros((2,), bool),
        leg_touch=jnp.zeros((2, CHUNKS - 1), bool),
        leg_seen=jnp.zeros((2, CHUNKS - 1), bool),
        hull_touch=jnp.zeros((), bool),
        impulse=jnp.zeros((4, 2), jnp.float32),
        terrain_y=terrain_y,
        prev_shaping=jnp.zeros((), jnp.float32),
        sleep_time=jnp.zeros((), jnp.float32),
        time=jnp.zeros((), jnp.int32),
    )
    obs = observe(state)
    return obs, state.replace(prev_shaping=_shaping(obs))


class LunarLander(environment.Environment[EnvState, EnvParams]):
    """gymnasium's LunarLander-v3 (discrete, no wind) in JAX.

    Args:
      solver_iterations: contact solver iterations per step.

    Example:
      >>> import jax
      >>> env = LunarLander()
      >>> obs, state = env.reset(jax.random.key(0))
      >>> obs.shape
      (8,)
    """

    def __init__(self, solver_iterations: int = 6):
        super().__init__()
        self.solver_iterations = solver_iterations
        self.obs_shape = (8,)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    @property
    def name(self) -> str:
        return "LunarLander-v3"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        high = jnp.array([2.5, 2.5, 10.0, 10.0, 2 * math.pi, 10.0, 1.0, 1.0], jnp.float32)
        low = high.at[6:].set(0.0) * jnp.array([-1, -1, -1, -1, -1, -1, 1, 1], jnp.float32)
        return spaces.Box(low, high, (8,), jnp.float32)

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        return observe(state)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        raise NotImplementedError(
            "LunarLander decides termination inside `step_env` from the step's contacts; "
            "read `terminated` (or `info['crashed']`, `info['landed']`) from `step`."
        )

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        dispersion = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) / SCALE
        return self.step_with_dispersion(state, action, dispersion, params)

    def step_with_dispersion(self, state: EnvState, action, dispersion, params: EnvParams):
        """`step_env` with the engine dispersion given, (2,) in [-1/SCALE, 1/SCALE)."""
        action = jnp.asarray(action, jnp.int32)
        new, crashed, m_power, s_power = physics_step(
            state, action, dispersion, self.solver_iterations
        )
        obs = observe(new)
        shaping = _shaping(obs)
        reward = shaping - state.prev_shaping - 0.3 * m_power - 0.03 * s_power
        crashed = crashed | (jnp.abs(obs[0]) >= 1.0)
        landed = new.sleep_time >= TIME_TO_SLEEP - 1e-6
        reward = jnp.where(crashed, -100.0, reward)
        reward = jnp.where(landed, 100.0, reward).astype(jnp.float32)
        new = new.replace(prev_shaping=shaping, time=state.time + 1)
        terminated = crashed | landed
        info = {"crashed": crashed, "landed": landed}
        return obs, new, reward, terminated, info

    def reset_env(self, key, params: EnvParams):
        k_terrain, k_force, k_step = jax.random.split(key, 3)
        heights = jax.random.uniform(k_terrain, (CHUNKS + 1,), jnp.float32, 0.0, H / 2)
        force = jax.random.uniform(
            k_force, (2,), jnp.float32, -params.initial_random, params.initial_random
        )
        return self.reset_from_draws(heights, force)

    def reset_from_draws(self, heights, force):
        """The reference's reset with its random draws given.

        Args:
          heights: (12,) raw terrain heights, uniform in [0, H/2) in the reference.
          force: (2,) initial force on the hull, newtons (zero for no initial push).

        Returns:
          obs and state after the reset's no-op step, as the reference's `reset` returns them.
        """
        terrain_y = smooth_terrain(heights)
        hull = MASS["hull_mass"] * (np.array([W / 2, H]) + MASS["hull_centroid"])
        legs = MASS["leg_mass"] * 2 * np.array([W / 2, H])
        com0 = jnp.asarray((hull + legs) / _M, jnp.float32)
        vel = jnp.asarray(force, jnp.float32) * DT / _M + jnp.array(
            [0.0, GRAVITY * DT], jnp.float32
        )
        # Box2D pulls the legs onto their joints during this step; with a horizontal force on the
        # hull that leaves the lander spinning slightly (a linear fit, residual 2e-7 rad/s).
        spin = INITIAL_SPIN * jnp.asarray(force, jnp.float32)[0]
        leg_open = jnp.full((2,), LEG_OPEN_AFTER_RESET, jnp.float32)
        return _start(com0 + vel * DT, vel, spin * DT, spin, leg_open, terrain_y)

    def state_from_hull(
        self, terrain_y, position, velocity, angle, angular_velocity, leg_open=(0.0, 0.0)
    ):
        """A state with the hull placed as Box2D reports it.

        Args:
          terrain_y: (11,) terrain vertex heights.
          position: (2,) hull origin (`lander.position`).
          velocity: (2,) hull centroid velocity (`lander.linearVelocity`).
          angle: hull angle.
          angular_velocity: hull angular velocity.
          leg_open: (2,) joint deflections from the rest limits.

        Returns:
          obs and state.
        """
        leg_open = jnp.asarray(leg_open, jnp.float32)
        angle = jnp.asarray(angle, jnp.float32)
        omega = jnp.asarray(angular_velocity, jnp.float32)
        com = _com_offset(leg_open)
        pos = jnp.asarray(position, jnp.float32) + _rotate(angle, com)
        arm = _rotate(angle, jnp.asarray(_HULL_C) - com)
        vel = jnp.asarray(velocity, jnp.float32) - omega * jnp.stack([-arm[1], arm[0]])
        return _start(pos, vel, angle, omega, leg_open, jnp.asarray(terrain_y, jnp.float32))
