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
        from django.db.models import Q

        held = user.__dict__["_perm_cache"] = {  # ModelBackend's own per-object cache: has_perm reuses it
            f"{app_label}.{codename}" for app_label, codename in
            Permission.objects.filter(Q(user=user) | Q(group__user=user))
            .values_list("content_type__app_label", "codename").distinct()
        }
    return permission in held


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
