"""The examples in the surgery core's docstrings run."""

import doctest
import importlib

import pytest

MODULES = ["jsurgery.plan", "jsurgery.transplant"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
