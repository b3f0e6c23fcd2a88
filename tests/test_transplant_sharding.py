"""Transplant on sharded arrays keeps the template's sharding (8 host CPU devices)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jsurgery

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    rng = np.random.default_rng(0)
    def mlp(n_in, h, n_out):
        return {"Dense_0": {"kernel": rng.normal(size=(n_in, h)).astype(np.float32),
                            "bias": rng.normal(size=(h,)).astype(np.float32)},
                "Dense_1": {"kernel": rng.normal(size=(h, n_out)).astype(np.float32),
                            "bias": rng.normal(size=(n_out,)).astype(np.float32)}}
    old, new = mlp(6, 16, 4), mlp(8, 32, 8)
    specs = {"Dense_0": {"kernel": P("data", "model"), "bias": P("model")},
             "Dense_1": {"kernel": P("model", None), "bias": P()}}
    place = lambda t: jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), t,
                                   specs, is_leaf=lambda s: isinstance(s, P))
    old_sharded = jax.device_put(old, NamedSharding(mesh, P()))
    new_sharded = place(new)
    plan = jsurgery.make_plan(old, new, inputs=(list(range(6)), [7, 0, 1, 2, 3, 4, 5, 6]),
                              outputs=(list("abcd"), list("dcbaefgh")), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old_sharded, new_sharded, plan)
    ref = jsurgery.transplant(old, new, plan)
    for o, r, t in zip(jax.tree.leaves(out), jax.tree.leaves(ref), jax.tree.leaves(new_sharded)):
        assert o.sharding.is_equivalent_to(t.sharding, o.ndim), (o.sharding, t.sharding)
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), atol=1e-6)
    print("OK", out["Dense_0"]["kernel"].sharding)
    """
)


def test_sharded_transplant_keeps_template_sharding():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout
