"""The tracer follows nested control flow: cond, scan and while loops carry the units through."""

import flax.linen as nn
import jax
import jax.numpy as jnp
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
    equal = jsurgery.init.net2net(split="equal")  # a unit and its copy read half each
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((x,), (x,)),
        **{**jsurgery.PRESERVING, "new_hidden": equal},
    )
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(new_m.apply(out, x), old_m.apply(old, x), atol=1e-5)
    square = np.asarray(out["params"]["square"])
    # the carried space is one space: the loop's square kernel reads and writes it with the
    # torso's replica map (new units 4, 5 copy units 0, 1; their rows share the fan-out)
    old_sq = np.asarray(old["params"]["square"])
    np.testing.assert_allclose(square[0, :4], old_sq[0] / 2, rtol=1e-6)
    np.testing.assert_allclose(square[:4, 4], old_sq[:, 0] * np.array([0.5, 0.5, 1, 1]), rtol=1e-6)


def test_scan_carry_is_one_space():
    _check("scan")


def test_while_carry_is_one_space():
    _check("while")


def test_cond_branches_are_one_space():
    _check("cond")


class Tokens(nn.Module):
    vocab: int

    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(2)(nn.relu(nn.Embed(self.vocab, 4)(tokens)))


def test_embedding_rows_follow_token_ids():
    old_m, new_m = Tokens(3), Tokens(4)
    toks = jnp.array([[0, 1, 2, 1]])
    old = old_m.init(jax.random.key(0), toks)
    new = new_m.init(jax.random.key(1), toks)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((toks,), (toks,)),
        inputs=(["a", "b", "c"], ["c", "new", "a", "b"]),
    )
    out = jsurgery.transplant(old, new, plan)
    emb = np.asarray(out["params"]["Embed_0"]["embedding"])
    old_emb = np.asarray(old["params"]["Embed_0"]["embedding"])
    np.testing.assert_array_equal(emb[[0, 2, 3]], old_emb[[2, 0, 1]])
    np.testing.assert_array_equal(emb[1], new["params"]["Embed_0"]["embedding"][1])
    np.testing.assert_allclose(
        new_m.apply(out, plan.embed_inputs(toks)), old_m.apply(old, toks), atol=1e-6
    )


def test_nnx_module_is_its_own_function():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, n_in, width, rngs):
            self.a = nnx.Linear(n_in, width, rngs=rngs)
            self.pi = nnx.Linear(width, 2, rngs=rngs)
            self.v = nnx.Linear(width, 1, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.a(x))
            return self.pi(h), self.v(h)

    old_m, new_m = Net(3, 4, nnx.Rngs(0)), Net(4, 6, nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(2), (5, 3))
    plan = jsurgery.make_plan(
        old_m,
        new_m,
        example=((x,), (jnp.zeros((5, 4)),)),
        inputs=([0, 1, 2], [0, 1, 2, 3]),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant(old_m, new_m, plan)
    assert isinstance(out, Net)
    report = jsurgery.check_preservation(lambda m, x: m(x), old_m, lambda m, x: m(x), out, x, plan)
    assert report.ok(1e-5) and len(report.compared) == 3, report
