"""What can go wrong with a command, independent of HTTP (the routes map these to status codes)."""

from __future__ import annotations


class CommandError(Exception):
    """Base of every refusal; `str(error)` is the human-readable detail."""


class UnknownCommand(CommandError):
    """No command of that name exists."""


class MalformedCommand(CommandError):
    """The body is not JSON."""


class InvalidCommand(CommandError):
    """The body is JSON but a field is missing, unknown, of the wrong type or out of range."""

    def __init__(self, detail: str, pointer: str | None = None, reason: str | None = None) -> None:
        super().__init__(detail)
        self.pointer = pointer
        """The field, as a JSON Pointer into the body (`/OrderLines/0/UnitPrice`), when one is at fault."""
        self.reason = reason or detail
        """What is wrong with that field."""


class StreamNotFound(CommandError):
    """The command addresses a stream that does not exist."""


class BusinessRuleViolation(CommandError):
    """An aggregate refused the command."""


class IdempotencyKeyReused(CommandError):
    """The Idempotency-Key was already used for a different command or payload."""
