"""Changing any :class:`DQNConfig` (or :class:`~jsurgery.rl.PPOConfig`) field from a TOML or YAML
file or from ``key=value`` strings.

An :class:`Override` is one field's new value and where it came from (a command-line flag,
``--set key=value`` or ``--config FILE``), so that a bad key or value is reported in the words the
user typed. Values given as text are parsed by the field's type; values read from a file must
already have it (TOML and YAML give numbers, booleans and lists).

    >>> from jsurgery.rl import DQNConfig
    >>> changes = [parse_assignment("hidden=32,32"), parse_assignment("double_dqn=true")]
    >>> config = apply_overrides(DQNConfig(), changes)
    >>> config.hidden, config.double_dqn
    ((32, 32), True)
    >>> try:
    ...     apply_overrides(DQNConfig(), [parse_assignment("lerning_rate=0.1")])
    ... except ConfigError as error:
    ...     print(str(error).split(" the keys")[0])
    --set lerning_rate=0.1: unknown key 'lerning_rate' (did you mean 'learning_rate'?);
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsurgery.rl.config import DQNConfig
from jsurgery.rl.suggest import did_you_mean

__all__ = [
    "ConfigError",
    "Override",
    "apply_overrides",
    "config_field_types",
    "format_config",
    "parse_assignment",
    "parse_value",
    "read_config_file",
]

NONE_TEXT = ("none", "null")
"""Text that sets an optional field (``learning_rate_end``) to None."""

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ConfigError(ValueError):
    """An unknown configuration key or a value its field cannot take; one line naming both."""


@dataclasses.dataclass(frozen=True)
class Override:
    """One field's new value and where it came from.

    Attributes:
        key: the :class:`DQNConfig` field.
        value: the value, as text (parsed by the field's type) or already typed.
        source: ``"--set"``, ``"--config FILE"`` or a flag such as ``"--steps"``.
    """

    key: str
    value: Any
    source: str = "--set"

    def describe(self, value: Any = None) -> str:
        """This override as the user wrote it, or with ``value`` in place of its own."""
        value = self.value if value is None else value
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if self.source == "--set":
            return f"--set {self.key}={value}"
        if self.source.startswith("--config"):
            return f"{self.source}: {self.key} = {value}"
        return f"{self.source} {value}"


def config_field_types(config_type: type = DQNConfig) -> dict[str, Any]:
    """The type of each field of ``config_type`` (:class:`DQNConfig` or
    :class:`~jsurgery.rl.PPOConfig`), by name, in declaration order."""
    hints = typing.get_type_hints(config_type)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_type)}


def parse_assignment(text: str) -> Override:
    """``"key=value"`` as an :class:`Override` from ``--set`` (the value still text)."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(
            f"--set {text}: expected KEY=VALUE, e.g. --set learning_rate=3e-4 (keys: the fields "
            "of the configuration; see 'jsurgery train ENV --print-config')"
        )
    return Override(key, value, "--set")


def read_config_file(path: str | os.PathLike) -> list[Override]:
    """The ``key = value`` pairs of a TOML (``.toml``) or YAML (``.yaml``, ``.yml``) file.

    Raises:
        ConfigError: a missing or unreadable file, another suffix, or no table of keys at the top.
    """
    path = Path(path)
    source = f"--config {path}"
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{source}: expected a .toml, .yaml or .yml file, got {suffix or 'none'}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{source}: cannot read it ({error.strerror or error})") from None
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{source}: not valid TOML ({error})") from None
    else:
        data = _read_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected key = value pairs at the top level, got a {type(data).__name__}"
        )
    return [Override(str(key), value, source) for key, value in data.items()]


