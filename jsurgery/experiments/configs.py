"""The surgery experiments: six with the original study's architectures and budgets, then four
of this project's (a recurrent agent, widening a network with layer normalisation, a channel added
to an image input, and a chain of surgeries in one run, :mod:`jsurgery.experiments.chain`).

Each experiment has the ``original`` protocol (the original study's step budget) and, where that
budget is too short for the network to learn the task, a ``long`` protocol beside it. Every DQN
arm of an experiment trains with the same configuration from :mod:`jsurgery.rl.presets`; only the
hidden widths differ between the old and the new network.

Budgets: CartPole 8,000 and Acrobot 20,000 environment steps per network are the original study's
(``long``: 50,000 and 100,000). The original's budgets for MNIST and LunarLander are not part of
its record here; ``original`` is then this project's short budget (MNIST: the old network 100 and
the new one 50 Adam steps of 32 images, evaluated every 5 steps; LunarLander: 20,000 steps, the
first tenth of the preset's 200,000), chosen so that these six experiments with every arm and 20
seeds run in under 15 minutes on a 2-core CPU, and ``long`` a longer one (LunarLander: 50,000).

Surgery arms (``make_plan`` keywords):

- ``transplant``: the original study's recipe, :data:`jsurgery.TRANSPLANT` (copy by IDs, new units
  keep the template's initialisation, inserted layers start as the identity);
- ``preserving``: :data:`jsurgery.PRESERVING`, the function-preserving options (zeros for new
  inputs, Net2Net for new hidden units, identity for inserted layers, a pessimistic start for new
  actions); ``zero-fanout`` (CartPole widening) swaps Net2Net for zero fan-out;
- ``new-actions-*`` (Acrobot, LunarLander): the transplant recipe with another initialisation of
  the new actions, to compare those options.

``cartpole-ln-widen`` widens a network with layer normalisation (Dense, LayerNorm, ReLU per
hidden layer, as in PQN and SimBa) that is too small for CartPole, hidden (4, 4), to (14, 14),
with 20,000 steps per network, by which the small network's greedy return has levelled off
while the wide network's still rises. Its arms are ``template`` (the transplant recipe), ``exact``
(:data:`jsurgery.PRESERVING`: Net2Net that keeps the norm's statistics), ``net2net-inexact``
(plain Net2Net replicas, which move the old outputs under a LayerNorm: 14 units replicate 4
unevenly, so the normalised vector's mean and variance change) and ``zero-fanout``.

``breakout-add-channel`` gives a Breakout-MinAtar agent (the MinAtar preset: an MLP with layer
normalisation on the flattened 10 x 10 image) that saw the paddle, ball and brick channels the
trail channel, the ball's previous position, without which one frame does not show the ball's
direction. Inputs are matched by ``(row, column, channel)`` IDs, so the trail's 100 inputs are new
and the bricks' move; the LayerNorm sits after the first Dense layer, whose pre-activations zero
weights from the trail leave unchanged, so ``preserving`` is exact.
"""

from __future__ import annotations

import jsurgery
from jsurgery.experiments.chain import ChainSurgery, Stage
from jsurgery.experiments.dqn import DqnSurgery
from jsurgery.experiments.mnist import MnistBudget, MnistSurgery
from jsurgery.experiments.ppo_chain import PpoChainSurgery
from jsurgery.experiments.ppo_configs import ppo_experiments
from jsurgery.experiments.recurrent import RecurrentDqnSurgery

CARTPOLE_OBS = ("x", "x_dot", "theta", "theta_dot")
ACROBOT_ACTIONS = ("torque-1", "noop", "torque+1")
LUNAR_ACTIONS = ("noop", "left", "main", "right")

#: What the first stage of the chains sees: all but the second joint's velocity ``dtheta2``,
#: which the next stage adds.
ACROBOT_CHAIN_OBS = ("cos1", "sin1", "cos2", "sin2", "dtheta1")

#: The actions of the chains' first three stages; the last stage adds ``noop``. (With ``torque+1``
#: and ``noop`` instead, the PPO chain's first stage learns nothing in its budget, whatever it
#: sees: docs/experiments.md, "The chains' first stage".)
ACROBOT_CHAIN_ACTIONS = ("torque-1", "torque+1")

#: Acrobot returns for ``surgery-chain``'s steps to threshold: halfway from a policy that never
#: swings up (-500) to gymnasium's reward threshold, and the threshold itself.
ACROBOT_THRESHOLDS = (-300.0, -100.0)

TRANSPLANT = dict(jsurgery.TRANSPLANT)
PRESERVING = dict(jsurgery.PRESERVING)


