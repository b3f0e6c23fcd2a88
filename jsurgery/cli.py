"""The jsurgery command line: train, surgery, run and list.

Each subcommand parses its arguments here and hands them to the module that does the work, imported
only when that subcommand runs, so ``jsurgery list`` does not pay for compiling a DQN. A bad
argument prints one line naming it and the fix, and exits with status 2 (no traceback); so do a
file-system error (naming the file) and a missing optional dependency (gymnax, orbax-checkpoint).
Output directories are checked before any training starts. SIGINT (Ctrl-C) and SIGTERM print one
line saying what was kept and exit with status 130 and 143.
"""

from __future__ import annotations

import argparse
import os
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


def _layer_pairs(text: str) -> dict[str, str | None]:
    """``NEW=OLD,...`` -> ``{NEW: OLD}``; ``NEW=`` (nothing after ``=``) maps to None."""
    pairs: dict[str, str | None] = {}
    for item in _comma_list(text):
        new, sep, old = (part.strip() for part in item.partition("="))
        if not sep or not new:
            raise argparse.ArgumentTypeError(
                f"--layers: expected NEW=OLD pairs such as Dense_2=Dense_1 (NEW= keeps a new "
                f"layer's fresh init), got {item!r}"
            )
        pairs[new] = old or None
    return pairs


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _add_out_options(command: argparse.ArgumentParser, *, resume: bool) -> None:
    """``--force`` (and ``--resume``): what to do with a run already under ``--out``."""
    group = command.add_mutually_exclusive_group()
    group.add_argument(
        "--force",
        action="store_true",
        help="replace the run under --out (the old one stays until the new one is complete)",
    )
    if resume:
        group.add_argument(
            "--resume",
            action="store_true",
            help="continue the interrupted run under --out from its last save (same arguments)",
        )


