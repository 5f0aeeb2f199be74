"""Authenticate API requests by token: ``Authorization: Token <key>``.

A project token acts as a client (``TokenUser``) within its scopes; a personal token (one
with a ``user``) acts as that person, with their role in the token's project.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from annotation.models import ApiToken

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class TokenUser:
    """The identity behind a token: anonymous as a person, authenticated as a client."""

    is_authenticated = True
    is_anonymous = False
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, token: ApiToken) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"token {self.token.key_prefix}"


class ProjectTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[TokenUser | object, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header: use 'Token <key>'")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("token contains invalid characters")
        tokens = ApiToken.objects.select_related("project", "user").filter(
            key_hash=key_hash(key), revoked_at__isnull=True
        )
        # key_hash is unique: [:1] rather than first(), whose ORDER BY costs CPU to build.
        token = next(iter(tokens[:1]), None)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        if token.user_id is not None and not token.user.is_active:
            raise exceptions.AuthenticationFailed("this token's user is inactive")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token.user if token.user_id is not None else TokenUser(token)), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
