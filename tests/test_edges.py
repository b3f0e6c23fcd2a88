"""Edges of the public calls: params held in a dataclass, shapes where arrays are needed, an
optimizer changed across the surgery, option values, and inputs of the wrong width or kind given
to `embed_inputs` and `check_preservation`."""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from surgery_models import MLP, TokenNet, apply_fn, init, rand

import jsurgery
from jsurgery.plan import planner


@flax.struct.dataclass
class AgentParams:
    """cleanrl's params of an actor-critic: one torso and two heads, a dataclass."""

    network: dict
    actor: dict
    critic: dict


def _agent(hidden: int, seed: int) -> AgentParams:
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        return {
            "kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32),
        }

    return AgentParams(dense(3, hidden), dense(hidden, 2), dense(hidden, 1))


def _agent_apply(p: AgentParams, x):
    h = jax.nn.relu(x @ p.network["kernel"] + p.network["bias"])
    return h @ p.actor["kernel"] + p.actor["bias"], h @ p.critic["kernel"] + p.critic["bias"]


def _trained_adam(tx, params, steps: int = 3):
    """An optimizer state whose moments are not zero."""
    opt = tx.init(params)
    grads = jax.tree.map(
        lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape)), params
    )
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for _ in range(steps):
            _, opt = tx.update(grads, opt, params)
    return opt


def test_params_in_a_dataclass_move_with_their_adam_moments():
    old, new = _agent(4, 0), _agent(6, 1)
    x = jnp.ones((1, 3))
    plan = jsurgery.make_plan(
        old, new, apply=_agent_apply, example=((x,), (x,)), **jsurgery.PRESERVING
    )
    tx = optax.adam(1e-3)
    opt = _trained_adam(tx, old)
    state = jsurgery.transplant_state(
        {"params": old, "opt_state": opt}, {"params": new, "opt_state": tx.init(new)}, plan
    )
    xs = rand((16, 3), 2)
    for a, b in zip(_agent_apply(old, xs), _agent_apply(state["params"], xs), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    adam, adam_old = state["opt_state"][0], opt[0]
    assert int(adam.count) == 3
    for moment, moment_old in ((adam.mu, adam_old.mu), (adam.nu, adam_old.nu)):
        torso, torso_old = moment.network["kernel"], moment_old.network["kernel"]
        assert float(np.abs(torso_old).min()) > 0  # the test would not see a lost moment
        np.testing.assert_array_equal(torso[:, :4], torso_old)
        np.testing.assert_array_equal(torso[:, 4:], 0.0)  # the new hidden units start at zero
        np.testing.assert_array_equal(moment.network["bias"][:4], moment_old.network["bias"])
        np.testing.assert_array_equal(moment.network["bias"][4:], 0.0)
        for head, head_old in (
            (moment.actor, moment_old.actor),
            (moment.critic, moment_old.critic),
        ):
            np.testing.assert_array_equal(head["kernel"][:4], head_old["kernel"])
            np.testing.assert_array_equal(head["kernel"][4:], 0.0)
            np.testing.assert_array_equal(head["bias"], head_old["bias"])


def test_shapes_alone_plan_but_do_not_transplant():
    old, new = init(MLP((8,), 2), 3, 0), init(MLP((10,), 2), 3, 1)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), old)
    plan = jsurgery.make_plan(shapes, new, **jsurgery.PRESERVING)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.transplant(shapes, new, plan)
    message = str(info.value)
    for word in ("`old`", "params/Dense_0/bias", "ShapeDtypeStruct", "arrays"):
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "old_tx, new_tx, kinds",
    [
        (optax.adam(1e-3), optax.sgd(1e-3, momentum=0.9), ("ScaleByAdamState", "TraceState")),
        # one params-shaped subtree in each: Adam's second moments would become a momentum
        (optax.rmsprop(1e-3), optax.sgd(1e-3, momentum=0.9), ("ScaleByRmsState", "TraceState")),
    ],
    ids=["adam-to-momentum", "rmsprop-to-momentum"],
)
def test_one_optimizers_statistics_do_not_go_into_another(old_tx, new_tx, kinds):
    old, new = init(MLP((8,), 2), 3, 0)["params"], init(MLP((10,), 2), 3, 1)["params"]
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    old_state = {"params": old, "opt_state": _trained_adam(old_tx, old)}
    new_state = {"params": new, "opt_state": new_tx.init(new)}
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.transplant_state(old_state, new_state, plan)
    message = str(info.value)
    for word in (*kinds, "tx.init"):
        assert word in message, (word, message)


