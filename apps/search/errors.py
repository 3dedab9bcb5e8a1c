"""The search engine's errors: one base class, so views and the API map them in one place
(apps/samples/api.py's exception handler, apps/samples/views.py)."""
from __future__ import annotations


class SearchError(Exception):
    """A search that cannot run as asked; the message is meant for the user."""

    status = 400  # the HTTP status the API answers with
    errors: dict[str, list[str]] = {}

    def __init__(self, message: str = "", errors: dict[str, list[str]] | None = None):
        self.errors = errors or {}
        super().__init__(message or "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items()))


class SearchValidationError(SearchError, ValueError):
    """Bad input, with messages per field (a URL parameter name such as "text__contains")."""

    status = 422

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors=errors)


class SearchParamsError(SearchValidationError):
    """Malformed URL parameters (an unknown operator, a limit that is not a number), before any table is read."""

    status = 400


class TableNotFound(SearchError, LookupError):
    status = 422

    def __init__(self, message: str):
        super().__init__(message, errors={"table": [message]})


class SubsetMissing(SearchError):
    """No local subset is installed (nothing built or imported yet)."""

    status = 503
