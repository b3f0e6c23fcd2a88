"""The tracer's rules table: every rule names a JAX primitive, an unknown primitive is opaque, the
package `jsurgery.trace` has no import circle, and the worked example of docs/development.md
("Adding a rule for a primitive") runs."""

import ast
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.extend.core.primitives
import jax.numpy as jnp
import pytest
from jax.extend.core import Primitive

import jsurgery.trace
from jsurgery.trace import trace
from jsurgery.trace.registry import CALL_KEYS, FALLBACKS, RULES, register, rule_for

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jsurgery" / "trace"


def _jax_primitive_names() -> set[str]:
    """The names of the `Primitive` objects held by the loaded modules of JAX (`jax.lax`,
    `jax._src.lax.*`, `jax._src.pjit`, `jax._src.custom_derivatives`, `jax._src.prng`, ...)."""
    names = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "jax":
            continue
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, Primitive):
                names.add(value.name)
    return names


def test_every_rule_is_named_after_a_primitive_of_the_installed_jax():
    names = _jax_primitive_names()
    assert {"jit", "custom_jvp_call", "custom_vjp_call", "scan", "dot_general", "split"} <= names
    unknown = sorted(set(RULES) - names)
    assert not unknown, f"rules for names that are no primitive of jax {jax.__version__}: {unknown}"


def _primitives_in(fn, *args) -> set[str]:
    found = set()

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            found.add(eqn.primitive.name)
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        visit(inner)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_the_call_primitives_jax_emits_have_rules_by_name():
    @jax.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -1, 1),))

    def fn(x):
        y = jax.jit(jnp.tanh)(x)
        y = jax.nn.relu(y)  # custom_jvp
        y = jax.checkpoint(jnp.sin)(y)
        return clip_gradient(y)

    found = _primitives_in(fn, jnp.ones(3))
    calls = {"jit", "custom_jvp_call", "custom_vjp_call"} & found
    assert len(calls) == 3, found
    missing = sorted(n for n in found if n not in RULES)
    assert not missing, missing


def _opaque_primitive(name: str) -> Primitive:
    primitive = Primitive(name)
    primitive.def_abstract_eval(lambda x: x)
    return primitive


def _dense_then(primitive: Primitive):
    def apply(leaves, x):
        (kernel,) = leaves
        return primitive.bind(x @ kernel)

    return trace(apply, [jnp.ones((3, 4))], (jnp.ones((2, 3)),), "x")


def test_an_unknown_primitive_is_opaque():
    graph = _dense_then(_opaque_primitive("jsurgery_test_unknown"))
    ((_, units),), ((_, out),) = graph.leaf_axes, graph.output_axes
    assert graph.opaque_at(out) is not None
    assert graph.opaque_at(units)[0] == "jsurgery_test_unknown"


def _equation(name: str, **params):
    return SimpleNamespace(primitive=SimpleNamespace(name=name), params=params)


def test_rule_for_has_one_dispatch():
    assert rule_for(_equation("reshape", new_sizes=(2,))) is RULES["reshape"]
    for key in CALL_KEYS:
        assert rule_for(_equation("jsurgery_test_call", **{key: None})) is FALLBACKS["call"]
    assert rule_for(_equation("jsurgery_test_unknown")) is FALLBACKS["opaque"]


def test_a_primitive_has_one_rule():
    rule = RULES["dot_general"]
    with pytest.raises(ValueError, match="dot_general"):
        register("dot_general")(lambda w, eqn, where: None)
    assert RULES["dot_general"] is rule


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, str]]:
    """`(module, name)` for every import of a `jsurgery.trace` module in the file, function-level
    and `TYPE_CHECKING` imports included; `from package import module` names the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jsurgery.trace"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, "") if sub in MODULES else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("jsurgery.trace")]
    return found


def _cycle(graph: dict) -> list | None:
    state: dict = {}

    def visit(u, path):
        state[u] = "open"
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                return path[path.index(v) :] + [v]
            if v not in state and (found := visit(v, path + [v])):
                return found
        state[u] = "done"
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u, [u])):
            return found
    return None


def test_the_package_has_no_import_circle():
    graph = {n: {m for m, _ in _imports(p) if m in MODULES and m != n} for n, p in MODULES.items()}
    assert {"jsurgery.trace.registry", "jsurgery.trace.walker"} <= graph["jsurgery.trace.tracer"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_no_private_name_crosses_the_modules_of_the_package():
    crossing = [
        f"{name} imports {imported} from {module}"
        for name, path in MODULES.items()
        for module, imported in _imports(path)
        if imported.startswith("_")
    ]
    assert not crossing, crossing


def _docs_example() -> str:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## Adding a rule for a primitive\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2
    return "\n".join(blocks)


def test_the_worked_example_of_adding_a_rule_runs():
    namespace: dict = {"__name__": "development_md"}
    try:
        exec(compile(_docs_example(), "docs/development.md", "exec"), namespace)
        tests = [f for name, f in namespace.items() if name.startswith("test_")]
        assert tests
        for test in tests:
            test()
    finally:
        RULES.pop("softclip", None)
    graph = _dense_then(namespace["softclip_p"])
    assert graph.opaque_at(graph.output_axes[0][1]) is not None  # without its rule: opaque


def test_importing_the_package_registers_every_family():
    assert {"call", "opaque"} <= set(FALLBACKS)
    for name in ("add", "reduce_sum", "cumsum", "iota", "dot_general", "gather", "scan", "jit"):
        assert name in RULES, name
    assert jsurgery.trace.trace is trace
    assert "copy_p" not in RULES