def test_the_same_optimizer_with_other_settings_still_moves():
    old, new = init(MLP((8,), 2), 3, 0)["params"], init(MLP((10,), 2), 3, 1)["params"]
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    opt = _trained_adam(optax.adam(1e-3), old)
    moved = jsurgery.transplant_state(opt, optax.adam(3e-4, b1=0.8).init(new), plan)
    np.testing.assert_array_equal(
        moved[0].mu["Dense_1"]["kernel"][:8], opt[0].mu["Dense_1"]["kernel"]
    )


class Traced(BaseException):
    """Raised by an `apply` that must not be called: the check under test comes first."""


def _never_traced(variables, x):
    raise Traced("the option was checked after tracing")


NAN = math.nan


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(pessimism="high"), ["pessimism", "'high'"]),
        (dict(pessimism=-5), ["pessimism", "-5", "negative"]),
        (dict(pessimism=NAN), ["pessimism", "nan"]),
        (dict(init_scale=-1.0), ["init_scale", "-1.0", "positive"]),
        (dict(init_scale="small"), ["init_scale", "'small'"]),
        (dict(net2net_noise=-0.1), ["net2net_noise", "-0.1", "negative"]),
        (dict(net2net_noise=NAN), ["net2net_noise", "nan"]),
        (dict(net2net_noise="x"), ["net2net_noise", "'x'"]),
        (dict(new_hidden="net2net", net2net_noise=-0.1), ["net2net_noise", "-0.1"]),
        (dict(allow_dtype_change="yes"), ["allow_dtype_change", "'yes'", "True or False"]),
        (dict(allow_dtype_change=None), ["allow_dtype_change", "None", "True or False"]),
        (dict(inputs=[1, 2, 3]), ["inputs", "pair"]),
        (dict(inputs="ab"), ["inputs", "pair"]),
        (dict(outputs=(["l", "r"],)), ["outputs", "pair"]),
        (dict(outputs=5), ["outputs", "pair"]),
        (dict(inputs={0: ["a", "b", "c"]}), ["inputs[0]", "pair"]),
        (dict(outputs={"head": (["l"], ["l"])}), ["outputs", "'head'", "index"]),
        (dict(order="Dense_0"), ["order", "list"]),
    ],
    ids=[
        "pessimism-text",
        "pessimism-negative",
        "pessimism-nan",
        "init-scale-negative",
        "init-scale-text",
        "noise-negative",
        "noise-nan",
        "noise-text",
        "noise-negative-with-net2net",
        "dtype-flag-text",
        "dtype-flag-none",
        "inputs-triple",
        "inputs-text",
        "outputs-single",
        "outputs-number",
        "inputs-dict-of-non-pair",
        "outputs-dict-key-text",
        "order-text",
    ],
)
def test_bad_option_values_are_refused_before_tracing(kwargs, words):
    old, new = init(MLP((8,), 2), 3, 0), init(MLP((8,), 2), 3, 1)
    x = jnp.ones((1, 3))
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, apply=_never_traced, example=((x,), (x,)), **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_an_order_name_that_matches_no_layer_is_refused_with_the_closest(monkeypatch):
    old, new = init(MLP((8, 8), 2), 3, 0), init(MLP((8, 8), 2), 3, 1)

    def never_built(*args, **kwargs):
        raise Traced("the order was checked after the chain was traced")

    monkeypatch.setattr(planner, "build", never_built)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, order=["Dense_0", "Dense_l", "Dense_2"])
    message = str(info.value)
    for word in ("order", "'Dense_l'", "Dense_1"):
        assert word in message, (word, message)


