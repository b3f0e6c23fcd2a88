"""Property-based tests: random MLPs, random ID permutations, additions and removals."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from surgery_models import forward, mlp

import jsurgery

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
POOL = list("abcdefgh")


ids_strategy = st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True)


@st.composite
def surgery(draw):
    depth = draw(st.integers(1, 3))
    hidden_old = draw(st.lists(st.integers(1, 5), min_size=depth, max_size=depth))
    grow = draw(st.lists(st.integers(0, 3), min_size=depth, max_size=depth))
    hidden_new = [h + g for h, g in zip(hidden_old, grow, strict=True)]
    in_old, in_new = draw(ids_strategy), draw(ids_strategy)
    out_old = draw(ids_strategy)
    out_new = draw(
        st.permutations(
            out_old
            + draw(st.lists(st.sampled_from([p.upper() for p in POOL]), max_size=2, unique=True))
        )
    )
    hidden_init = draw(st.sampled_from(["zero_fanout", "net2net"]))
    output_init = draw(st.sampled_from(["zeros", "mean", "pessimistic"]))
    seed = draw(st.integers(0, 2**16))
    return hidden_old, hidden_new, in_old, in_new, out_old, out_new, hidden_init, output_init, seed


@SETTINGS
@given(surgery())
def test_preserving_options_keep_the_old_function_on_kept_features(case):
    hidden_old, hidden_new, in_old, in_new, out_old, out_new, h_init, o_init, seed = case
    rng = np.random.default_rng(seed)
    old = mlp(rng, len(in_old), hidden_old, len(out_old))
    new = mlp(rng, len(in_new), hidden_new, len(out_new))
    plan = jsurgery.make_plan(
        old,
        new,
        inputs=(in_old, in_new),
        outputs=(out_old, out_new),
        new_inputs="zeros",
        new_hidden=h_init,
        new_outputs=o_init,
    )
    out = jsurgery.transplant(old, new, plan)
    x = rng.normal(size=(6, len(in_old))).astype(np.float32)
    kept = np.asarray([i in in_new for i in in_old])
    y_old = forward(old, x * kept)  # removed features read as zero
    y_new = forward(out, np.asarray(plan.embed_inputs(x)))
    cols = [out_new.index(o) for o in out_old]
    np.testing.assert_allclose(y_new[:, cols], y_old, atol=1e-4)
    fresh = [j for j, o in enumerate(out_new) if o not in out_old]
    if o_init == "zeros" and fresh:
        np.testing.assert_allclose(y_new[:, fresh], 0.0, atol=1e-6)
    if o_init == "mean" and fresh:
        np.testing.assert_allclose(
            y_new[:, fresh], y_old.mean(1, keepdims=True).repeat(len(fresh), 1), atol=1e-4
        )


@SETTINGS
@given(st.data())
def test_a_to_b_to_c_equals_a_to_c(data):
    hidden = [data.draw(st.integers(1, 4), label="h_a")]
    widths = [hidden[0] + data.draw(st.integers(0, 2), label=f"g{k}") for k in range(2)]
    widths.sort()
    in_a, in_b = data.draw(ids_strategy, label="in_a"), data.draw(ids_strategy, label="in_b")
    allowed = [i for i in POOL if not (i in in_a and i not in in_b)]
    in_c = data.draw(
        st.lists(st.sampled_from(allowed), min_size=1, max_size=5, unique=True), label="in_c"
    )
    h_init = data.draw(st.sampled_from(["zero_fanout", "net2net"]), label="hidden_init")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    a = mlp(rng, len(in_a), hidden, 2)
    b = mlp(rng, len(in_b), [widths[0]], 2)
    c = mlp(rng, len(in_c), [widths[1]], 2)
    kw = dict(new_inputs="zeros", new_hidden=h_init)
    via_b = jsurgery.transplant(
        jsurgery.transplant(a, b, jsurgery.make_plan(a, b, inputs=(in_a, in_b), **kw)),
        c,
        jsurgery.make_plan(b, c, inputs=(in_b, in_c), **kw),
    )
    ac = jsurgery.make_plan(a, c, inputs=(in_a, in_c), **kw)
    direct = jsurgery.transplant(a, c, ac)
    x = rng.normal(size=(5, len(in_c))).astype(np.float32)
    np.testing.assert_allclose(forward(via_b, x), forward(direct, x), atol=1e-4)
    if h_init == "zero_fanout" and widths[0] == widths[1] == hidden[0]:
        for layer in direct:
            for leaf in direct[layer]:
                np.testing.assert_allclose(via_b[layer][leaf], direct[layer][leaf], atol=1e-6)


@SETTINGS
@given(st.permutations(list(range(6))), st.integers(0, 2**16))
def test_permuting_hidden_ids_permutes_units_and_keeps_the_function(perm, seed):
    rng = np.random.default_rng(seed)
    old, new = mlp(rng, 3, [6, 4], 2), mlp(rng, 3, [6, 4], 2)
    plan = jsurgery.make_plan(old, new, hidden={"Dense_0": (list(range(6)), perm)})
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_array_equal(out["Dense_0"]["kernel"], old["Dense_0"]["kernel"][:, perm])
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(forward(out, x), forward(old, x), atol=1e-4)
