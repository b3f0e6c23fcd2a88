"""Griffe extension: an ``Example:`` section of a Google-style docstring is read as ``Examples:``.

The docstrings write ``Example:`` (singular) above their ``>>>`` lines; griffe's Google parser
knows only the plural, and would render the examples as prose.
"""

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)
