"""The base of every error a service raises on purpose; views and APIs map it to HTTP."""


class DomainError(Exception):
    """A request the domain refuses; ``code`` names the kind for API clients."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
