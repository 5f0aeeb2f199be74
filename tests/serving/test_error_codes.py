"""Every API error carries a documented, stable ``code``: the domain's and DRF's alike."""
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions

from core.api_errors import RequestTooLarge, api_exception_handler
from core.errors import ERROR_CODES, DomainError

README = Path(__file__).resolve().parents[2] / "README.md"


def _domain_errors() -> set[type[DomainError]]:
    """Every DomainError subclass in the apps' code, each module imported to find them."""
    for app in ("core", "annotation", "learning", "serving"):
        package = importlib.import_module(app)
        for module in pkgutil.walk_packages(package.__path__, f"{app}."):
            importlib.import_module(module.name)
    found, todo = set(), [DomainError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def _readme_table() -> dict[str, int]:
    """``{code: status}`` from the README's "Error codes" table."""
    section = README.read_text().split("### Error codes", 1)[1].split("\n#", 1)[0]
    return {code: int(status) for code, status in
            re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, flags=re.MULTILINE)}


def test_every_domain_error_has_a_documented_code():
    errors = _domain_errors()
    names = {f"{e.__module__}.{e.__qualname__}" for e in errors}
    assert {"annotation.errors.SampleNotAvailable", "serving.model_cache.NoServedModel",
            "serving.services.UnknownPrediction", "annotation.errors.InvalidImport"} <= names
    undocumented = {f"{e.__module__}.{e.__qualname__}": e.code for e in errors
                    if e.code not in ERROR_CODES}
    assert not undocumented, "add these codes to core.errors.ERROR_CODES and the README"


def test_the_readme_documents_every_code_with_its_status():
    table = _readme_table()
    assert set(table) == set(ERROR_CODES)
    for error in {DomainError, *_domain_errors()}:
        assert table[error.code] == error.status, f"{error.__qualname__}: {error.code}"


@pytest.mark.parametrize("exc, status, code", [
    (exceptions.ValidationError({"sample": ["This field is required."]}), 400, "invalid"),
    (exceptions.ValidationError("bad", code="custom"), 400, "invalid"),  # one code per kind
    (exceptions.ParseError(), 400, "parse_error"),
    (SuspiciousOperation("multipart"), 400, "parse_error"),
    (exceptions.NotAuthenticated(), 401, "not_authenticated"),
    (exceptions.AuthenticationFailed(), 401, "authentication_failed"),
    (exceptions.PermissionDenied(), 403, "permission_denied"),
    (DjangoPermissionDenied(), 403, "permission_denied"),
    (exceptions.NotFound(), 404, "not_found"),
    (Http404(), 404, "not_found"),
    (exceptions.MethodNotAllowed("PUT"), 405, "method_not_allowed"),
    (exceptions.NotAcceptable(), 406, "not_acceptable"),
    (RequestTooLarge(limits={"content_length": 2, "max_body_bytes": 1}), 413, "too_large"),
    (RequestDataTooBig("too big"), 413, "too_large"),
    (exceptions.UnsupportedMediaType("text/plain"), 415, "unsupported_media_type"),
    (exceptions.Throttled(3), 429, "throttled"),
    (exceptions.APIException(), 500, "server_error"),
    (RuntimeError("boom"), 500, "server_error"),
    (DomainError("refused", detail={"why": 1}), 400, "invalid"),
])
def test_each_kind_of_failure_gets_its_documented_code(exc, status, code):
    response = api_exception_handler(exc, {"view": None})
    assert response.status_code == status
    assert set(response.data) == {"error", "code", "detail"} and response.data["code"] == code
    assert code in ERROR_CODES
