"""Errors meant for people: one line, saying what was wrong and where."""

from __future__ import annotations


def one_line(text: str) -> str:
    """Collapse a message to one printable line (escapes control characters and unicode line separators)."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in " ".join(text.split("\n"))
    )


class EdgekdError(Exception):
    """Base class for every error edgekd reports to a user (printed as one line, exit code 1 or 2)."""

    exit_code = 1

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class ConfigError(EdgekdError):
    """A pipeline or profile file is missing, malformed or invalid."""

    exit_code = 2


class DataError(EdgekdError):
    """A dataset is missing, empty or malformed."""


class ModelError(EdgekdError):
    """A model, checkpoint or exported file cannot be built, loaded or converted."""


class StageError(EdgekdError):
    """A stage failed; the message names the stage."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"stage '{stage}': {message}")
        self.stage = stage
