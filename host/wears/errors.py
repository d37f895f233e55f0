"""One exception family for the host toolkit."""


class WearsError(Exception):
    """Base of every error the toolkit raises on purpose; the CLI prints it without a traceback."""


class ProtocolError(WearsError):
    """A packet that does not follow docs/protocol.md."""


class WatchDisconnected(WearsError):
    """The watch went away (out of range, powered off, or the virtual watch ended)."""


class ModelBlobError(WearsError):
    """A model blob that cannot be run: truncated, corrupt, unsigned, or for other features."""

    def __init__(self, message: str, reason: int = 0) -> None:
        super().__init__(message)
        self.reason = reason


class CommandRefused(WearsError):
    """The watch answered a command with a reason code other than ok."""

    def __init__(self, message: str, reason: int) -> None:
        super().__init__(message)
        self.reason = reason


class CommandTimeout(WearsError):
    """The watch did not answer a command in time (the reply, or the command, was lost)."""
