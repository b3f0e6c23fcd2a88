"""``mnist-new-classes``: a CNN trained on digits 0-3 grows a head for digits 4-9.

The architecture of the original study: Conv(32, 3x3) ReLU, Conv(16, 3x3) ReLU, MaxPool 2x2,
Flatten, Dense(100) ReLU, Dense(classes), 'VALID' padding as in Keras. The old network learns digits
0-3 (4 outputs); the new network has 6 outputs, digits 4-9, all of them new unit IDs. Curves are
test accuracy on the held-out digits of each task, against gradient steps.

Training is a small optax loop: Adam, batches drawn with ``randint``, evaluation at step 0 and every
``eval_every`` steps; each step is one jitted call, compiled once and shared by every seed and arm
(see :func:`train_classifiers` for why the seeds are not ``vmap``-ed here).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jsurgery
from jsurgery.data.mnist import Mnist, load_mnist
from jsurgery.experiments.arms import jsonable, start_new_network
from jsurgery.experiments.runner import ArmRun

OLD_CLASSES = (0, 1, 2, 3)
NEW_CLASSES = (4, 5, 6, 7, 8, 9)


class MnistCNN(nn.Module):
    """The original study's CNN; parameters ``Conv_0, Conv_1, Dense_0, Dense_1``."""

    classes: int

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(images))
        x = nn.relu(nn.Conv(16, (3, 3), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(100)(x))
        return nn.Dense(self.classes)(x)


@dataclasses.dataclass(frozen=True)
class MnistBudget:
    """Gradient steps of the old and the new network, batch size, Adam step size, cadence."""

    old_steps: int
    new_steps: int
    eval_every: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    eval_images: int = 200


def task(images: np.ndarray, labels: np.ndarray, classes, limit: int | None = None):
    """Images of the given digits as floats in [0, 1] ``(n, 28, 28, 1)``, labels ``0..k-1``."""
    keep = np.isin(labels, classes)
    x = images[keep][..., None].astype(np.float32) / 255.0
    y = np.searchsorted(np.asarray(classes), labels[keep]).astype(np.int32)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return jnp.asarray(x), jnp.asarray(y)


def make_steps(classes: int, *, batch_size: int, learning_rate: float):
    """``(begin, step, evaluate)``: pure functions of one seed, each jitted once and shared.

    - ``begin(params) -> opt_state``;
    - ``step(key, params, opt_state, train_x, train_y) -> (params, opt_state)``: one Adam step on a
      batch drawn with ``randint``;
    - ``evaluate(params, test_x, test_y) -> accuracy``.
    """
    model = MnistCNN(classes)
    optimiser = optax.adam(learning_rate)

    def loss(params, x, y):
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def begin(params):
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int and float
            return optimiser.init(params)

    def step(key, params, opt_state, train_x, train_y):
        idx = jax.random.randint(key, (batch_size,), 0, train_x.shape[0])
        grads = jax.grad(loss)(params, train_x[idx], train_y[idx])
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def evaluate(params, test_x, test_y):
        return (model.apply({"params": params}, test_x).argmax(-1) == test_y).mean()

    return begin, step, evaluate


def init_params(classes: int, keys: jax.Array):
    """Initial parameters for each key, batched over the keys."""
    model = MnistCNN(classes)
    return jax.vmap(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)))["params"])(keys)


@functools.lru_cache(maxsize=8)
def _compiled(classes, batch_size, learning_rate):
    begin, step, evaluate = make_steps(classes, batch_size=batch_size, learning_rate=learning_rate)
    return jax.jit(begin), jax.jit(step, donate_argnums=(1, 2)), jax.jit(evaluate)


