"""The PPO surgery experiments: observations added (CartPole, Pendulum), an action added
(Acrobot), and a LayerNorm actor-critic widened (CartPole).

Every arm trains with the environment's PPO preset (:mod:`jsurgery.rl.ppo_presets`) at the
experiment's budget; only the widths and the views (observation and action IDs) differ between the
old and the new network. The ``original`` budgets are the shortest at which the old network has
learned its task on most seeds, so that the four experiments with every arm and 20 seeds run in
well under 20 minutes on a 2-core CPU (9 minutes on idle cores): CartPole 100,000 environment
steps per network, Acrobot 150,000, Pendulum 200,000. The ``tiny`` protocol (a few hundred steps)
is for tests.

Pendulum's old network sees ``cos_theta`` and ``theta_dot`` and the new one adds ``sin_theta``
(which side of the vertical the pendulum is on): of the three two-observation views, this one
learned most in 200,000 steps (20 seeds, mean greedy return -845; ``cos_theta, sin_theta``:
-1,101; ``sin_theta, theta_dot``: -1,012; all three: -179; an untrained network: about -1,260).
Its rewards are scaled by 0.1 (:data:`PENDULUM_REWARD_SCALE`).

Surgery arms (:func:`~jsurgery.rl.ppo_surgery.plan_ppo` keywords):

- ``transplant``: ``recipe="transplant"``, the original study's recipe (copy by IDs, new units
  keep the template's initialisation);
- ``preserving``: ``recipe="preserving"``: the new agent acts and values as the old one (new
  observations read nothing, Net2Net for new hidden units, exact under LayerNorm; a new discrete
  action starts 5 below the old logits' mean, a new continuous dimension at mean 0);
- ``preserving-margin-1`` (Acrobot): the new action 1 below the old logits' mean instead of 5
  (a start probability up to e^-1 of the old ones' share rather than e^-5), so that it is tried;
- ``preserving-noise-0.01``, ``-0.1``, ``-0.5`` (the LayerNorm widening): ``preserving`` with
  ``new_hidden=jsurgery.init.net2net(noise=...)``: under the norm the exact widening gives every
  new unit the same incoming weights (the old ones' mean), which then learn as one unit; the
  noise spreads them, and moves the old agent to first order in it.
"""

from __future__ import annotations

import jsurgery
from jsurgery.experiments.ppo import PpoSurgery

CARTPOLE_OBS = ("x", "x_dot", "theta", "theta_dot")
ACROBOT_ACTIONS = ("torque-1", "noop", "torque+1")
PENDULUM_OBS = ("cos_theta", "sin_theta", "theta_dot")

#: Pendulum's rewards (about -16 to 0 per step) scaled for the value targets, as the preset scales
#: them: with 1.0, 20 seeds of the full view reach a mean greedy return of -789 after 200,000
#: steps; with 0.1, -179.
PENDULUM_REWARD_SCALE = 0.1

TRANSPLANT = {"recipe": "transplant"}
PRESERVING = {"recipe": "preserving"}
RECIPES = {"transplant": TRANSPLANT, "preserving": PRESERVING}

#: Relative noises on the new units' incoming weights in ``ppo-cartpole-ln-widen``'s noise arms.
WIDENING_NOISES = (0.01, 0.1, 0.5)

#: Environment steps per network of each experiment's ``original`` protocol.
CARTPOLE_STEPS = 100_000
ACROBOT_STEPS = 150_000
PENDULUM_STEPS = 200_000


def tiny_ppo(config):
    """A few hundred steps in small rollouts: the ``tiny`` protocol, for tests."""
    return config.replace(
        num_envs=2,
        num_steps=32,
        num_minibatches=2,
        num_epochs=2,
        total_steps=256,
        eval_every=128,
        eval_episodes=2,
    )


def _noise_arms() -> dict:
    """``preserving`` with Net2Net noise on the new hidden units, one arm per noise."""
    return {
        f"preserving-noise-{noise:g}": {**PRESERVING, "new_hidden": jsurgery.init.net2net(noise)}
        for noise in WIDENING_NOISES
    }


def _protocols(original) -> dict:
    return {"original": original, "tiny": tiny_ppo(original)}


def ppo_experiments() -> list[PpoSurgery]:
    """The four PPO surgery experiments, in the order ``jsurgery list`` shows them."""
    from jsurgery.rl.ppo_presets import (
        acrobot_ppo_config,
        cartpole_ppo_config,
        pendulum_ppo_config,
    )

    cartpole = cartpole_ppo_config(CARTPOLE_STEPS)
    return [
        PpoSurgery(
            name="ppo-cartpole-add-obs",
            description="CartPole, PPO: (64, 64) actor-critic seeing x_dot, theta -> all four "
            "observations",
            env_id="CartPole-v1",
            old_obs=("x_dot", "theta"),
            new_obs=CARTPOLE_OBS,
            old_hidden=(64, 64),
            new_hidden=(64, 64),
            configs=_protocols(cartpole),
            surgery=RECIPES,
        ),
        PpoSurgery(
            name="ppo-acrobot-add-action",
            description="Acrobot, PPO: actions torque-1, torque+1 (64, 64) -> noop added",
            env_id="Acrobot-v1",
            old_actions=("torque-1", "torque+1"),
            new_actions=ACROBOT_ACTIONS,
            old_hidden=(64, 64),
            new_hidden=(64, 64),
            configs=_protocols(acrobot_ppo_config(ACROBOT_STEPS)),
            surgery={**RECIPES, "preserving-margin-1": {**PRESERVING, "margin": 1.0}},
        ),
        PpoSurgery(
            name="ppo-cartpole-ln-widen",
            description="CartPole, PPO with LayerNorm: actor-critic of (4, 4) -> (64, 64)",
            env_id="CartPole-v1",
            old_hidden=(4, 4),
            new_hidden=(64, 64),
            configs=_protocols(cartpole.replace(layer_norm=True)),
            surgery={**RECIPES, **_noise_arms()},
        ),
        PpoSurgery(
            name="ppo-pendulum-add-obs",
            description="Pendulum, PPO (continuous torque): (64, 64) actor-critic seeing "
            "cos_theta, theta_dot -> sin_theta added",
            env_id="Pendulum-v1",
            old_obs=("cos_theta", "theta_dot"),
            new_obs=PENDULUM_OBS,
            old_hidden=(64, 64),
            new_hidden=(64, 64),
            configs=_protocols(
                pendulum_ppo_config(PENDULUM_STEPS).replace(reward_scale=PENDULUM_REWARD_SCALE)
            ),
            surgery=RECIPES,
        ),
    ]
