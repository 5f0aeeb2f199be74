"""Serializers shared by the API views: the error body and strict input validation."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from core.errors import ERROR_CODES

# The error codes as choices; the schema names their enum ErrorCodeEnum (ENUM_NAME_OVERRIDES).
ERROR_CODE_CHOICES = list(ERROR_CODES.items())


class ErrorSerializer(serializers.Serializer):
    """Every error the API returns: a message naming the problem, a stable code naming its
    kind (README.md, "Error codes"), and details if any."""

    error = serializers.CharField(help_text="What went wrong, in words for people.")
    code = serializers.ChoiceField(
        choices=ERROR_CODE_CHOICES,
        help_text="The kind of error, for programs to branch on; the set only grows.")
    detail = serializers.JSONField(allow_null=True, help_text="Details, such as the refused "
                                   "fields or the limits exceeded; null when there are none.")


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses top-level fields it does not declare, naming them."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError({
                    api_settings.NON_FIELD_ERRORS_KEY: [
                        f"unknown field(s) {', '.join(map(repr, unknown))}; "
                        f"expected {sorted(self.fields)}"
                    ]
                })
        return super().to_internal_value(data)
