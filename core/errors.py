"""The base of every error a service raises on purpose, and the codes every API error carries.

An API error body is ``{"error": "<message for people>", "code": "<stable name for
programs>", "detail": <details or null>}`` (``error_body``). ``ERROR_CODES`` is the
documented set of codes, listed in README.md ("Error codes") and as an enum in the OpenAPI
schema; a test holds every ``DomainError`` subclass and the README to it.
"""

# code -> what it means. Stable strings: clients branch on them, so a code is never renamed
# or reused for another meaning; a new one is added here and to the README's table.
ERROR_CODES: dict[str, str] = {
    # 400: the request as sent is refused.
    "invalid": "a field or value is refused; detail names the fields",
    "parse_error": "the body cannot be read (malformed JSON, bad Content-Length or upload)",
    "invalid_label": "the value is not one of the project's labels",
    "invalid_instance": "an instance cannot be used (missing or unknown column, bad image data)",
    "invalid_import": "the file cannot be imported as a whole (nothing was imported)",
    "invalid_settings": "the project's settings are refused",
    "instance_not_kept": "the prediction's instance was not kept: send the instance again",
    "invalid_text": "a text cannot be stored: a NUL, invalid Unicode, too long or nested too deep",
    # 401, 403: who is asking.
    "not_authenticated": "no credentials were given",
    "authentication_failed": "the token is malformed, unknown or revoked, or its user inactive",
    "permission_denied": "no role or scope for this",
    # 404, 405, 406: what is asked for.
    "not_found": "no such project (or one these credentials may not reach), sample, import, "
                 "image, rule or API route",
    "unknown_version": "the project has no such model version",
    "unknown_prediction": "the project has no such prediction (yet)",
    "method_not_allowed": "the endpoint does not take this HTTP method",
    "not_acceptable": "no answer in a media type the Accept header allows",
    # 409: the state of things.
    "sample_not_available": "the sample is leased by someone else, already labeled, labeled "
                            "by you with another value, or a held-out sample not given to you",
    "nothing_to_undo": "there is no label of yours to undo",
    "no_model": "the project has no served model yet",
    "version_not_ready": "the model version is not trained (yet)",
    "artifact_refused": "the model's file does not match its recorded checksum",
    "training_error": "the labels at hand cannot train a model (none, or one class only)",
    "not_exportable": "the model version cannot be written in the asked format (detail.reason "
                      "names the part)",
    "featurizer_missing": "the project's pretrained featurizer is not installed on this machine "
                          "(run `make featurizers`), or a file fails its sha256 check",
    # 413, 415, 429, 500: the request's form and rate, and the server.
    "too_large": "the body is over API_MAX_BODY_BYTES (detail gives both sizes)",
    "unsupported_media_type": "the body's Content-Type is not one the endpoint reads",
    "throttled": "too many requests for this token; retry after Retry-After seconds",
    "server_error": "an unexpected failure, logged on the server",
}


def error_body(error: str, code: str, detail: object = None) -> dict:
    """The JSON body of every API error."""
    return {"error": error, "code": code, "detail": detail}


class DomainError(Exception):
    """A request the domain refuses; ``code`` (one of ``ERROR_CODES``) names the kind for
    API clients, ``status`` the HTTP status the APIs answer with."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> dict:
        return error_body(self.message, self.code, self.detail)
