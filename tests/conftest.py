"""Shared test settings: JAX stays strict about dtype promotion, and runs on the CPU; no
`PlanError` message or plan warning raised anywhere in the suite may cite a library's files."""

import os
import re

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

#: What a message in the user's words never contains: an installed library's files.
LIBRARY_PATH = re.compile(r"site-packages|dist-packages|/jax/_src/|/flax/(linen|nnx|core)/")
_LEAKS: list[str] = []


def _watch_messages() -> None:
    """Records every `PlanError` message and plan warning that cites a library's files."""
    from jsurgery.errors import PlanError
    from jsurgery.plan.plan import Plan

    error_init, plan_check = PlanError.__init__, Plan.__post_init__

    def init(self, *args, **kwargs):
        error_init(self, *args, **kwargs)
        if LIBRARY_PATH.search(str(self)):
            _LEAKS.append(str(self))

    def post_init(self):
        plan_check(self)
        _LEAKS.extend(w for w in self.warnings if LIBRARY_PATH.search(w))

    PlanError.__init__, Plan.__post_init__ = init, post_init


_watch_messages()


@pytest.fixture(autouse=True)
def _messages_cite_no_library_files():
    start = len(_LEAKS)
    yield
    leaked = _LEAKS[start:]
    assert not leaked, f"a message cites a library's files: {leaked[0]}"
