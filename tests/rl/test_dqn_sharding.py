import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from jsurgery.rl import DQNConfig, train_seeds
    assert jax.device_count() == 8, jax.devices()
    config = DQNConfig(hidden=(8,), total_steps=200, eval_every=100, eval_episodes=2,
                       learning_starts=50, buffer_size=128, batch_size=8, target_update_interval=20)
    sharded = train_seeds(config, "CartPole-v1", 5, progress=False)  # padded to 8 seeds
    kernel = sharded.state["params"]["params"]["Dense_0"]["kernel"]
    assert kernel.shape[0] == 5, kernel.shape
    single = train_seeds(config, "CartPole-v1", 5, progress=False, shard=False)
    for name in single.metrics:
        np.testing.assert_allclose(sharded.metrics[name], single.metrics[name], rtol=1e-4,
                                   atol=1e-4, err_msg=name)
    np.testing.assert_allclose(kernel, single.state["params"]["params"]["Dense_0"]["kernel"],
                               atol=1e-4)
    print("agree")
    """
)


def test_sharded_and_unsharded_runs_agree():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "agree" in done.stdout
