"""The tracer follows nested control flow: cond, scan and while loops carry the units through."""

import flax.linen as nn
import jax
import numpy as np

import jsurgery


class Looped(nn.Module):
    """A Dense torso, then the same square Dense applied `steps` times (lax.scan, fori_loop)
    or chosen by lax.cond, then a head."""

    width: int
    mode: str

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.width)(x))
        square = self.param("square", nn.initializers.lecun_normal(), (self.width, self.width))

        def step(carry, _):
            return nn.relu(carry @ square), None

        if self.mode == "scan":
            h, _ = jax.lax.scan(step, h, None, length=3)
        elif self.mode == "while":
            h = jax.lax.fori_loop(0, 3, lambda i, c: step(c, None)[0], h)
        else:
            h = jax.lax.cond(x.sum() > 0, lambda c: step(c, None)[0], lambda c: c * 2.0, h)
        return nn.Dense(2)(h)


def _check(mode):
    old_m, new_m = Looped(4, mode), Looped(6, mode)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    old = old_m.init(jax.random.key(1), x)
    new = new_m.init(jax.random.key(2), x)
    plan = jsurgery.make_plan(old, new, apply=(old_m.apply, new_m.apply), example=((x,), (x,)),
                              **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(new_m.apply(out, x), old_m.apply(old, x), atol=1e-5)
    square = np.asarray(out["params"]["square"])
    # the carried space is one space: the loop's square kernel reads and writes it with the
    # torso's replica map (new units 4, 5 copy units 0, 1; their rows share the fan-out)
    old_sq = np.asarray(old["params"]["square"])
    np.testing.assert_allclose(square[0, :4], old_sq[0] / 2, rtol=1e-6)
    np.testing.assert_allclose(square[:4, 4], old_sq[:, 0] * np.array([0.5, 0.5, 1, 1]),
                               rtol=1e-6)


def test_scan_carry_is_one_space():
    _check("scan")


def test_while_carry_is_one_space():
    _check("while")


def test_cond_branches_are_one_space():
    _check("cond")
