"""The one exception family of jsurgery."""


class PlanError(ValueError):
    """A surgery plan cannot be built or applied as asked.

    Raised at plan time (never inside jit). The message names the argument, leaf path or unit IDs
    that are wrong, shows what arrived and says how to fix it.

    Attributes:
        layers: for layers that can be matched in more than one equally small way, the
            `layers=` overrides that settle on one of them (None otherwise).
    """

    layers: dict | None = None


def did_you_mean(name: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``name``, or ``""``.

    Example:
        >>> did_you_mean("CartPole-v0", ["CartPole-v1", "Acrobot-v1"])
        " (did you mean 'CartPole-v1'?)"
    """
    import difflib

    close = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
