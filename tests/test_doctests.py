"""The examples in the docstrings of every jsurgery module run.

Modules are found by reading the package's source for ``>>>``, so a new example is tested without
being listed here. The RL, environment and experiment modules need the ``rl`` extra; without it
(``pip install .`` alone) they are skipped.
"""

import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest

import jsurgery

PACKAGE = Path(jsurgery.__file__).resolve().parent
OPTIONAL = {"gymnax", "orbax", "matplotlib", "tqdm", "gymnasium", "six"}
NEEDS_RL_EXTRA = ("jsurgery.rl", "jsurgery.envs", "jsurgery.experiments")


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_examples_are_found():
    assert {"jsurgery.plan.planner", "jsurgery.execute.transplant"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name.startswith(NEEDS_RL_EXTRA) and importlib.util.find_spec("gymnax") is None:
        pytest.skip(f"{name} needs the rl extra (pip install 'jsurgery[rl]')")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {error.name} (pip install 'jsurgery[rl]')")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_readme_example_prints_what_the_readme_shows(capsys):
    """The README's surgery example runs, and every line of the output it shows (all but the
    elided one) is printed."""
    import re

    text = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    example = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "ActorCritic" in b)
    shown = re.search(r"\nprints\n\n```\n(.*?)```", text, re.S).group(1).splitlines()
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    expected = [line for line in shown if not line.lstrip().startswith("...")]
    assert len(expected) == len(shown) - 1
    missing = [line for line in expected if line not in printed]
    assert not missing, missing
