"""Wall time of ``jsurgery run all`` (20 seeds, every arm) and of one experiment.

Usage (from the repository root, MNIST files under ``$JSURGERY_DATA/mnist``):

    JSURGERY_DATA=/path/to/data python benchmarks/experiments.py --out results
    python benchmarks/experiments.py --only cartpole-add-obs --out results

Each experiment runs through :func:`jsurgery.experiments.command.run_command`, the same code as
``jsurgery run``, into a fresh folder (finished results are not reused), and the wall time of each
experiment and of all of them together, compilation included, is printed and written to
``OUT/benchmark.json`` together with the machine's description. The goal is the original study's six
experiments, 20 seeds, every arm, in under 15 minutes on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results", help="output root (default ./results)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--protocol", default="original")
    parser.add_argument("--only", default=None, help="comma-separated experiments (default all)")
    parser.add_argument("--keep", action="store_true", help="reuse finished results in --out")
    args = parser.parse_args()

    from jsurgery.experiments import command
    from jsurgery.experiments.runner import device_description, software_versions

    names = args.only.split(",") if args.only else list(command.experiments())
    times = {}
    start_all = time.perf_counter()
    for name in names:
        folder = Path(args.out) / name
        if folder.exists() and not args.keep:
            shutil.rmtree(folder)
        start = time.perf_counter()
        command.run_command(name, seeds=args.seeds, protocol=args.protocol, out=args.out)
        times[name] = time.perf_counter() - start
        print(f"[benchmark] {name}: {times[name]:.1f} s", flush=True)
    total = time.perf_counter() - start_all
    print(f"[benchmark] total ({len(names)} experiments, {args.seeds} seeds): {total:.1f} s")
    if len(names) > 1:
        from jsurgery.experiments import report

        all_results = command.load_results(args.out, names)
        summary = Path(args.out) / command.SUMMARY
        summary.write_text(
            report.markdown_table(all_results) + "\n\n" + report.surgery_table(all_results) + "\n"
        )
    record = {
        "seeds": args.seeds,
        "protocol": args.protocol,
        "wall_time_s": times,
        "total_s": total,
        "load_average_at_end": os.getloadavg(),
        "device": device_description(),
        "software": software_versions(),
    }
    path = Path(args.out) / ("benchmark.json" if len(names) > 1 else f"benchmark-{names[0]}.json")
    path.write_text(json.dumps(record, indent=1))
    print(f"[benchmark] written {path}")


if __name__ == "__main__":
    main()
