"""The ``jsurgery`` command line: ``train``, ``run`` and ``list``.

Each subcommand parses its arguments here and hands them to the module that does the work, imported
only when that subcommand runs, so ``jsurgery list`` does not pay for compiling a DQN.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(item) for item in _comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden: expected comma-separated integers such as 64,64, got {text!r}"
        ) from None
    if any(width <= 0 for width in widths):
        raise argparse.ArgumentTypeError(f"--hidden: widths must be positive, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jsurgery", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train DQN agents, all seeds in one compiled call")
    train.add_argument("env_id", help="environment, e.g. CartPole-v1, Acrobot-v1, LunarLander-v3")
    train.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    train.add_argument("--steps", type=int, default=None, help="environment steps per seed")
    train.add_argument("--hidden", type=_widths, default=None, help="hidden widths, e.g. 64,64")
    train.add_argument("--obs", type=_comma_list, default=None, help="observation IDs to expose")
    train.add_argument("--actions", type=_comma_list, default=None, help="action IDs to expose")
    train.add_argument("--out", required=True, help="output directory")

    run = commands.add_parser("run", help="run a surgery experiment (or 'all')")
    run.add_argument("experiment", help="experiment name, or 'all'; see 'jsurgery list'")
    run.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 20)")
    run.add_argument("--protocol", default=None, help="step-budget protocol (default: original)")
    run.add_argument("--out", default="results", help="output directory (default ./results)")

    commands.add_parser("list", help="list the experiments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from jsurgery.rl.command import train_command

        train_command(
            args.env_id,
            seeds=args.seeds,
            steps=args.steps,
            hidden=args.hidden,
            obs=args.obs,
            actions=args.actions,
            out=args.out,
        )
    elif args.command == "run":
        from jsurgery.experiments.command import run_command

        run_command(args.experiment, seeds=args.seeds, protocol=args.protocol, out=args.out)
    else:
        from jsurgery.experiments.command import list_command

        list_command()
    return 0


if __name__ == "__main__":
    sys.exit(main())
