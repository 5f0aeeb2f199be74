"""Refusals about one model version, shared by export (learning) and serving's model cache."""
from core.errors import DomainError


class UnknownVersion(DomainError):
    code = "unknown_version"
    status = 404


class VersionNotReady(DomainError):
    code = "version_not_ready"
    status = 409


class ArtifactRefused(DomainError):
    code = "artifact_refused"
    status = 409
