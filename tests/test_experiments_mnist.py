"""The MNIST experiment's trainer on random images (no data files needed)."""

import jax
import numpy as np
import pytest

from jsurgery.experiments.mnist import MnistBudget, init_params, train_classifiers

BUDGET = MnistBudget(old_steps=4, new_steps=4, eval_every=2, batch_size=8)


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 3, n).astype(np.int32)
    return images[:30], labels[:30], images[30:], labels[30:]


def test_seeds_train_independently_with_evaluations_every_eval_every_steps():
    keys = jax.random.split(jax.random.key(0), 2)
    params = init_params(3, jax.random.split(jax.random.key(1), 2))
    data = _data()
    trained, x, acc = train_classifiers(3, BUDGET, 4, keys, params, data)
    np.testing.assert_array_equal(x, [0, 2, 4])
    assert acc.shape == (2, 3) and np.all((acc >= 0) & (acc <= 1))
    one = jax.tree.map(lambda leaf: leaf[1:], params)
    alone, _, acc_alone = train_classifiers(3, BUDGET, 4, keys[1:], one, data)
    np.testing.assert_allclose(acc_alone[0], acc[1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b[1], atol=1e-6), alone, trained)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), trained, params)
    assert min(jax.tree.leaves(moved)) > 0  # every leaf was trained


def test_steps_must_be_a_multiple_of_eval_every():
    keys = jax.random.split(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        train_classifiers(3, BUDGET, 3, keys, None, _data())
