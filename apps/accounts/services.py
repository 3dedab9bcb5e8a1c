from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record

from .models import ApiToken
from .selectors import api_token_hash

TOKEN_PREFIX = "ssk_"


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is shown once and never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=raw[: len(TOKEN_PREFIX) + 8], token_hash=api_token_hash(raw_token=raw)
    )
    audit_record(user=user, action="token_create", target=token.prefix, detail={"name": name})
    return token, raw


def api_token_revoke(*, token: ApiToken, by: AbstractBaseUser | None = None) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(user=by or token.user, action="token_revoke", target=token.prefix)
    return token


@transaction.atomic
def user_get_or_create(*, username: str, password: str | None = None, is_staff: bool = False) -> tuple[AbstractBaseUser, bool]:
    """The user with this name, created (with an unusable password unless one is given) if missing."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    return user, created
