"""Restoring a 100M-parameter checkpoint into a widened network, against a plain orbax restore.

    python benchmarks/checkpoint_restore.py [--hidden 4096 --layers 7] [--dir DIR]

The old state is a flax TrainState with Adam (params, ``mu``, ``nu``: three copies of an MLP
64 -> 7 x 4096 -> 16, 101M parameters each) saved by a plain orbax ``StandardCheckpointer``. Each
measurement runs in a fresh process (peak resident memory is a per-process figure):

- ``orbax``: ``StandardCheckpointer().restore`` of the old state (the reference);
- ``restore_transplanted``: ``jsurgery.checkpoint.restore_transplanted`` into a TrainState of the
  new MLP (4 more inputs, 7 x 4224 hidden units, 2 more outputs; ``PRESERVING``), the plan made
  from ``read_structure``; its new template state exists before the clock starts;
- ``orbax + transplant_state``: the same done by hand, restoring the whole old state first.

Printed per row: wall time of the restore (compilation included: one call per process), peak
resident memory of the process above its memory before the restore, and both as ratios to orbax.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

WORKER = "--worker"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _models(hidden: int, layers: int):
    import flax.linen as nn

    class MLP(nn.Module):
        widths: tuple

        @nn.compact
        def __call__(self, x):
            for width in self.widths[:-1]:
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(self.widths[-1])(x)

    old = (64, MLP((hidden,) * layers + (16,)))
    new = (68, MLP((hidden + hidden // 32,) * layers + (18,)))
    return old, new


def _train_state(model, n_in, seed, abstract=False):
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    def build():
        params = model.init(jax.random.key(seed), jnp.zeros((1, n_in)))["params"]
        return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                             tx=optax.adam(1e-3))  # fmt: skip

    return jax.eval_shape(build) if abstract else jax.jit(build)()


def prepare(directory: str, hidden: int, layers: int) -> int:
    import jax
    import orbax.checkpoint as ocp

    (n_in, model), _ = _models(hidden, layers)
    state = _train_state(model, n_in, 0)
    adam = state.opt_state[0]
    moments = adam._replace(mu=jax.tree.map(lambda p: 0.1 * p, state.params),
                            nu=jax.tree.map(lambda p: p * p, state.params))  # fmt: skip
    state = state.replace(step=1000, opt_state=(moments, *state.opt_state[1:]))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory, state)
    return sum(leaf.size for leaf in jax.tree.leaves(state.params))


def worker(mode: str, directory: str, hidden: int, layers: int) -> dict:
    import jax
    import orbax.checkpoint as ocp

    import jsurgery
    from jsurgery.checkpoint import read_structure, restore_transplanted

    (old_in, old_model), (new_in, new_model) = _models(hidden, layers)
    abstract = _train_state(old_model, old_in, 0, abstract=True)
    stored = read_structure(directory)  # every mode: orbax and tensorstore loaded before the clock
    template = None
    if mode != "orbax":
        template = jax.block_until_ready(_train_state(new_model, new_in, 1))
        plan = jsurgery.make_plan(
            stored["params"], template.params, inputs=(list(range(64)), list(range(68))),
            outputs=(list(range(16)), list(range(18))), **jsurgery.PRESERVING,
        )  # fmt: skip
    before = _rss_mb()
    start = time.perf_counter()
    if mode == "orbax":
        with ocp.StandardCheckpointer() as checkpointer:
            out = checkpointer.restore(directory, abstract)
    elif mode == "restore_transplanted":
        out = restore_transplanted(directory, template, plan)
    else:
        with ocp.StandardCheckpointer() as checkpointer:
            old = checkpointer.restore(directory, abstract)
        out = jsurgery.transplant_state(old, template, plan)
    jax.block_until_ready(out)
    seconds = time.perf_counter() - start
    params = sum(leaf.size for leaf in jax.tree.leaves(out.params))
    return {"mode": mode, "seconds": seconds, "peak_mb": _peak_mb() - before,
            "rss_before_mb": before, "params": params}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where to write the checkpoint (temporary)")
    parser.add_argument(WORKER, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, args.hidden, args.layers)))
        return

    root = tempfile.mkdtemp(dir=args.dir)
    directory = os.path.join(root, "old")
    try:
        start = time.perf_counter()
        count = prepare(directory, args.hidden, args.layers)
        print(f"old TrainState: {count / 1e6:.1f}M parameters x 3 (params, Adam mu, nu); saved "
              f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
        rows = []
        for mode in ("orbax", "restore_transplanted", "orbax + transplant_state"):
            result = subprocess.run(
                [sys.executable, __file__, WORKER, mode, "--dir", directory,
                 "--hidden", str(args.hidden), "--layers", str(args.layers)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        base = rows[0]
        print(f"new TrainState: {rows[1]['params'] / 1e6:.1f}M parameters x 3\n")
        print("| restore | time | ratio | peak memory above start | ratio |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['mode']} | {row['seconds']:.1f} s | "
                  f"{row['seconds'] / base['seconds']:.2f} | {row['peak_mb']:,.0f} MB | "
                  f"{row['peak_mb'] / base['peak_mb']:.2f} |")  # fmt: skip
        print(f"\n(the new template state, made before the clock starts: "
              f"{rows[1]['rss_before_mb']:,.0f} MB resident)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
