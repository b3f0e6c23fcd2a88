"""Surgery on saved training states: an orbax checkpoint in, a new architecture's state out.

Imported by path (``import jsurgery.checkpoint``), since it needs ``orbax-checkpoint``::

    from jsurgery.checkpoint import read_structure, restore_transplanted, save_state

    old = read_structure("ckpt/old")          # shapes and dtypes as stored; no array is read
    plan = jsurgery.make_plan(old["params"], new_state.params, inputs=..., outputs=...,
                              **jsurgery.PRESERVING)
    state = restore_transplanted("ckpt/old", new_state, plan)   # a state shaped like new_state
    save_state("ckpt/new", state)             # atomic: orbax writes elsewhere, then renames

The checkpoint can be any orbax ``StandardCheckpointer`` (or ``PyTreeCheckpointer``) save of a
training state: a flax ``TrainState``, a dict of params, target params and an optax state, linen
variables, or NNX states (``nnx.state(model)``, ``nnx.state(optimizer)``); no metadata of
jsurgery's is needed. The new state says what the old one held: its params-shaped parts (found as
:func:`jsurgery.transplant_state` finds them) are read with the plan's old shapes, every other
leaf (step, Adam's count) with its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from jsurgery import trees
from jsurgery.atomic import current_dir, read_whole, replace_dir
from jsurgery.errors import PlanError
from jsurgery.execute.state import StatePart, state_parts
from jsurgery.execute.transplant import fit, transplant, transplant_moments
from jsurgery.integrity import (
    DamagedError,
    disk_path,
    verify_files,
    verify_leaves,
    write_checksums,
)
from jsurgery.plan.plan import Plan

__all__ = ["CheckpointError", "read_structure", "restore_transplanted", "save_state"]


class CheckpointError(PlanError):
    """A checkpoint that does not hold what the new state and the plan expect, or is damaged."""


@contextlib.contextmanager
def _damage_named() -> Iterator[None]:
    """A :class:`jsurgery.integrity.DamagedError` raised as a :class:`CheckpointError`."""
    try:
        yield
    except DamagedError as error:
        raise CheckpointError(str(error)) from None


_LISTED = 8


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler())


def _stored(directory: str | os.PathLike) -> dict[tuple[str, ...], tuple[tuple, np.dtype]]:
    """``{path: (shape, dtype)}`` of every array stored in the checkpoint."""
    directory = current_dir(directory)
    if directory.is_dir():
        with _damage_named():
            verify_files(directory)
    try:
        tree = _metadata_tree(directory) if directory.is_dir() else None
    except (FileNotFoundError, ValueError, OSError):
        tree = None
    if tree is None:
        raise CheckpointError(
            f"`directory`: {directory} is not an orbax checkpoint; pass the directory an orbax "
            "StandardCheckpointer or PyTreeCheckpointer saved to."
        )
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {disk_path(kp): (tuple(m.shape), np.dtype(m.dtype)) for kp, m in pairs}


def read_structure(directory: str | os.PathLike) -> Any:
    """The stored tree as nested dicts and lists of ``jax.ShapeDtypeStruct``; reads no array.

    Pass its params part to :func:`jsurgery.make_plan` (which reads only shapes and dtypes).

    Raises:
        CheckpointError: ``directory`` is not an orbax checkpoint.
    """
    stored = _stored(directory)
    root: dict = {}
    for path, (shape, dtype) in stored.items():
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jax.ShapeDtypeStruct(shape, dtype)
    return _lists(root)


def _lists(node):
    """Dicts keyed '0', '1', ... (how orbax names tuple and list items) back to lists."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(map(int, node)) == list(range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def save_state(directory: str | os.PathLike, state: Any, *, force: bool = False) -> Path:
    """Save ``state`` with orbax's ``StandardCheckpointer``, atomically.

    The checkpoint is written beside ``directory`` and switched in by renames
    (:func:`jsurgery.atomic.replace_dir`), so ``directory`` holds a whole checkpoint or none, and
    with ``force`` an existing one stays whole until the new one is complete (a kill at any moment
    leaves the old or the new checkpoint; the readers here find it). A CRC-32 of every leaf goes to
    ``checksums.json`` inside it; restores verify the leaves they read against it.

    Raises:
        CheckpointError: ``directory`` already holds something and ``force`` is not given.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    if current_dir(directory).exists() and not force:
        raise CheckpointError(
            f"`directory`: {directory} already exists; pass force=True to replace it (the old "
            "checkpoint stays until the new one is complete)"
        )

    def build(stage: Path) -> None:
        stage.rmdir()  # orbax makes the directory itself, through its own temporary one
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(stage, state)
        write_checksums(stage, state)

    return replace_dir(directory, build)


def _unfit(path: tuple, how: str) -> tuple:
    """A path of the plan's tree as the state's part holds it (see `_fit`)."""
    if how == "inner":
        return path[1:]
    if how == "outer":
        return ("params", *path)
    return path


class _Part:
    """One part of the new state: a params-shaped subtree with its plan, or one other leaf."""

    def __init__(self, part: StatePart):
        self.prefix = disk_path(part.keypath)
        node, plan = part.node, part.plan
        self.node, self.plan, self.moments = node, plan, part.moments
        if plan is None:
            return
        flat, self.how = fit(node, plan.new_leaves, "new_state")
        self.template = flat.leaves
        pairs, _ = jax.tree_util.tree_flatten_with_path(node)
        suffixes = {disk_path(kp)[len(trees.keypath(kp)) :] for kp, _ in pairs}
        if len(suffixes) != 1:
            raise CheckpointError(
                f"`new_state`: the part at {'/'.join(self.prefix) or 'the root'} mixes leaf "
                "kinds (plain arrays and NNX variables); pass one kind per part."
            )
        (self.suffix,) = suffixes

    def disk(self, path: tuple) -> tuple[str, ...]:
        """Where the old leaf `path` (of the plan's old tree) is stored."""
        return self.prefix + tuple(str(k) for k in _unfit(path, self.how)) + self.suffix

    def expected(self) -> dict:
        if self.plan is None:
            return {self.prefix: (tuple(np.shape(self.node)), _dtype(self.node))}
        return {self.disk(p): (tuple(s), np.dtype(d)) for p, s, d in self.plan.old_leaves}

    def read(self) -> set[int]:
        """Indices of the old leaves the plan reads."""
        return {
            lp.old_index
            for lp in self.plan.leaves
            if lp.old_index >= 0 and lp.source not in ("template", "identity")
        }


def _dtype(leaf) -> np.dtype | None:
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else None


def _parts(new_state, plan: Plan, moment_keys: Sequence[str]) -> tuple[list[_Part], Any]:
    found, treedef = state_parts(new_state, plan, side="new", moment_keys=moment_keys)
    parts = [_Part(part) for part in found]
    if not any(part.plan is not None for part in parts):
        raise CheckpointError(
            "`new_state`: no subtree has the structure of the new params the plan was made "
            "for; make the plan with the params the new state holds."
        )
    return parts, treedef


def _listed(paths) -> str:
    names = sorted("/".join(p) for p in paths)
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f"{names[:_LISTED]}{more}"


def _check(stored: dict, expected: dict, directory, allow_dtype_change: bool) -> None:
    missing = [p for p in expected if p not in stored]
    unexpected = [p for p in stored if p not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {directory} does not hold the old state the plan and `new_state` "
            f"describe: missing leaves {_listed(missing)}, unexpected leaves "
            f"{_listed(unexpected)}; restore a complete checkpoint of that state, or make the "
            "plan from read_structure(directory) and a new state of the same kind."
        )
    wrong = [
        f"{'/'.join(p)}: stored {stored[p][0]}, expected {shape}"
        for p, (shape, _) in expected.items()
        if stored[p][0] != shape
    ]
    if wrong:
        raise CheckpointError(
            f"checkpoint {directory}: leaves of another shape than the plan's old tree: "
            f"{wrong[:_LISTED]}; make the plan from read_structure(directory)."
        )
    cast = [
        f"{'/'.join(p)}: stored {stored[p][1]}, expected {dtype}"
        for p, (_, dtype) in expected.items()
        if dtype is not None and stored[p][1] != dtype
    ]
    if cast and not allow_dtype_change:
        raise CheckpointError(
            f"checkpoint {directory}: leaves of another dtype than the plan's old tree and "
            f"`new_state` expect: {cast[:_LISTED]}; pass allow_dtype_change=True to cast them."
        )


def _mesh_size(mesh, axes) -> int:
    if axes is None:
        return 1
    axes = axes if isinstance(axes, tuple) else (axes,)
    return int(np.prod([mesh.shape[a] for a in axes]))


def _sharding_for(template, shape: tuple):
    """Where an old leaf lands: the template leaf's sharding where its partition divides the old
    shape, else replicated over the template's devices."""
    sharding = getattr(template, "sharding", None)
    if isinstance(sharding, NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
        fits = len(spec) == len(shape) and all(
            n % _mesh_size(sharding.mesh, axes) == 0 for n, axes in zip(shape, spec, strict=True)
        )
        return NamedSharding(sharding.mesh, PartitionSpec(*spec) if fits else PartitionSpec())
    if sharding is not None and len(sharding.device_set) == 1:
        return sharding
    if sharding is not None:
        mesh = jax.sharding.Mesh(np.array(sorted(sharding.device_set, key=lambda d: d.id)), ("d",))
        return NamedSharding(mesh, PartitionSpec())
    return SingleDeviceSharding(jax.devices()[0])


def _metadata_tree(directory: Path) -> Any:
    metadata = _checkpointer().metadata(directory)
    tree = getattr(metadata, "item_metadata", metadata)
    return getattr(tree, "tree", tree)


def _read_leaves(directory: Path, wanted: dict) -> dict:
    """``{path: array}`` for ``wanted = {path: (shape, dtype, sharding)}``, reading only those
    (every other stored leaf is an orbax placeholder, which orbax skips)."""
    import orbax.checkpoint as ocp

    def target(keypath, _):
        path = disk_path(keypath)
        if path not in wanted:
            return ocp.PLACEHOLDER
        shape, dtype, sharding = wanted[path]
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def restore_args(keypath, _):
        path = disk_path(keypath)
        if path not in wanted:
            return ocp.PLACEHOLDER
        shape, dtype, sharding = wanted[path]
        return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=shape, dtype=dtype)

    tree = _metadata_tree(directory)
    restored = _checkpointer().restore(
        directory,
        args=ocp.args.PyTreeRestore(
            item=jax.tree_util.tree_map_with_path(target, tree),
            restore_args=jax.tree_util.tree_map_with_path(restore_args, tree),
        ),
    )
    pairs, _ = jax.tree_util.tree_flatten_with_path(restored)
    return {path: leaf for kp, leaf in pairs if (path := disk_path(kp)) in wanted}


def _unreadable(directory: Path, wanted: dict, error: Exception) -> CheckpointError:
    """The error naming the first leaf that cannot be read on its own (all of them if none)."""
    reason = " ".join(str(error).split())
    for path in sorted(wanted):
        try:
            _read_leaves(directory, {path: wanted[path]})
        except _READ_ERRORS as leaf_error:
            reason = " ".join(str(leaf_error).split())
            return CheckpointError(
                f"checkpoint {directory}: leaf {'/'.join(path)} is damaged and cannot be read "
                f"({reason}); restore the checkpoint from a good copy or save it again."
            )
    return CheckpointError(
        f"checkpoint {directory} is damaged and cannot be read ({reason}); restore the "
        "checkpoint from a good copy or save it again."
    )


_READ_ERRORS = Exception
"""What orbax and tensorstore raise for unreadable data: ValueError (tensorstore), OSError,
RuntimeError, and a plain Exception that orbax wraps some of them in."""


def _restore(directory: Path, wanted: dict, stored: dict) -> dict:
    """``{path: array}`` for ``wanted = {path: (shape, dtype, sharding)}``: each leaf read with its
    stored dtype, its checksum verified, then cast to the wanted dtype."""
    as_stored = {p: (shape, stored[p][1], sharding) for p, (shape, _, sharding) in wanted.items()}
    try:
        values = _read_leaves(directory, as_stored)
    except _READ_ERRORS as error:
        raise _unreadable(directory, as_stored, error) from None
    with _damage_named():
        verify_leaves(directory, values)
    return {
        p: value if wanted[p][1] == stored[p][1] else value.astype(wanted[p][1])
        for p, value in values.items()
    }


def restore_transplanted(
    directory: str | os.PathLike,
    new_state: Any,
    plan: Plan,
    *,
    moment_keys: Sequence[str] = (),
    allow_dtype_change: bool = False,
) -> Any:
    """Restore the checkpoint under ``directory`` straight into ``new_state``'s architecture.

    Each params-shaped part of ``new_state`` (params, target params, ``batch_stats``, the
    optimizer's moments) is read from the checkpoint with the plan's old shapes and transplanted
    as :func:`jsurgery.transplant_state` would (moments inside an optax state, or under a key in
    ``moment_keys``, keep their copied units and start new ones at zero); every other leaf (step,
    Adam's count) is read as stored, cast to ``new_state``'s dtype. Parts are read one at a time
    and only the old leaves the plan reads, so the whole old state is never in memory, let alone
    twice; each old leaf lands with its template leaf's sharding (replicated over the template's
    devices where the partition does not divide the old shape), and each new leaf keeps the
    template's.

    Args:
        directory: an orbax checkpoint (``StandardCheckpointer`` or ``PyTreeCheckpointer``) of the
            old training state.
        new_state: the new training state, built around the new template params (a flax
            ``TrainState``, a dict, NNX states, ...), of the same kind as the saved one.
        plan: from ``make_plan(old_params, new_params)``; the old side may be
            ``read_structure(directory)``'s params.
        moment_keys: extra path keys that mark optimizer statistics outside optax states.
        allow_dtype_change: cast leaves stored with another dtype than the plan's old tree and
            ``new_state`` expect (bfloat16 into float32, say) instead of raising, as
            :func:`jsurgery.make_plan`'s option of the same name.

    Returns:
        A state of ``new_state``'s kind.

    Raises:
        CheckpointError: the checkpoint misses leaves the state and plan expect, holds leaves they
            do not (both named), or stores a leaf with another shape, or another dtype without
            ``allow_dtype_change``; a leaf whose bytes differ from its saved checksum, or cannot
            be read, or a damaged metadata file (each named); never a partial load.
    """
    return read_whole(
        directory,
        lambda found: _restore_into(found, new_state, plan, moment_keys, allow_dtype_change),
    )


def _restore_into(
    directory: Path,
    new_state: Any,
    plan: Plan,
    moment_keys: Sequence[str],
    allow_dtype_change: bool,
) -> Any:
    parts, treedef = _parts(new_state, plan, moment_keys)
    expected: dict = {}
    for part in parts:
        expected.update(part.expected())
    stored = _stored(directory)
    _check(stored, expected, directory, allow_dtype_change)

    out: list = [None] * len(parts)
    plain = {i: part for i, part in enumerate(parts) if part.plan is None}
    if plain:
        wanted = {}
        for part in plain.values():
            leaf = part.node
            dtype = _dtype(leaf) or stored[part.prefix][1]
            shape = stored[part.prefix][0]
            wanted[part.prefix] = (shape, dtype, _sharding_for(leaf, shape))
        values = _restore(directory, wanted, stored)
        for i, part in plain.items():
            value = values[part.prefix]
            if isinstance(part.node, bool | int | float):  # a Python scalar such as a step
                value = type(part.node)(np.asarray(value))
            elif not isinstance(part.node, jax.Array):
                value = np.asarray(value)
            out[i] = value
    for i, part in enumerate(parts):
        if part.plan is None:
            continue
        read = part.read()
        readers = {lp.old_index: lp.path for lp in part.plan.leaves if lp.old_index in read}
        wanted = {}
        for index in sorted(read):
            path, shape, dtype = part.plan.old_leaves[index]
            template = part.template[readers[index]]
            wanted[part.disk(path)] = (tuple(shape), np.dtype(dtype),
                                       _sharding_for(template, tuple(shape)))  # fmt: skip
        values = _restore(directory, wanted, stored) if wanted else {}
        old: dict = {}
        for index, (path, shape, dtype) in enumerate(part.plan.old_leaves):
            value = values.pop(part.disk(path), None) if index in read else None
            if value is None:  # a leaf the plan never reads: no need to load it
                value = jnp.zeros(shape, dtype)
            node = old
            unfit = _unfit(path, part.how)
            for key in unfit[:-1]:
                node = node.setdefault(key, {})
            node[unfit[-1]] = value
        move = transplant_moments if part.moments else transplant
        out[i] = move(old, part.node, part.plan)
        del old, values
    return jax.tree_util.tree_unflatten(treedef, out)
