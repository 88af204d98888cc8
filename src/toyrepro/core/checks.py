"""Range checks for config sections: one line naming the key, the rule and the value."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value is out of range. The message names the key, the rule and the fix."""


def check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule} (got {value!r})")


class UserError(RuntimeError):
    """Bad input found while running (data, files, combinations of settings): the CLI prints
    the message as one line and exits with status 2."""


class MissingExtraError(UserError):
    """An optional dependency group (a pip "extra") is not installed; the message names the
    install command."""