def test_an_order_name_of_one_side_only_is_a_layer():
    """A layer the new network inserts is named in `order` though the old one lacks it."""
    old_m, new_m = MLP((8,), 2), MLP((8, 8), 2)
    old, new = init(old_m, 3, 0), init(new_m, 3, 1)
    plan = jsurgery.make_plan(
        old, new, order=["Dense_0", "Dense_1", "Dense_2"], layers={"Dense_2": "Dense_1"}
    )
    x = rand((8, 3), 4)
    y_new = apply_fn(new_m)(jsurgery.transplant(old, new, plan), x)
    np.testing.assert_allclose(np.asarray(y_new), np.asarray(apply_fn(old_m)(old, x)), atol=1e-5)


def _mlp_plans():
    old_m, new_m = MLP((8,), 2), MLP((8,), 2)
    old, new = init(old_m, 3, 0), init(new_m, 4, 1)
    pair = dict(inputs=(["a", "b", "c"], ["a", "b", "c", "d"]), new_inputs="zeros")
    x_old, x_new = jnp.ones((1, 3)), jnp.ones((1, 4))
    traced = dict(apply=(apply_fn(old_m), apply_fn(new_m)), example=((x_old,), (x_new,)))
    return (
        old_m,
        new_m,
        old,
        new,
        {
            "params-only": jsurgery.make_plan(old, new, **pair),
            "traced": jsurgery.make_plan(old, new, **pair, **traced),
        },
    )


@pytest.mark.parametrize("path", ["params-only", "traced"])
def test_embed_inputs_refuses_an_input_of_the_wrong_width(path):
    *_, plans = _mlp_plans()
    with pytest.raises(jsurgery.PlanError) as info:
        plans[path].embed_inputs(rand((2, 5)))
    message = str(info.value)
    for word in ("embed_inputs", "5", "3", "old network"):
        assert word in message, (word, message)


def _token_plans():
    old_m, new_m = TokenNet(5, 2), TokenNet(7, 2)
    tokens = jnp.zeros((1,), jnp.int32)
    old = old_m.init(jax.random.key(0), tokens)
    new = new_m.init(jax.random.key(1), tokens)
    pair = dict(inputs=(list("abcde"), list("xabcdey")))
    traced = dict(apply=(old_m.apply, new_m.apply), example=((tokens,), (tokens,)))
    return (
        old_m,
        new_m,
        old,
        new,
        {
            "params-only": jsurgery.make_plan(old, new, **pair),
            "traced": jsurgery.make_plan(old, new, **pair, **traced),
        },
    )


@pytest.mark.parametrize("path", ["params-only", "traced"])
def test_embed_inputs_renumbers_tokens_when_the_first_layer_is_an_embedding(path):
    old_m, new_m, old, new, plans = _token_plans()
    plan = plans[path]
    tokens = jnp.asarray([0, 1, 4, 2], jnp.int32)
    embedded = plan.embed_inputs(tokens)
    np.testing.assert_array_equal(np.asarray(embedded), np.asarray(tokens) + 1)  # 'x' goes first
    out = jsurgery.transplant(old, new, plan)
    y_old, y_new = old_m.apply(old, tokens), new_m.apply(out, embedded)
    np.testing.assert_allclose(np.asarray(y_new), np.asarray(y_old), atol=1e-6)


@pytest.mark.parametrize(
    "tokens", [[0, 5], [-1, 2], [0.0, 1.0]], ids=["too-large", "negative", "floats"]
)
def test_embed_inputs_refuses_what_is_not_an_old_token(tokens):
    *_, plans = _token_plans()
    with pytest.raises(jsurgery.PlanError) as info:
        plans["params-only"].embed_inputs(jnp.asarray(tokens))
    message = str(info.value)
    for word in ("embed_inputs", "token", "[0, 5)"):
        assert word in message, (word, message)


@pytest.mark.parametrize("path", ["params-only", "traced"])
def test_check_preservation_refuses_inputs_of_the_new_width(path):
    old_m, new_m, old, new, plans = _mlp_plans()
    plan = plans[path]
    out = jsurgery.transplant(old, new, plan)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.check_preservation(apply_fn(old_m), old, apply_fn(new_m), out, rand((4, 4)), plan)
    message = str(info.value)
    for word in ("check_preservation", "x_old", "old network", "3", "4", "embeds"):
        assert word in message, (word, message)
    report = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), out, rand((4, 3)), plan
    )
    assert report.ok(1e-5), str(report)
