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
