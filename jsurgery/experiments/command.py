"""``jsurgery run`` and ``jsurgery list``."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jsurgery.atomic import write_file
from jsurgery.rl.suggest import did_you_mean
from jsurgery.stopping import Stopped

DEFAULT_SEEDS = 20
DEFAULT_PROTOCOL = "original"
SUMMARY = "summary.md"
AGGREGATE = "aggregate.json"
AGGREGATE_PLOT = "aggregate.png"


def experiments() -> dict:
    from jsurgery.experiments.configs import build_experiments

    return build_experiments()


def run_command(
    experiment: str,
    *,
    seeds: int | None = None,
    protocol: str | None = None,
    out: str = "results",
    progress: bool = True,
    log: Sequence[str] = (),
) -> list[dict]:
    """Runs one experiment (or ``"all"``), printing where the results are and a summary table.

    Args:
        experiment: a name from ``jsurgery list``, or ``"all"``.
        seeds: seeds per arm (default 20).
        protocol: step-budget protocol (default ``"original"``).
        out: output root; each experiment writes ``out/<name>/results.json`` and ``curves.png``.
        progress: show progress bars.
        log: tracking backends (``csv``, ``tensorboard``, ``wandb``) that also receive each
            experiment's results, in ``out/<name>/`` (see :mod:`jsurgery.rl.tracking`).

    Returns:
        The ``results.json`` content of each experiment run.

    Raises:
        ExperimentError: an unknown experiment or protocol, or a results folder made with another
            configuration.
        RunDirError: ``out`` is a file, lies under one, or cannot be written.
    """
    from jsurgery.experiments import report
    from jsurgery.experiments.runner import ExperimentError, run_experiment
    from jsurgery.rl.rundir import check_writable_dir
    from jsurgery.rl.tracking import experiment_scalars, write_scalars

    known = experiments()
    if experiment != "all" and experiment not in known:
        raise ExperimentError(
            f"unknown experiment {experiment!r}{did_you_mean(experiment, known)}; choose one of "
            f"{', '.join(known)} or 'all' (see 'jsurgery list')"
        )
    names = list(known) if experiment == "all" else [experiment]
    check_writable_dir(out, "--out")
    seeds = DEFAULT_SEEDS if seeds is None else seeds
    protocol = DEFAULT_PROTOCOL if protocol is None else protocol
    start = time.perf_counter()
    all_results = []
    for name in names:
        try:
            results = run_experiment(
                known[name], seeds=seeds, protocol=protocol, out=out, progress=progress
            )
        except ExperimentError as error:
            raise ExperimentError(f"{name}: {error}") from None
        except Stopped as stop:
            stop.kept = (
                f"the finished arms of {name} are kept in {Path(out) / name / 'results.json'}; "
                "run the same command again to continue"
            )
            raise
        all_results.append(results)
        folder = Path(out) / name
        if log:
            write_scalars(log, folder, experiment_scalars(results), name=f"{name} {protocol}",
                          config=results["config"])  # fmt: skip
        print(
            f"\n{name} ({protocol} protocol, {seeds} seed{'s' if seeds > 1 else ''}): "
            f"{folder / 'results.json'}, "
            f"{folder / 'curves.png'}"
        )
        if "old_final" in results:
            print(f"old network, final on its own task: {results['old_final']['mean']:.3g}")
        print(report.arm_table(results))
        if hasattr(known[name], "summary_table"):
            print(known[name].summary_table(results))
        sys.stdout.flush()
    if experiment == "all":
        summary = Path(out) / SUMMARY
        tables = [report.markdown_table(all_results), report.surgery_table(all_results)]
        tables.append(write_aggregate(all_results, Path(out)))
        text = "\n\n".join(tables)
        write_file(summary, lambda file: file.write(text + "\n"))
        print(f"\nall experiments: {summary}, {Path(out) / AGGREGATE_PLOT}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return all_results


def write_aggregate(all_results: list[dict], out: Path) -> str:
    """Writes ``aggregate.json`` and ``aggregate.png`` (IQM and performance profiles across
    experiments, :mod:`jsurgery.experiments.aggregate`) under ``out``; returns the table."""
    from jsurgery.experiments import aggregate
    from jsurgery.rl.files import write_json

    summary = aggregate.aggregate(all_results)
    write_json(out / AGGREGATE, summary)
    aggregate.plot_aggregate(summary, out / AGGREGATE_PLOT)
    return aggregate.aggregate_table(summary)


def list_command() -> None:
    """Prints each experiment with its arms and protocols."""
    for name, experiment in experiments().items():
        print(f"{name}: {experiment.description}")
        print(f"    arms: {', '.join(experiment.arms)}")
        print(f"    protocols: {', '.join(experiment.protocols)} (default {DEFAULT_PROTOCOL})")


def load_results(out: str, names=None) -> list[dict]:
    """The ``results.json`` of each experiment found under ``out``."""
    from jsurgery.rl.files import read_json

    names = names or list(experiments())
    paths = [Path(out) / name / "results.json" for name in names]
    return [read_json(path) for path in paths if path.exists()]
