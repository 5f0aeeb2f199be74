"""Errors of the annotation domain: membership, labels, samples, imports."""
from core.errors import DomainError


class NotAMember(DomainError):
    code = "permission_denied"  # as DRF names a refusal by the permission check
    status = 403


class InvalidLabel(DomainError):
    code = "invalid_label"


class SampleNotAvailable(DomainError):
    """The sample is leased by someone else, already labeled, or outside the project."""

    code = "sample_not_available"
    status = 409


class SampleNotFound(DomainError):
    """No such sample in this project."""

    code = "not_found"
    status = 404


class NothingToUndo(DomainError):
    code = "nothing_to_undo"
    status = 409


class InvalidImport(DomainError):
    """The uploaded file as a whole cannot be imported (format, header, archive, size)."""

    code = "invalid_import"
