"""Errors that services raise and every caller (form, API, CLI) can present."""
from __future__ import annotations


class ServiceError(Exception):
    """A request the domain refuses, with a message fit for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(ServiceError):
    """Bad input, as field name -> message (field "" for the whole form)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class RuleViolation(ServiceError):
    """Valid input that breaks a rule (e.g. removing the last owner)."""


class NotPermitted(ServiceError):
    """The actor's role does not allow this."""


class NotFound(ServiceError):
    """The row the request names is gone (e.g. deleted by a concurrent request)."""