def _backends(text: str) -> tuple[str, ...]:
    from jsurgery.rl.tracking import parse_backends

    try:
        return parse_backends(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _assignment(text: str):
    from jsurgery.rl.config_overrides import parse_assignment

    try:
        return parse_assignment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--set {text}: ")) from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if default in (None, False, (), [], argparse.SUPPRESS) or "default" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Argument errors on one line, with where to look for the fix, and exit status 2.

    ``details``, a function returning text, is run for ``--help`` only and shown after the options.
    """

    def __init__(self, *args, details=None, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.details = details

    def format_help(self) -> str:
        if self.details is not None:
            self.epilog = self.details()
        return super().format_help()

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    from jsurgery.commands import help_text

    parser = _Parser(prog="jsurgery", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train DQN or PPO agents, all seeds in one compiled call",
        description="Train DQN or PPO agents on a gymnax environment, all seeds in one compiled "
        "call.",
        details=help_text.train_epilog,
    )
    train.add_argument("env_id", help="environment, e.g. CartPole-v1 (all are listed below)")
    train.add_argument(
        "--algo",
        choices=("dqn", "ppo"),
        default=None,
        help="the algorithm (default dqn; with --init, the run's); continuous actions need ppo",
    )
    train.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="number of seeds (default 1; with --init, the run's seeds)",
    )
    train.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="steps per seed (default: the environment's preset, listed below)",
    )
    train.add_argument(
        "--hidden",
        type=_widths,
        default=None,
        help="hidden widths, e.g. 64,64 (default: the preset's; with --init, the run's)",
    )
    train.add_argument("--obs", type=_comma_list, default=None, help="observation IDs to expose")
    train.add_argument("--actions", type=_comma_list, default=None, help="action IDs to expose")
    train.add_argument(
        "--init",
        default=None,
        metavar="RUN_DIR",
        help="continue a saved run (e.g. from 'jsurgery surgery'): its algorithm, params, "
        "target params, optimizer state, seeds, network and IDs",
    )
    train.add_argument(
        "--exploration-start",
        type=_probability,
        default=None,
        metavar="EPSILON",
        help="DQN: epsilon at step 0 (default 1.0; with --init, the preset's final epsilon)",
    )
    train.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="Adam's step size (default: the environment's preset)",
    )
    train.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="configuration keys from a TOML or YAML file (key = value; see --print-config); "
        "the options above win over it",
    )
    train.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one configuration key, e.g. --set gamma=0.98 (repeatable; keys listed below)",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as TOML (for --config) and exit",
    )
    train.add_argument(
        "--log",
        type=_backends,
        default=(),
        metavar="BACKENDS",
        help="also write the metrics with csv, tensorboard and/or wandb, e.g. --log "
        "csv,tensorboard (per seed and their mean; tensorboard and wandb need their extras)",
    )
    train.add_argument(
        "--out", default=None, help="output directory (required unless --print-config)"
    )
    _add_out_options(train, resume=True)
    train.add_argument(
        "--save-every",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds between saves of the training state, which --resume continues from "
        "(default 120; 0: after every compiled chunk)",
    )

    surgery = commands.add_parser(
        "surgery", help="move a saved run into a new network (observations, actions, widths)"
    )
    surgery.add_argument("run_dir", metavar="RUN_DIR", help="a run written by 'jsurgery train'")
    surgery.add_argument(
        "--obs",
        type=_comma_list,
        default=None,
        help="new observation IDs (each environment's are listed by 'jsurgery train --help')",
    )
    surgery.add_argument("--actions", type=_comma_list, default=None, help="new action IDs")
    surgery.add_argument("--hidden", type=_widths, default=None, help="new hidden widths")
    surgery.add_argument(
        "--layers",
        type=_layer_pairs,
        default=None,
        metavar="NEW=OLD,...",
        help="which old layer each new layer continues, where the widths leave it open "
        "(a PlanError lists the pairs); NEW= keeps that layer's fresh init",
    )
    surgery.add_argument(
        "--recipe",
        choices=("preserving", "transplant"),
        default="preserving",
        help="preserving: the new network acts as the old one (default); transplant: new units "
        "keep their random initialisation",
    )
    surgery.add_argument(
        "--noise",
        type=float,
        default=0.0,
        metavar="EPS",
        help="preserving: spread the new hidden units' incoming weights by this relative noise "
        "(e.g. 0.1), so that they learn apart (under a LayerNorm they otherwise learn as one); "
        "the old agent then moves to first order in it (default 0: exact)",
    )
    surgery.add_argument("--out", required=True, metavar="NEW_DIR", help="the new run directory")
    _add_out_options(surgery, resume=False)

    run = commands.add_parser(
        "run",
        help="run a surgery experiment (or 'all')",
        description="Run a surgery experiment: every arm over all seeds, then the statistics.",
        details=help_text.run_epilog,
    )
    run.add_argument("experiment", help="experiment name (listed below), or 'all'")
    run.add_argument("--seeds", type=_positive_int, default=None, help="seeds per arm (default 20)")
    run.add_argument(
        "--protocol", default=None, help="step-budget protocol, listed below (default: original)"
    )
    run.add_argument("--out", default="results", help="output directory")
    run.add_argument(
        "--log",
        type=_backends,
        default=(),
        metavar="BACKENDS",
        help="also write each experiment's results with csv, tensorboard and/or wandb",
    )

    commands.add_parser("list", help="list the experiments")
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jsurgery")
    except metadata.PackageNotFoundError:
        from jsurgery import __version__

        return __version__


OPTIONAL = {
    "gymnax": "gymnax",
    "orbax": "orbax-checkpoint",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
}
"""Modules of the ``rl`` extra a subcommand may need that a light install lacks, by package."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).replace("`", "").split())


def _os_error(error: OSError) -> str:
    reason = error.strerror or _one_line(error)
    files = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def _run(args: argparse.Namespace) -> None:
    if args.command in ("train", "surgery"):
        import orbax.checkpoint  # noqa: F401  (runs are saved with it: fail before training)
    if getattr(args, "log", ()):
        from jsurgery.rl.tracking import check_backends

        check_backends(args.log)
    if args.command == "train":
        from jsurgery.commands.train import train_command

        train_command(
            args.env_id,
            algo=args.algo,
            seeds=args.seeds,
            steps=args.steps,
            hidden=args.hidden,
            obs=args.obs,
            actions=args.actions,
            out=args.out,
            init=args.init,
            exploration_start=args.exploration_start,
            learning_rate=args.learning_rate,
            force=args.force,
            resume=args.resume,
            **({} if args.save_every is None else {"save_every": args.save_every}),
            config_file=args.config,
            set_values=args.set,
            print_config=args.print_config,
            log=args.log,
        )
    elif args.command == "surgery":
        from jsurgery.commands.surgery import surgery_command

        surgery_command(
            args.run_dir,
            obs=args.obs,
            actions=args.actions,
            hidden=args.hidden,
            layers=args.layers,
            recipe=args.recipe,
            out=args.out,
            force=args.force,
            noise=args.noise,
        )
    elif args.command == "run":
        from jsurgery.experiments.command import run_command

        run_command(
            args.experiment, seeds=args.seeds, protocol=args.protocol, out=args.out, log=args.log
        )
    else:
        from jsurgery.experiments.command import list_command

        list_command()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns 0, or 2 after printing one line for a bad argument or a
    file-system error (130 or 143 when stopped by SIGINT or SIGTERM)."""
    args = build_parser().parse_args(argv)
    prog = f"jsurgery {args.command}"
    if args.command == "train" and args.out is None and not args.print_config:
        message = f"the following arguments are required: --out; see '{prog} --help'"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    from jsurgery.stopping import Stopped, handle_stop_signals

    restore_signals = handle_stop_signals()
    try:
        _run(args)
        sys.stdout.flush()  # a closed pipe is found here, not at exit
    except Stopped as stop:  # SIGINT or SIGTERM: one line saying what was kept
        print(f"{prog}: stopped by {stop.name}; {stop.kept or 'nothing saved'}", file=sys.stderr)
        return stop.exit_status
    except BrokenPipeError:  # e.g. jsurgery list | head -1: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ModuleNotFoundError as error:
        root = (error.name or "").split(".")[0]
        if root not in OPTIONAL:
            raise
        print(
            f"{prog}: error: needs {OPTIONAL[root]} (the rl extra), which is not installed; "
            "install it with pip install 'jsurgery[rl]'",
            file=sys.stderr,
        )
        return 2
    except ValueError as error:  # CommandError, PlanError and argument checks of the library
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused: name the file and the reason
        print(f"{prog}: error: {_os_error(error)}", file=sys.stderr)
        return 2
    finally:
        restore_signals()
    return 0


if __name__ == "__main__":
    sys.exit(main())
