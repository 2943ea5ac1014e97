"""Domain errors of the storage layer, mapped from each driver's own exceptions.

Constraints are told apart by NAME (every unique index and constraint in the schema has
one), never by a driver's message text outside the backend that maps it.
"""

from __future__ import annotations


class StorageError(Exception):
    """The database failed (unreachable, closed, corrupt, or any unmapped driver error)."""


class SchemaTooNew(StorageError):
    """The database was written by a newer LiveCast than this one."""


class IntegrityViolation(StorageError):
    """A statement broke a constraint; ``constraint`` names it when the backend knows it."""

    def __init__(self, constraint: str, message: str = "") -> None:
        super().__init__(message or constraint)
        self.constraint = constraint


class UniqueViolation(IntegrityViolation):
    """A unique index or key already holds this value."""


class ForeignKeyViolation(IntegrityViolation):
    """A referenced row does not exist (or no longer does)."""


class CheckViolation(IntegrityViolation):
    """A CHECK or NOT NULL constraint refused the value."""
