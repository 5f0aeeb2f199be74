"""The one exception the client raises for an answer the API refused."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API answered with an error.

    Attributes
    ----------
    status : int
        The HTTP status (400, 401, 403, 404, 409, 413, 429, ...).
    code : str
        The API's stable error code (``invalid``, ``not_found``, ``no_model``,
        ``not_exportable``, ...; see the service's README, "Error codes"), or
        ``http_<status>`` when the answer was not the API's JSON error body (a proxy's page).
    message : str
        The API's ``error``: for people, may be reworded between versions.
    detail : object
        The API's ``detail``: which fields or instance, sizes, a failed import's report.
    retry_after : float or None
        Seconds to wait, for ``throttled`` (429) answers.
    """

    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.retry_after = retry_after
