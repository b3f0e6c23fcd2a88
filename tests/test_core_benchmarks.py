"""The surgery benchmarks run end to end at tiny sizes, so a change that breaks them is caught."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(
    "recipe", ["transplant (template)", "preserving (net2net)", "same shapes (pure copy)"]
)
def test_transplant_benchmark_reports_every_recipe(recipe, transplant_benchmark_output):
    line = next(x for x in transplant_benchmark_output.splitlines() if x.startswith(recipe))
    ratio = float(re.search(r"ratio ([0-9.]+)", line).group(1))
    assert ratio > 0


@pytest.fixture(scope="module")
def transplant_benchmark_output():
    return _run(
        "transplant.py", "--width", "32", "--depth", "2", "--repeats", "1", "--plan-depth", "4"
    )


def test_transplant_benchmark_plans_the_deep_chain(transplant_benchmark_output):
    # 4 hidden layers + output, one inserted: 6 layers of kernel and bias
    assert "(12 leaves)" in transplant_benchmark_output


def test_plan_trace_benchmark_plans_both_models():
    out = _run("plan_trace.py", "--layers", "3")
    assert "MLP, 3 hidden layers" in out and "(8 leaves)" in out
    assert "ResNet-50" in out and "leaves)" in out
