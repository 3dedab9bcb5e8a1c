from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record

from . import roles
from .models import ApiToken
from .selectors import api_token_hash

TOKEN_PREFIX = "ssk_"


def api_token_create(*, user: AbstractBaseUser, name: str = "", read_only: bool = False) -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is shown once and never stored.

    A token acts with its user's permissions; a read-only one may only GET."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=raw[: len(TOKEN_PREFIX) + 8], token_hash=api_token_hash(raw_token=raw),
        read_only=read_only,
    )
    audit_record(user=user, action="token_create", target=token.prefix, detail={"name": name, "read_only": read_only})
    return token, raw


def api_token_use_record(*, token: ApiToken) -> None:
    """Note the token's use: last_used_at, written at most once a minute (api_token_active_get says when:
    `last_use_stale`), so an API request is not a write."""
    if getattr(token, "last_use_stale", True):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())


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


@transaction.atomic
def roles_ensure() -> dict[str, Group]:
    """The role groups with their permissions (migration 0003 does the same); idempotent."""
    content_type = ContentType.objects.get_for_model(ApiToken)
    groups = {}
    for group_name, codenames in roles.GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for codename in codenames:
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": roles.PERMISSION_NAMES[codename]}
            )
            group.permissions.add(permission)
        groups[group_name] = group
    return groups


def user_roles_grant(*, user: AbstractBaseUser, group_names: tuple[str, ...] | None = None) -> None:
    """Adds `user` to the named role groups (all of them by default)."""
    groups = roles_ensure()
    for name in group_names if group_names is not None else tuple(groups):
        user.groups.add(groups[name])
    # has_perm caches per user object
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)


def user_roles_revoke(*, user: AbstractBaseUser, group_names: tuple[str, ...]) -> None:
    """Removes `user` from the named role groups."""
    groups = roles_ensure()
    for name in group_names:
        user.groups.remove(groups[name])
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)


def login_failure_record(*, username: str, client_ip: str | None, locked_out: bool) -> None:
    """Audits a refused login: the username tried (a claim, so not the event's user) and the client's address;
    never the password. `locked_out`: refused by the throttle (apps/samplescope/settings/base.py, AXES_*)."""
    audit_record(user=None, action="login_failed", target=(username or "")[:255],
                 outcome="locked_out" if locked_out else "wrong_credentials", detail={"ip": client_ip})


def login_lockout_record(*, username: str, client_ip: str | None) -> None:
    """Audits the moment a (username, address) pair is locked out by the throttle."""
    audit_record(user=None, action="login_locked_out", target=(username or "")[:255], outcome="locked_out",
                 detail={"ip": client_ip})
