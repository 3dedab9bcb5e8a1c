from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken

# Writing last_used_at on every call would make each API request a write; once a minute is enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_hash(*, raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def api_token_authenticate(*, raw_token: str) -> AbstractBaseUser | None:
    """The active user owning this token, or None."""
    token = api_token_active_get(raw_token=raw_token)
    return token.user if token is not None else None


def api_token_active_get(*, raw_token: str) -> ApiToken | None:
    """The active token (of an active user) with this raw value, or None; records its last use."""
    if not raw_token:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=api_token_hash(raw_token=raw_token), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)


def request_client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or with TRUST_X_FORWARDED_FOR (production: behind the reverse proxy of
    deploy/nginx.conf) the last X-Forwarded-For entry, the one our proxy appended: earlier entries are whatever
    the client sent. The login throttle counts failures per (username, this address)."""
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")
