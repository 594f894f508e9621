"""One exception family, so the CLI can print any user-facing problem without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PolyfuseError(Exception):
    """Base class of every error polyfuse raises on purpose (exit code 2 in the CLI)."""


class DataError(PolyfuseError):
    """Bad input data: the message names the file, column, sample id or modality at fault."""


class ConfigError(PolyfuseError):
    """A bad configuration or argument: the message names the key and says what is allowed."""


class DataWarning(UserWarning):
    """Data polyfuse can use but the user should know about (skipped rows, an empty column)."""


class FallbackWarning(UserWarning):
    """polyfuse took a fallback: the run goes on, but not exactly as asked (a floor that could
    not be fitted, a fast path that was unavailable). The message says what and why."""


class MissingDependencyError(PolyfuseError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for an unknown name, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def require(module: str, extra: str):
    """Import an optional module or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed for this; install it with: pip install 'polyfuse[{extra}]'"
        ) from exc
