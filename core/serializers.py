"""Serializers shared by the API views: the error body and strict input validation."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings


class ErrorSerializer(serializers.Serializer):
    """Every error the API returns: a message naming the problem, and details if any."""

    error = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)


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
