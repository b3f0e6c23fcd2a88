"""The examples in the docstrings of the surgery core and the Q-network run."""

import doctest
import importlib

import pytest

MODULES = ["jsurgery.plan", "jsurgery.transplant", "jsurgery.rl.networks"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
