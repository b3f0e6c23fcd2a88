"""The README's command-line table: train, surgery, train on, and scratch, regenerated.

Usage (from the repository root, the ``rl`` extra installed):

    python benchmarks/command_line_loop.py [--dir runs-loop]

Runs the README's four commands through :func:`jsurgery.cli.main` (the same code as the
``jsurgery`` command) into fresh run directories under ``--dir`` (default: a temporary directory,
deleted afterwards), reads back their ``metrics.json`` and ``surgery.json``, and prints the table
in the README's format, followed by the versions, the machine and the date that produced it.
Greedy returns differ between machines and library versions (XLA's CPU code is not bit for bit the
same everywhere), so the stamp belongs with the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

SEEDS = 5
OLD_STEPS = 20_000
ON_STEPS = 10_000
ALL_OBS = "x,x_dot,theta,theta_dot"


def commands(root: Path) -> dict[str, list[str]]:
    """The README's four commands, with their run directories under ``root``."""
    env, seeds = "CartPole-v1", str(SEEDS)
    old, cut, on, scratch = (str(root / name) for name in ("cp-2obs", "cp-4obs", "cp-4obs-on",
                                                            "cp-scratch"))  # fmt: skip
    return {
        "old": ["train", env, "--seeds", seeds, "--steps", str(OLD_STEPS), "--obs", "x_dot,theta",
                "--out", old],
        "surgery": ["surgery", old, "--obs", ALL_OBS, "--recipe", "preserving", "--out", cut],
        "on": ["train", env, "--init", cut, "--steps", str(ON_STEPS), "--out", on],
        "scratch": ["train", env, "--seeds", seeds, "--steps", str(ON_STEPS), "--out", scratch],
    }  # fmt: skip


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _training_cell(metrics: dict, steps: int) -> str:
    start = _mean([curve[0] for curve in metrics["eval_return"]])
    final = metrics["final_eval_return"]
    low, high = min(final), max(final)
    spread = "every seed" if low == high else f"per seed {low:.1f} to {high:.1f}"
    return f"{start:.1f} at step 0, {_mean(final):.1f} after {steps:,} steps ({spread})"


def _surgery_cell(surgery: dict) -> str:
    old, new = surgery["old_greedy_return"], surgery["new_greedy_return"]
    changed = sum(a != b for a, b in zip(old, new, strict=True))
    seeds = "every seed unchanged" if changed == 0 else f"{changed} of {len(old)} seeds changed"
    return f"{_mean(old):.1f} before, {_mean(new):.1f} after, {seeds}"


def table(runs: dict[str, Path]) -> str:
    """The README's table from the run directories the four commands wrote."""

    def read(name: str, file: str = "metrics.json") -> dict:
        return json.loads((runs[name] / file).read_text())

    rows = [
        ("train on `x_dot, theta`", _training_cell(read("old"), OLD_STEPS)),
        ("surgery (prints the plan)", _surgery_cell(read("surgery", "surgery.json"))),
        ("train on from the transplanted run", _training_cell(read("on"), ON_STEPS)),
        ("scratch, all four observations", _training_cell(read("scratch"), ON_STEPS)),
    ]
    lines = [f"| command | greedy return (mean of {SEEDS} seeds) |", "|---|---|"]
    return "\n".join(lines + [f"| {command} | {cell} |" for command, cell in rows])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        if package == "jsurgery":
            from jsurgery import __version__

            return __version__
        return "not installed"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def stamp(load_before: float) -> str:
    """Versions, machine and date, in one line to print under the table."""
    import jax

    versions = ", ".join(f"{name} {_version(name)}" for name in ("jsurgery", "jax", "gymnax"))
    device = jax.devices()[0].platform.upper()
    machine = f"JAX on {device}, {os.cpu_count()} cores ({_cpu_model()})"
    load = f"load average {load_before:.1f} at the start"
    return f"{versions}; {machine}, {load}; {datetime.date.today().isoformat()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="keep the runs here (default: a temporary one)")
    args = parser.parse_args()

    from jsurgery.cli import main as jsurgery_main

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="jsurgery-loop-"))
    load_before = os.getloadavg()[0]
    try:
        steps = commands(root)
        for argv in steps.values():
            print("jsurgery " + " ".join(argv), flush=True)
            status = jsurgery_main(argv + ["--force"])
            if status != 0:
                raise SystemExit(status)
        runs = {name: Path(argv[argv.index("--out") + 1]) for name, argv in steps.items()}
        print("\n" + table(runs) + "\n\n" + stamp(load_before))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
