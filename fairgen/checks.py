"""The error for a missing optional dependency (input checks live in ``plumbing.validation``)."""

from __future__ import annotations


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""
