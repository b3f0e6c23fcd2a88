"""Suggestions for a mistyped name: environments, IDs, experiments, configuration keys."""

__all__ = ["did_you_mean"]


def did_you_mean(name: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``name``, or ``""``.

    Example:
        >>> did_you_mean("CartPole-v0", ["CartPole-v1", "Acrobot-v1"])
        " (did you mean 'CartPole-v1'?)"
    """
    import difflib

    close = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