def train_classifiers(classes: int, budget: MnistBudget, steps: int, keys, params, data):
    """Trains every seed (row of ``keys`` and ``params``); returns ``(params, x, accuracies)``.

    Each gradient step of each seed is one call of a jitted step compiled once for all seeds,
    driven by a host loop. On XLA's CPU backend this is several times faster than the same steps
    ``vmap``-ed over seeds (the batched convolutions become grouped convolutions, whose gradients
    are slow there) or inside a ``lax.scan``. Accuracy is evaluated at step 0 and every
    ``budget.eval_every`` steps.
    """
    if steps % budget.eval_every:
        raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({budget.eval_every})")
    begin, step, evaluate = _compiled(classes, budget.batch_size, budget.learning_rate)
    train_x, train_y, test_x, test_y = data
    trained, curves = [], []
    for seed in range(keys.shape[0]):
        key = keys[seed]
        seed_params = jax.tree.map(lambda leaf, s=seed: jnp.array(leaf[s]), params)
        opt_state = begin(seed_params)
        curve = [evaluate(seed_params, test_x, test_y)]
        for i in range(steps):
            seed_params, opt_state = step(
                jax.random.fold_in(key, i), seed_params, opt_state, train_x, train_y
            )
            if (i + 1) % budget.eval_every == 0:
                curve.append(evaluate(seed_params, test_x, test_y))
        trained.append(seed_params)
        curves.append(np.asarray(jax.device_get(curve)))
    x = np.arange(steps // budget.eval_every + 1) * budget.eval_every
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trained), x, np.stack(curves)


#: The surgery arms: ``make_plan`` keywords. All six new classes are new unit IDs, so the output
#: layer is new whatever the options; ``conv-only`` is the original study's exact recipe (the two
#: conv layers carried over, both Dense layers at their initialisation).
SURGERY = {
    "transplant": dict(jsurgery.TRANSPLANT),
    "preserving": {**jsurgery.PRESERVING, "new_outputs": "zeros"},
    "conv-only": {**jsurgery.TRANSPLANT, "layers": {"Dense_0": None, "Dense_1": None}},
}


@dataclasses.dataclass(frozen=True)
class MnistSurgery:
    """The ``mnist-new-classes`` experiment (see the module docstring).

    Attributes:
        budgets: protocol name -> :class:`MnistBudget`.
        data_dir: MNIST folder (default: :func:`jsurgery.data.mnist.default_data_dir`).
    """

    budgets: Mapping[str, MnistBudget]
    data_dir: str | None = None
    name: str = "mnist-new-classes"
    description: str = (
        "CNN trained on digits 0-3 (4 outputs) -> digits 4-9 (6 new outputs); test accuracy"
    )
    x_label: str = "gradient steps"
    y_label: str = "test accuracy"
    arms: tuple[str, ...] = (
        "old", "scratch", "transplant", "preserving", "naive-load", "conv-only",
    )  # fmt: skip

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.budgets)

    def config(self, protocol: str, seeds: int) -> dict:
        data = _load(self.data_dir)
        return {
            "experiment": self.name,
            "protocol": protocol,
            "seeds": seeds,
            "budget": dataclasses.asdict(self.budgets[protocol]),
            "data": {
                "split": data.split,
                "train_images": int(len(data.train_labels)),
                "held_out_images": int(len(data.test_labels)),
            },
            "old_classes": list(OLD_CLASSES),
            "new_classes": list(NEW_CLASSES),
            "arms": list(self.arms),
            "surgery": {arm: jsonable(options) for arm, options in SURGERY.items()},
        }

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params, progress: bool = False
    ) -> ArmRun:
        # An MNIST arm takes seconds: the runner's bar over arms is progress enough.
        budget = self.budgets[protocol]
        data = _load(self.data_dir)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds))
        fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)  # noqa: E731
        if arm == "old":
            tasks = _tasks(data, OLD_CLASSES, budget.eval_images)
            params = init_params(len(OLD_CLASSES), fold(2))
            params, x, acc = train_classifiers(
                len(OLD_CLASSES), budget, budget.old_steps, fold(0), params, tasks
            )
            return ArmRun(x, acc, params, {"classes": list(OLD_CLASSES)})
        template = init_params(len(NEW_CLASSES), fold(3))
        params, notes = start_new_network(
            arm,
            old_params,
            template,
            surgery=SURGERY,
            experiment=self.name,
            arms=self.arms,
            outputs=(OLD_CLASSES, NEW_CLASSES),
        )
        tasks = _tasks(data, NEW_CLASSES, budget.eval_images)
        _, x, acc = train_classifiers(
            len(NEW_CLASSES), budget, budget.new_steps, fold(1), params, tasks
        )
        return ArmRun(x, acc, None, {**notes, "classes": list(NEW_CLASSES)})


@functools.lru_cache(maxsize=2)
def _load(data_dir):
    return load_mnist(data_dir)


def _tasks(data: Mnist, classes, eval_images: int):
    train = task(data.train_images, data.train_labels, classes)
    held_out = task(data.test_images, data.test_labels, classes, eval_images)
    return (*train, *held_out)
