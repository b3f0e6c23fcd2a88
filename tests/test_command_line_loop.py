"""benchmarks/command_line_loop.py runs the README's commands and reads their files back right."""

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "command_line_loop", ROOT / "benchmarks" / "command_line_loop.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_runs_the_commands_the_readme_shows():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("[start:command-line-loop]")[1]
    shown = re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()
    run = [" ".join(["jsurgery", *argv]) for argv in load_script().commands(Path("runs")).values()]
    assert run == shown


def _metrics(folder: Path, start: list[float], final: list[float]) -> Path:
    folder.mkdir()
    curves = [[first, last] for first, last in zip(start, final, strict=True)]
    metrics = {"eval_return": curves, "final_eval_return": final}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_the_table_reads_the_runs(tmp_path):
    runs = {
        "old": _metrics(tmp_path / "old", [10.0, 20.0], [100.0, 300.0]),
        "on": _metrics(tmp_path / "on", [200.0, 200.0], [500.0, 500.0]),
        "scratch": _metrics(tmp_path / "scratch", [30.0, 40.0], [200.0, 100.0]),
        "surgery": tmp_path / "surgery",
    }
    runs["surgery"].mkdir()
    surgery = {"old_greedy_return": [150.0, 250.0], "new_greedy_return": [150.0, 240.0]}
    (runs["surgery"] / "surgery.json").write_text(json.dumps(surgery))
    rows = load_script().table(runs).splitlines()[2:]
    assert rows == [
        "| train on `x_dot, theta` | 15.0 at step 0, 200.0 after 20,000 steps "
        "(per seed 100.0 to 300.0) |",
        "| surgery (prints the plan) | 200.0 before, 195.0 after, 1 of 2 seeds changed |",
        "| train on from the transplanted run | 200.0 at step 0, 500.0 after 10,000 steps "
        "(every seed) |",
        "| scratch, all four observations | 35.0 at step 0, 150.0 after 10,000 steps "
        "(per seed 100.0 to 200.0) |",
    ]
