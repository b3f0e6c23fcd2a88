"""What a run shows while it works: a line while XLA compiles, then progress bars.

Compiling a DQN takes most of a short run's time (18 of 21 seconds for 20,000 CartPole steps on a
CPU), so the wait is announced on one line that ends with its duration. Bars are tqdm's: the widget
in a notebook where ipywidgets is installed, else the text bar (which a notebook shows too, without
tqdm's "IProgress not found" warning).
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["compile_finished", "compile_started", "progress_bar"]


def progress_bar(**options):
    """A tqdm bar (``options`` are tqdm's): the notebook widget only where ipywidgets exists."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(**options)


def compile_started(what: str) -> None:
    """Starts the line ``WHAT: compiling ...`` on stderr, where the bars go."""
    print(f"{what}: compiling ...", end="", file=sys.stderr, flush=True)


def compile_finished(seconds: float) -> None:
    """Ends the line :func:`compile_started` began with how long compiling took."""
    print(f" {seconds:.1f} s", file=sys.stderr, flush=True)
