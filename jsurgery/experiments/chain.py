"""``surgery-chain``: one agent operated on several times, against reruns from scratch.

OpenAI Five's agent went through many surgeries and ended below a from-scratch rerun of its final
architecture (Berner et al. 2019, arXiv:1912.06680, section 3.3). This experiment asks the same of a
DQN: one run trains through a chain of stages, each a surgery on the last (observations added, the
network widened, an action added), each stage with the same step budget; it is compared with
``scratch`` (the final architecture trained from scratch for the chain's total steps) and
``scratch-3x`` (three times as many).

The chain's arms differ only in the surgery recipe (``make_plan`` keywords). The control arms
(``controls``, e.g. ``chain-identity``) train the final architecture from the first step, with
the same stage boundaries and the same rules at each boundary, where the surgery changes nothing
(the old and the new network have the same architecture and the plan copies every unit): they
measure what the protocol costs apart from what the changes of architecture cost.

At every boundary the surgery moves the params, the target params and Adam's state (its moments
moved by the plan: kept units keep theirs, new units start at zero; its step count kept), by
:func:`~jsurgery.rl.ppo_surgery.transplant_seeds` as ``jsurgery surgery`` does. The step size is
constant, so no stage restarts a schedule. The replay buffer starts empty at each stage and fills
again (from the first block on, with the config's ``learning_starts``): transitions stored before
an observation was added lack it and cannot be replayed to the new network. After the first stage
the agent keeps exploring at the config's final rate (it is not a new agent).

Keys per integer seed ``s``: ``k = PRNGKey(s)``; stage ``i`` trains with ``fold_in(k, 10 + i)``
and its template is initialised with ``fold_in(k, 20 + i)``; ``scratch`` and ``scratch-3x``
train the final architecture with the last stage's keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jsurgery.experiments import statistics
from jsurgery.experiments.arms import jsonable
from jsurgery.experiments.dqn import arm_run, fold_keys, train_arm
from jsurgery.experiments.runner import ArmRun, ExperimentError

#: How many times the chain's total steps ``scratch-3x`` trains for.
RERUN_FACTOR = 3

#: Evaluations averaged into a run's final plateau.
PLATEAU_EVALS = 3


def first_seed(tree):
    """The first seed's slice of a tree with a leading seed axis (plans are made on one seed)."""
    return jax.tree.map(lambda leaf: leaf[0], tree)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One architecture of the chain: observation IDs, action IDs (None: all) and hidden widths."""

    hidden: tuple[int, ...]
    obs: tuple[str, ...] | None = None
    actions: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class ChainSurgery:
    """A chain of surgeries on one DQN agent.

    Attributes:
        name, description, env_id: as for :class:`~jsurgery.experiments.dqn.DqnSurgery`.
        stages: the architectures, in order; each stage after the first is a surgery.
        configs: protocol name -> the :class:`~jsurgery.rl.DQNConfig` of one stage (its
            ``total_steps`` is the stage's budget; ``hidden`` is replaced by the stage's).
        surgery: chain arm name -> ``make_plan`` keywords used at every surgery.
        thresholds: returns whose first crossing is reported (steps to threshold).
        controls: control arm name -> ``make_plan`` keywords: a chain whose every stage is the last
            one, so that each surgery changes nothing.
    """

    name: str
    description: str
    env_id: str
    stages: tuple[Stage, ...]
    configs: Mapping[str, Any]
    surgery: Mapping[str, Mapping[str, Any]]
    thresholds: tuple[float, ...]
    controls: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    x_label: str = "environment steps"
    y_label: str = "greedy evaluation return"

    @property
    def arms(self) -> tuple[str, ...]:
        return ("scratch", *self.surgery, *self.controls, f"scratch-{RERUN_FACTOR}x")

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.configs)

    def summary_table(self, results: dict) -> str:
        """:func:`chain_table`, printed by ``jsurgery run`` below the arms' table."""
        return chain_table(results)

    def env(self, stage: Stage):
        from jsurgery.rl import make_env

        return make_env(self.env_id, obs=stage.obs, actions=stage.actions)

    def arm_stages(self, arm: str) -> tuple[Stage, ...]:
        """The stages chain arm ``arm`` goes through: :attr:`stages`, or for a control arm the
        last stage as many times."""
        if arm in self.controls:
            return (self.stages[-1],) * len(self.stages)
        if arm in self.surgery:
            return self.stages
        chains = (*self.surgery, *self.controls)
        raise ExperimentError(f"{self.name}: {arm!r} is no chain arm; chain arms are {chains}")

    def stage_config(self, protocol: str, index: int, stage: Stage | None = None):
        """The config of stage ``index`` (of :attr:`stages`, or ``stage`` when given)."""
        stage = self.stages[index] if stage is None else stage
        config = self.configs[protocol].replace(hidden=tuple(stage.hidden))
        if index > 0:
            config = config.replace(exploration_start=config.exploration_end)
        return config

    def config(self, protocol: str, seeds: int) -> dict:
        stages = []
        for stage in self.stages:
            env = self.env(stage)
            stages.append(
                {"obs": list(env.obs_ids), "actions": list(env.action_ids), "hidden": stage.hidden}
            )
        options = {**self.surgery, **self.controls}
        return {
            "experiment": self.name,
            "protocol": protocol,
            "seeds": seeds,
            "env_id": self.env_id,
            "stages": stages,
            "dqn": {**self.configs[protocol].to_dict(), "hidden": None},
            "arms": list(self.arms),
            "surgery": {arm: jsonable(options) for arm, options in options.items()},
            "control_arms": list(self.controls),
            "rerun_factor": RERUN_FACTOR,
            "thresholds": list(self.thresholds),
        }

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params=None, progress: bool = False
    ) -> ArmRun:
        from jsurgery.rl import seed_keys

        keys = seed_keys(range(seeds))
        if arm in self.surgery or arm in self.controls:
            return self._run_chain(arm, protocol, keys, progress)
        if arm not in self.arms:
            raise ExperimentError(f"{self.name}: unknown arm {arm!r}; arms are {self.arms}")
        factor = 1 if arm == "scratch" else RERUN_FACTOR
        return self._run_scratch(arm, protocol, keys, factor * len(self.stages), progress)

    def make_train(self):
        """The algorithm's ``make_train(config, env, on_period)``."""
        from jsurgery.rl import make_train

        return make_train

    def fresh_states(self, config, env, keys) -> dict:
        """A freshly initialised training state per key (leading seed axis): params, (target
        params,) Adam's state."""
        from jsurgery.rl.algorithms import algorithm_of

        algorithm = algorithm_of(config)
        return jax.vmap(lambda key: algorithm.initial_state(config, env, key))(keys)

    def plan(self, arm: str, old_params, new_params, old: tuple, new: tuple):
        """The plan of one surgery of chain arm ``arm``, made on one seed's params; ``old`` and
        ``new`` are the ``(config, env)`` of the stages before and after it."""
        from jsurgery.rl.algorithms import algorithm_of
        from jsurgery.rl.dqn_surgery import plan_dqn

        (old_config, old_env), (new_config, new_env) = old, new
        network = algorithm_of(new_config).network
        return plan_dqn(
            old_params, new_params, network(old_config, old_env), network(new_config, new_env),
            old_env, new_env, **{**self.surgery, **self.controls}[arm],
        )  # fmt: skip

    def operate(self, arm: str, state: dict, fresh: dict, old: tuple, new: tuple):
        """One surgery of chain arm ``arm``: every seed's trained ``state`` moved into ``fresh``
        (from :meth:`fresh_states` of the new stage), params, target params and Adam's moments
        by the plan, Adam's step count kept. Returns ``(state, plan)``."""
        from jsurgery.rl.ppo_surgery import transplant_seeds

        plan = self.plan(arm, first_seed(state["params"]), first_seed(fresh["params"]), old, new)
        return transplant_seeds(state, fresh, plan), plan

    def _run_scratch(self, arm, protocol, keys, budgets: int, progress) -> ArmRun:
        last = len(self.stages) - 1
        env = self.env(self.stages[last])
        base = self.stage_config(protocol, 0, self.stages[last])
        config = base.replace(total_steps=budgets * base.total_steps)
        template = self.fresh_states(config, env, fold_keys(keys, 20 + last))
        run = (fold_keys(keys, 10 + last), {"params": template["params"]})
        _, metrics = train_arm(self.make_train(), config, env, run, arm, progress)
        return arm_run(metrics, None, env, {"total_steps": config.total_steps})

    def _run_chain(self, arm, protocol, keys, progress) -> ArmRun:
        xs, curves, plans, state, previous = [], [], [], None, None
        for index, stage in enumerate(self.arm_stages(arm)):
            config = self.stage_config(protocol, index, stage)
            env = self.env(stage)
            fresh = self.fresh_states(config, env, fold_keys(keys, 20 + index))
            if state is None:
                init = {"params": fresh["params"]}
            else:
                init, plan = self.operate(arm, state, fresh, previous, (config, env))
                plans.append(str(plan))
            run = (fold_keys(keys, 10 + index), init)
            state, metrics = train_arm(
                self.make_train(), config, env, run, f"{arm} {index}", progress
            )
            previous = (config, env)
            stage_run = arm_run(metrics, None, env, {})
            xs.append(np.asarray(stage_run.x) + index * config.total_steps)
            curves.append(np.asarray(stage_run.curves))
        options = {**self.surgery, **self.controls}[arm]
        notes = {"surgery": jsonable(options), "plans": plans, "control": arm in self.controls}
        return ArmRun(x=np.concatenate(xs), curves=np.concatenate(curves, axis=1), notes=notes)


