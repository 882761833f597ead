"""Domain errors. Each message names the bad value and where it came from."""

from __future__ import annotations


class McuError(Exception):
    """Base of every error `mcu` raises on purpose."""


class ConfigError(McuError):
    """A configuration file is unreadable or holds a value of the wrong kind."""

    def __init__(self, file: object, key: str, expected: str) -> None:
        self.file = str(file)
        self.key = key
        self.expected = expected
        super().__init__(f"{self.file}: {key}: {expected}")


class LayoutError(McuError):
    """A layout file is unreadable, or one of its tiles is invalid."""

    def __init__(self, file: object, where: str, problem: str) -> None:
        self.file = str(file)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.file}: {where}: {problem}")


class OfferError(McuError):
    """An SDP offer the MCU cannot answer; the message is the one-line reason sent back."""


class DialError(McuError):
    """`mcu dial` could not set up its call."""
