"""Roles: Django groups holding the custom permissions declared on ApiToken.Meta.

| group | permission | may |
| --- | --- | --- |
| analyst | accounts.search_samples | search (page, export, /api/search), run fallbacks within budget, score CSVs (batch) |
| model manager | accounts.manage_models | register model versions, move aliases |
| kb editor | accounts.edit_kb | create/delete/change entities, mentions and aliases in the serving KB |

Staff (`is_staff`) see everyone's audit events and spend; everyone else sees only their own.
Superusers hold every permission. Migration 0003 creates the groups; `roles_ensure` does the same
idempotently (the demo user, tests after a flush). From the command line: `manage.py grant_role USER ROLE
[--revoke]`, or `manage.py create_api_token USER --role ROLE`. A 403 for a missing role, page or API, says
which role and that command (`role_missing_message`).
"""
from __future__ import annotations

import functools
import shlex

SEARCH = "accounts.search_samples"
MANAGE_MODELS = "accounts.manage_models"
EDIT_KB = "accounts.edit_kb"

ANALYST = "analyst"
MODEL_MANAGER = "model manager"
KB_EDITOR = "kb editor"

# group name → permission codenames (app label "accounts")
GROUP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ANALYST: ("search_samples",),
    MODEL_MANAGER: ("manage_models",),
    KB_EDITOR: ("edit_kb",),
}
PERMISSION_NAMES = {
    "search_samples": "Search samples and run warehouse fallbacks within budget",
    "manage_models": "Register model versions and move aliases",
    "edit_kb": "Create, change and delete entities, mentions and aliases in the serving KB",
}


def user_has_role(*, user, permission: str) -> bool:
    """As `user.has_perm(permission)` with Django's ModelBackend (inactive users hold nothing, superusers
    everything), in one query instead of two (own and group permissions): every API call asks."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    if user.is_superuser:
        return True
    held = user.__dict__.get("_perm_cache")
    if held is None:
        from django.contrib.auth.models import Permission
        from django.db import connections, router

        sql, params = _held_permissions_sql(router.db_for_read(Permission)), [user.pk, user.pk]
        with connections[router.db_for_read(Permission)].cursor() as cursor:
            cursor.execute(sql, params)
            held = {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}
        user.__dict__["_perm_cache"] = held  # ModelBackend's own per-object cache: has_perm reuses it
    return permission in held


@functools.cache
def _held_permissions_sql(alias: str) -> str:
    """The permissions a user holds, own or through a group, as (app label, codename): the query ModelBackend
    runs in two, in one, written once per process instead of compiled by the ORM on every request (the
    compile cost more than the query: every API call asks)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections

    quote = connections[alias].ops.quote_name
    user_perms = get_user_model()._meta.get_field("user_permissions")
    user_groups = get_user_model()._meta.get_field("groups")
    group_perms = Group._meta.get_field("permissions")
    return (
        f"SELECT DISTINCT ct.{quote('app_label')}, p.{quote('codename')} FROM {quote(Permission._meta.db_table)} p "
        f"JOIN {quote(ContentType._meta.db_table)} ct ON ct.{quote('id')} = p.{quote('content_type_id')} "
        f"WHERE p.{quote('id')} IN ("
        f"SELECT {quote(user_perms.m2m_reverse_name())} FROM {quote(user_perms.m2m_db_table())} "
        f"WHERE {quote(user_perms.m2m_column_name())} = %s "
        f"UNION SELECT gp.{quote(group_perms.m2m_reverse_name())} FROM {quote(group_perms.m2m_db_table())} gp "
        f"JOIN {quote(user_groups.m2m_db_table())} ug ON ug.{quote(user_groups.m2m_reverse_name())} = "
        f"gp.{quote(group_perms.m2m_column_name())} WHERE ug.{quote(user_groups.m2m_column_name())} = %s)"
    )


def user_sees_everyone(*, user) -> bool:
    """Staff see every user's audit events, spend and fallbacks."""
    return bool(user and user.is_authenticated and user.is_staff)


def role_names_parse(values) -> list[str]:
    """Role names as typed on a command line (each value may be a comma list; `model-manager` and `model_manager`
    are `model manager`), in order, without repeats. An unknown one: ValueError naming the valid ones."""
    names: list[str] = []
    for value in values:
        for item in str(value).split(","):
            name = " ".join(item.replace("-", " ").replace("_", " ").lower().split())
            if not name:
                continue
            if name not in GROUP_PERMISSIONS:
                valid = ", ".join(repr(n) for n in GROUP_PERMISSIONS)
                raise ValueError(f"Unknown role {item.strip()!r}: the roles are {valid}.")
            if name not in names:
                names.append(name)
    return names


def role_missing_message(*, permission: str, what: str) -> str:
    """The one 403 text for a missing role, on pages and in the API: which role, and how an admin grants it."""
    role = ROLE_OF[permission]
    return (f"{what} needs the {role} role: an admin can grant it with "
            f"`python manage.py grant_role <user> {shlex.quote(role)}`.")


def api_role_require(*, request, permission: str, what: str) -> None:
    """For API endpoints: 403 unless the request's user (session or token) holds `permission`."""
    from ninja.errors import HttpError

    if not user_has_role(user=request.user, permission=permission):
        raise HttpError(403, role_missing_message(permission=permission, what=what))


def role_required(permission: str, *, what: str):
    """For page views, in place of `permission_required(permission, raise_exception=True)`: the same check,
    but the 403 page (templates/403.html) says which role is missing and how it is granted."""
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_has_role(user=request.user, permission=permission):
                raise PermissionDenied(role_missing_message(permission=permission, what=what))
            return view(request, *args, **kwargs)
        return wrapped
    return decorator


ROLE_OF = {SEARCH: ANALYST, MANAGE_MODELS: MODEL_MANAGER, EDIT_KB: KB_EDITOR}