def steps_to_threshold(x, curves, threshold: float) -> np.ndarray:
    """Per seed, the first ``x`` at which the curve reaches ``threshold`` (``inf`` if never).

    Example:
        >>> steps_to_threshold([0, 10, 20], [[-5.0, 1.0, 2.0], [-5.0, -4.0, -3.0]], 0.0).tolist()
        [10.0, inf]
    """
    x = np.asarray(x, dtype=np.float64)
    reached = np.asarray(curves, dtype=np.float64) >= threshold
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), x[first], np.inf)


def plateau(curves, evals: int = PLATEAU_EVALS) -> np.ndarray:
    """Per seed, the mean of the last ``evals`` evaluations.

    Example:
        >>> plateau([[0.0, 1.0, 2.0, 3.0]], evals=2).tolist()
        [2.5]
    """
    return np.asarray(curves, dtype=np.float64)[:, -evals:].mean(axis=1)


def _median_interval(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(0)
    samples = values[rng.integers(0, values.size, size=(statistics.RESAMPLES, values.size))]
    medians = np.median(samples, axis=1)
    low, high = np.quantile(medians, [0.025, 0.975], method="inverted_cdf")
    return f"{_steps(np.median(values))} [{_steps(low)}, {_steps(high)}]"


def _steps(value: float) -> str:
    return "never" if not np.isfinite(value) else f"{value:,.0f}"


def chain_table(results: dict) -> str:
    """The question's table: per arm, its steps, the median steps to each threshold (with the
    share of seeds that reached it), the final plateau, and each other arm's plateau minus the
    reruns' and minus the control arms' (``control_arms`` in the config), with 95% bootstrap
    intervals (``yes``: the interval excludes zero)."""
    arms, thresholds = results["arms"], results["config"]["thresholds"]
    plateaus = {name: plateau(arm["curves"]) for name, arm in arms.items()}
    reruns = [name for name in arms if name.startswith("scratch")]
    references = reruns + [n for n in results["config"].get("control_arms", []) if n in arms]
    header = ["arm", "steps"]
    header += [f"steps to {t:g}: median [95% CI] (reached)" for t in thresholds]
    header += ["final plateau [95% CI]"] + [f"plateau minus {name}" for name in references]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, arm in arms.items():
        cells = [name, f"{arm['x'][-1]:,.0f}"]
        for threshold in thresholds:
            steps = steps_to_threshold(arm["x"], arm["curves"], threshold)
            reached = np.isfinite(steps).sum()
            cells.append(f"{_median_interval(steps)} ({reached}/{steps.size})")
        mean, low, high = statistics.bootstrap_mean(plateaus[name])
        cells.append(f"{mean:.1f} [{low:.1f}, {high:.1f}]")
        for reference in references:
            if name in reruns or name == reference:
                cells.append("")
                continue
            cells.append(_difference(plateaus[name], plateaus[reference]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _difference(values, reference) -> str:
    c = statistics.compare(values, reference)
    mark = "yes" if c["significant"] else "no"
    return f"{c['mean_difference']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}] {mark}"