def tiny(config):
    """A few hundred steps: the ``tiny`` protocol, for smoke tests and the notebook."""
    block = config.block_steps
    return config.replace(
        total_steps=4 * block * max(1, 100 // block),
        eval_every=2 * block * max(1, 100 // block),
        eval_episodes=2,
        learning_starts=min(config.learning_starts, 100),
        buffer_size=1_000,
        gradient_steps=min(config.gradient_steps, 4),
    )


def _cartpole_configs():
    from jsurgery.rl.presets import small_cartpole_config

    original = small_cartpole_config(8_000)
    return {"original": original, "long": small_cartpole_config(50_000), "tiny": tiny(original)}


def _cartpole_layer_norm_configs():
    from jsurgery.rl.presets import small_cartpole_config

    original = small_cartpole_config(20_000).replace(layer_norm=True)
    return {"original": original, "tiny": tiny(original)}


def _acrobot_configs():
    from jsurgery.rl.presets import small_acrobot_config

    original = small_acrobot_config(20_000)
    return {"original": original, "long": small_acrobot_config(100_000), "tiny": tiny(original)}


def _lunar_configs():
    from jsurgery.rl.presets import lunar_lander_config

    original = lunar_lander_config(20_000, hidden=(64, 64))
    return {
        "original": original,
        "long": lunar_lander_config(50_000, hidden=(64, 64)),
        "tiny": tiny(original),
    }


#: Steps per network of ``breakout-add-channel`` (``original`` protocol), and the widths.
BREAKOUT_STEPS = 40_000
BREAKOUT_HIDDEN = (128, 128)


def _breakout_configs():
    """The MinAtar preset (LayerNorm MLP on the flattened image), :data:`BREAKOUT_STEPS` steps."""
    from jsurgery.rl.presets import minatar_config

    original = minatar_config(BREAKOUT_STEPS, hidden=BREAKOUT_HIDDEN)
    return {"original": original, "tiny": tiny(original)}


def _recurrent_cartpole_configs():
    from jsurgery.rl.recurrent import recurrent_cartpole_config

    original = recurrent_cartpole_config(16_000)
    return {"original": original, "tiny": tiny(original)}


#: The ``new-actions-*`` arms: the transplant recipe with other starts for the new actions.
NEW_ACTION_ARMS = {
    f"new-actions-{option}": {**TRANSPLANT, "new_outputs": option} for option in ("zeros", "mean")
}

#: The arms of ``cartpole-ln-widen``: four starts for the new hidden units under a LayerNorm.
LAYER_NORM_WIDENING_ARMS = {
    "template": TRANSPLANT,
    "exact": PRESERVING,
    "net2net-inexact": {
        **PRESERVING,
        "new_hidden": jsurgery.init.net2net(normalised=False, split="equal"),
    },
    "zero-fanout": {**PRESERVING, "new_hidden": "zero_fanout"},
}


#: Steps per stage of ``ppo-surgery-chain`` (the ``original`` protocol).
PPO_CHAIN_STAGE_STEPS = 100_000


def _ppo_chain_configs():
    """Acrobot's PPO preset at a constant step size (no stage restarts a schedule), 100,000 steps
    per stage; ``tiny``: 1,000 steps, 2 evaluation episodes."""
    from jsurgery.rl.ppo_presets import acrobot_ppo_config

    original = acrobot_ppo_config(PPO_CHAIN_STAGE_STEPS).replace(learning_rate_end=None)
    tiny_config = original.replace(total_steps=1_000, eval_every=500, eval_episodes=2)
    return {"original": original, "tiny": tiny_config}


def _dqn_chain_configs():
    """Acrobot's small-network DQN, 20,000 steps per stage, at a constant step size (the preset
    has no decay; set here so that no stage restarts a schedule)."""
    acrobot = _acrobot_configs()
    return {name: acrobot[name].replace(learning_rate_end=None) for name in ("original", "tiny")}


def _chain_stages(small: tuple[int, int], large: tuple[int, int]) -> tuple[Stage, ...]:
    """The chains' four stages: ``dtheta2`` added, ``small`` widened to ``large``, ``noop``
    added."""
    return (
        Stage(hidden=small, obs=ACROBOT_CHAIN_OBS, actions=ACROBOT_CHAIN_ACTIONS),
        Stage(hidden=small, obs=None, actions=ACROBOT_CHAIN_ACTIONS),
        Stage(hidden=large, obs=None, actions=ACROBOT_CHAIN_ACTIONS),
        Stage(hidden=large, obs=None, actions=ACROBOT_ACTIONS),
    )


def build_experiments() -> dict:
    """Name -> experiment, in the order ``jsurgery list`` shows them."""
    cartpole = _cartpole_configs()
    acrobot = _acrobot_configs()
    lunar = _lunar_configs()
    experiments = [
        MnistSurgery(
            budgets={
                "original": MnistBudget(old_steps=100, new_steps=50, eval_every=5),
                "long": MnistBudget(old_steps=500, new_steps=500, eval_every=50),
                "tiny": MnistBudget(
                    old_steps=4, new_steps=4, eval_every=2, batch_size=8, eval_images=50
                ),
            }
        ),
        DqnSurgery(
            name="cartpole-add-obs",
            description="CartPole: 16-unit network seeing x_dot, theta -> all four observations",
            env_id="CartPole-v1",
            old_obs=("x_dot", "theta"),
            new_obs=CARTPOLE_OBS,
            old_hidden=(16,),
            new_hidden=(16,),
            configs=cartpole,
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
            },
        ),
        DqnSurgery(
            name="cartpole-add-units",
            description="CartPole: two hidden layers of 4 units -> two hidden layers of 16",
            env_id="CartPole-v1",
            old_hidden=(4, 4),
            new_hidden=(16, 16),
            configs=cartpole,
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
                "zero-fanout": {**PRESERVING, "new_hidden": "zero_fanout"},
            },
        ),
        DqnSurgery(
            name="cartpole-add-layer",
            description="CartPole: one hidden layer of 8 -> two hidden layers of 8 (identity)",
            env_id="CartPole-v1",
            old_hidden=(8,),
            new_hidden=(8, 8),
            configs=cartpole,
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
            },
        ),
        DqnSurgery(
            name="acrobot-add-action",
            description="Acrobot: actions torque+1, noop (16, 16 hidden) -> all three actions",
            env_id="Acrobot-v1",
            old_actions=("torque+1", "noop"),
            new_actions=ACROBOT_ACTIONS,
            old_hidden=(16, 16),
            new_hidden=(16, 16),
            configs=acrobot,
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
                **NEW_ACTION_ARMS,
            },
        ),
        DqnSurgery(
            name="lunarlander-add-actions",
            description="LunarLander: side engines left, right (64, 64 hidden) -> all four actions",
            env_id="LunarLander-v3",
            old_actions=("left", "right"),
            new_actions=LUNAR_ACTIONS,
            old_hidden=(64, 64),
            new_hidden=(64, 64),
            configs=lunar,
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
                **NEW_ACTION_ARMS,
            },
        ),
        RecurrentDqnSurgery(
            name="cartpole-recurrent-add-obs",
            description="CartPole, recurrent DQN: GRU of 32 seeing x, theta -> GRU of 48, all four",
            env_id="CartPole-v1",
            old_obs=("x", "theta"),
            new_obs=CARTPOLE_OBS,
            old_hidden=(64, 32),
            new_hidden=(64, 48),
            configs=_recurrent_cartpole_configs(),
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
            },
        ),
        DqnSurgery(
            name="cartpole-ln-widen",
            description="CartPole, LayerNorm: two hidden layers of 4 units -> two of 14",
            env_id="CartPole-v1",
            old_hidden=(4, 4),
            new_hidden=(14, 14),
            configs=_cartpole_layer_norm_configs(),
            surgery=LAYER_NORM_WIDENING_ARMS,
            base_arms=("old", "scratch"),
        ),
        DqnSurgery(
            name="breakout-add-channel",
            description="Breakout-MinAtar, LayerNorm MLP on the image: paddle, ball, brick "
            "-> the trail channel added (the ball's direction)",
            env_id="Breakout-MinAtar",
            old_obs=("paddle", "ball", "brick"),
            new_obs=None,
            old_hidden=BREAKOUT_HIDDEN,
            new_hidden=BREAKOUT_HIDDEN,
            configs=_breakout_configs(),
            surgery={
                "transplant": TRANSPLANT,
                "preserving": PRESERVING,
            },
        ),
    ]
    experiments += ppo_experiments()
    experiments.append(
        ChainSurgery(
            name="surgery-chain",
            description="Acrobot: three surgeries in one run (dtheta2 added, (16, 16) -> "
            "(32, 32), noop added; Adam moved along) vs the final network from scratch, 1x "
            "and 3x the steps, and a chain of identity surgeries",
            env_id="Acrobot-v1",
            stages=_chain_stages((16, 16), (32, 32)),
            configs=_dqn_chain_configs(),
            surgery={"chain-transplant": TRANSPLANT, "chain-preserving": PRESERVING},
            controls={"chain-identity": PRESERVING},
            thresholds=ACROBOT_THRESHOLDS,
        )
    )
    experiments.append(
        PpoChainSurgery(
            name="ppo-surgery-chain",
            description="Acrobot, PPO: three surgeries in one run (dtheta2 added, (32, 32) -> "
            "(64, 64), noop added; Adam moved along) vs the final network from scratch, 1x "
            "and 3x the steps, and a chain of identity surgeries",
            env_id="Acrobot-v1",
            stages=_chain_stages((32, 32), (64, 64)),
            configs=_ppo_chain_configs(),
            surgery={
                "chain-transplant": {"recipe": "transplant"},
                "chain-preserving": {"recipe": "preserving"},
            },
            controls={"chain-identity": {"recipe": "preserving"}},
            thresholds=ACROBOT_THRESHOLDS,
        )
    )
    return {experiment.name: experiment for experiment in experiments}
