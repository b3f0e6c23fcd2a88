"""Where an equation comes from, in the user's words, for messages.

An equation the user's own code makes is cited by its source line. One made inside a library
(Flax, JAX, Equinox, Optax: a LayerNorm's statistics, a cell's gates) is cited by the user's layer
that ran it, the module path of the name stack matched to the parameter paths (`LayerNorm_0`), and
by the user's line that called the library: a path under site-packages or a library's private
function (`_compute_stats`) says nothing the user wrote.
"""

from __future__ import annotations

import functools
import os
import sys

import jax.extend.core as jcore

#: Packages whose source lines are never cited: the user's layer and line are instead.
LIBRARIES = ("flax", "jax", "jaxlib", "equinox", "optax", "haiku", "chex", "distrax", "numpy")

_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_dirs() -> tuple[str, ...]:
    dirs = []
    for name in LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(dirs)


@functools.lru_cache(maxsize=1024)
def in_library(path: str) -> bool:
    """Whether a source file belongs to an installed library rather than to the user (or to
    jsurgery, whose params-only functions `jsurgery.params.in_user_words` rewrites)."""
    path = os.path.abspath(path)
    if path.startswith(_OWN + os.sep):
        return False
    packaged = f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path
    return packaged or path.startswith(_library_dirs())


def _frames(eqn: jcore.JaxprEqn) -> list:
    """The equation's frames outside JAX's own, innermost first, up to the first one that is
    not a library's (the user's, or jsurgery's, which called the user's function)."""
    from jax._src import source_info_util

    found = []
    for frame in source_info_util.user_frames(eqn.source_info.traceback):
        found.append(frame)
        if not in_library(frame.file_name):
            break
    return found


def _line(frame) -> str:
    column = f":{frame.start_column}" if frame.start_column else ""
    return f"{frame.file_name}:{frame.start_line}{column} ({frame.function_name})"


def path_runs(leaf_names: list) -> frozenset:
    """Every run of consecutive components of the parameter paths (`"params/attn/query/kernel"`
    gives `"attn"`, `"attn/query"`, ...): the names a layer in a name stack may have."""
    runs = set()
    for name in leaf_names:
        parts = name.split("/")
        runs.update(
            "/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts))
        )
    return frozenset(runs)


def layer_of(name_stack: str, runs: frozenset) -> str:
    """The user's layer path in a name stack (`"Policy/LayerNorm_0"` -> `"LayerNorm_0"`,
    `"Policy/attn/...qhd,...khd->...hqk"` -> `"attn"`): its longest run of components, ending
    innermost, that is a run of some parameter path (`path_runs`); without one, the stack less
    its first component (Flax's top module, which has no name of its own in the params)."""
    parts = [p for p in name_stack.split("/") if p]
    for end in range(len(parts), 0, -1):
        for start in range(end):
            run = "/".join(parts[start:end])
            if run in runs:
                return run
    return "/".join(parts[1:])


def origin(eqn: jcore.JaxprEqn, runs: frozenset, scope: str = "") -> str:
    """`"at file:line (function)"` for an equation of the user's code; `"in `Layer`, called at
    file:line (function)"` for one made inside a library; "" when unknown. `runs`: the names
    layers may have (`path_runs`); `scope`: the name stack of the call a nested jaxpr came
    from."""
    try:
        frames = _frames(eqn)
        stack = "/".join(s for s in (scope, str(eqn.source_info.name_stack)) if s)
    except Exception:  # noqa: BLE001 -- a missing source line must not stop a plan
        return ""
    if not frames:
        return ""
    if not in_library(frames[0].file_name):
        return f"at {_line(frames[0])}"
    layer = layer_of(stack, runs)
    user = frames[-1] if not in_library(frames[-1].file_name) else None
    user = user if user is not None and not user.file_name.startswith(_OWN + os.sep) else None
    called = frames[-2] if user is not None and len(frames) > 1 else frames[-1]
    where = f"in `{layer}`" if layer else _library_call(called.function_name)
    return f"{where}, called at {_line(user)}" if user is not None else where


def _library_call(function: str) -> str:
    """`"in a `LayerNorm`"` for the library method a user's line called (`LayerNorm.__call__`),
    when no name stack names the user's layer (NNX and Equinox modules push none)."""
    owner = function.split(".")[0]
    if "." not in function or owner.startswith("_") or "<" in owner:
        return "in a library function"
    return f"in a `{owner}`"
