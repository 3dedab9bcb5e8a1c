from __future__ import annotations

import functools
import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, models, router
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
    """The active token (of an active user) with this raw value, its user attached, or None. Its
    `last_use_stale` says whether its last_used_at is older than a minute (api_token_use_record writes it).

    One SQL statement, written once per process: every API call asks, and the ORM's compile of
    select_related().filter().first() cost more than the query. The token and its user are loaded with the
    fields a request reads; the others (dates) are deferred: read, they are fetched."""
    if not raw_token:
        return None
    alias = router.db_for_read(ApiToken)
    connection = connections[alias]
    stale_before = connection.ops.adapt_datetimefield_value(timezone.now() - _LAST_USED_RESOLUTION)
    with connection.cursor() as cursor:
        cursor.execute(_active_token_sql(alias), [stale_before, api_token_hash(raw_token=raw_token)])
        row = cursor.fetchone()
    if row is None:
        return None
    user_model = get_user_model()
    token = ApiToken.from_db(alias, _TOKEN_FIELDS, _typed(ApiToken, _TOKEN_FIELDS, row[: len(_TOKEN_FIELDS)]))
    user = user_model.from_db(alias, _user_fields(), _typed(user_model, _user_fields(), row[len(_TOKEN_FIELDS): -1]))
    if not user.is_active:
        return None
    token.user = user
    token.last_use_stale = bool(row[-1])
    return token


_TOKEN_FIELDS = ("id", "user_id", "name", "prefix", "read_only")


def _typed(model, names: tuple[str, ...], values) -> list:
    """The raw column values as the ORM would give them: booleans as bool (SQLite stores 0 / 1)."""
    booleans = {f.attname for f in model._meta.concrete_fields if isinstance(f, models.BooleanField)}
    return [bool(v) if name in booleans and v is not None else v for name, v in zip(names, values)]


@functools.cache
def _user_fields() -> tuple[str, ...]:
    model = get_user_model()
    return tuple(f.attname for f in model._meta.concrete_fields
                 if f.attname in ("id", model.USERNAME_FIELD, "is_active", "is_superuser", "is_staff", "email",
                                  "first_name", "last_name"))


@functools.cache
def _active_token_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    user_model = get_user_model()
    token_table, user_table = quote(ApiToken._meta.db_table), quote(user_model._meta.db_table)

    def column(model, attname: str) -> str:
        columns = {f.attname: f.column for f in model._meta.concrete_fields}
        return f"{token_table if model is ApiToken else user_table}.{quote(columns[attname])}"

    used = f"{token_table}.{quote('last_used_at')}"
    return (f"SELECT {', '.join(column(ApiToken, a) for a in _TOKEN_FIELDS)}, "
            f"{', '.join(column(user_model, a) for a in _user_fields())}, "
            f"CASE WHEN {used} IS NULL OR {used} < %s THEN 1 ELSE 0 END "
            f"FROM {token_table} INNER JOIN {user_table} ON {user_table}.{quote(user_model._meta.pk.column)} = "
            f"{token_table}.{quote('user_id')} "
            f"WHERE {token_table}.{quote('token_hash')} = %s AND {token_table}.{quote('revoked_at')} IS NULL")


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