def _read_yaml(text: str, source: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            f"{source}: reading YAML needs pyyaml (the rl extra), which is not installed; "
            "install it with pip install pyyaml, or write the file as TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ValueError("expected true or false")


def _parse_int(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            number = float(value)  # 1e5 is 100000; a ValueError here says it is no number
            if not number.is_integer():
                raise ValueError("expected an integer") from None
            return int(number)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


def _parse_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _parse_widths(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [item for item in value.strip("[]() ").split(",") if item.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("expected widths such as 64,64")
    try:
        return tuple(_parse_int(item.strip() if isinstance(item, str) else item) for item in value)
    except ValueError:
        raise ValueError("expected widths such as 64,64") from None


def _parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


_PARSERS = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: _parse_text,
    tuple[int, ...]: _parse_widths,
}


def parse_value(field_type: Any, value: Any) -> Any:
    """``value`` (text or typed) as a value of ``field_type``; ValueError says what was expected."""
    if type(None) in typing.get_args(field_type):
        if value is None or (isinstance(value, str) and value.lower() in NONE_TEXT):
            return None
        (field_type,) = [arg for arg in typing.get_args(field_type) if arg is not type(None)]
    return _PARSERS[field_type](value)


def _typed(overrides: Iterable[Override], config_type: type) -> dict[str, tuple[Any, Override]]:
    types = config_field_types(config_type)
    typed: dict[str, tuple[Any, Override]] = {}
    for override in overrides:
        if override.key not in types:
            raise ConfigError(
                f"{override.describe()}: unknown key {override.key!r}"
                f"{did_you_mean(override.key, types)}; the keys are {', '.join(types)}"
            )
        try:
            value = parse_value(types[override.key], override.value)
        except ValueError as error:
            optional = " or none" if type(None) in typing.get_args(types[override.key]) else ""
            raise ConfigError(
                f"{override.describe()}: {error}{optional} for {override.key}, got "
                f"{override.value!r}"
            ) from None
        typed[override.key] = (value, override)
    return typed


def _block_fields(config: Any) -> tuple[str, ...]:
    from jsurgery.rl.algorithms import algorithm_of

    return algorithm_of(config).block_fields


def _steps_per_block(config: Any, changes: dict[str, Any]) -> int:
    return math.prod(changes.get(name, getattr(config, name)) for name in _block_fields(config))


def _with_eval_every(config: Any, typed: dict[str, tuple[Any, Override]]) -> dict[str, Any]:
    """The changes, with ``eval_every`` picked anew when the step count or block changed alone."""
    from jsurgery.rl.presets import pick_eval_every

    changes = {key: value for key, (value, _) in typed.items()}
    fields = _block_fields(config)
    block = _steps_per_block(config, changes)
    total = changes.get("total_steps", config.total_steps)
    if total <= 0 or total % block:
        suggestion = max(1, round(total / block)) * block
        if "total_steps" in typed:
            override = typed["total_steps"][1]
            fix = override.describe(suggestion)
        else:
            override = next(o for _, o in typed.values() if o.key in fields)
            fix = f"--set total_steps={suggestion}"
        raise ConfigError(
            f"{override.describe()}: training runs in blocks of {' * '.join(fields)} = {block} "
            f"steps, so the step count ({total}) must be a positive multiple of {block}; use e.g. "
            f"{fix}"
        )
    moved = {"total_steps", *fields} & set(changes)
    if moved and "eval_every" not in changes:
        changes["eval_every"] = pick_eval_every(total, block)
    return changes


def apply_overrides(config: Any, overrides: Iterable[Override]) -> Any:
    """``config`` with each override applied in order (a later one wins) and checked again.

    A new ``total_steps``, ``train_freq`` or ``num_envs`` without ``eval_every`` picks about ten
    evaluations; a new ``learning_rate`` keeps a decaying step size from rising
    (``learning_rate_end`` at most the new start) unless ``learning_rate_end`` is given too.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a configuration
            :class:`DQNConfig` refuses, naming the overrides as the user wrote them.
    """
    typed = _typed(overrides, type(config))
    if not typed:
        return config
    changes = _with_eval_every(config, typed)
    end = changes.get("learning_rate_end", config.learning_rate_end)
    if "learning_rate" in changes and "learning_rate_end" not in changes and end is not None:
        changes["learning_rate_end"] = min(end, changes["learning_rate"])
    try:
        return config.replace(**changes)
    except ValueError as error:
        given = "; ".join(override.describe() for _, override in typed.values())
        raise ConfigError(f"{given}: {str(error).replace('`', '')}") from None


def _toml_value(value: Any) -> str:
    if value is None:
        return f'"{NONE_TEXT[0]}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def format_config(config: Any, title: str | None = None) -> str:
    """``config`` as TOML that ``--config`` reads back (``"none"`` for an unset optional field).

    Example:
        >>> print(format_config(DQNConfig()).splitlines()[0])
        hidden = [64, 64]
    """
    lines = [f"# {title}"] if title else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in config.to_dict().items()]
    return "\n".join(lines)
