from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .services import user_get_or_create, user_roles_grant


DEMO_USERS_REFUSED = (
    "The demo login is a superuser with a published password, so it is never created under these settings "
    "(DEMO_USERS_ALLOWED is off, as in production). Create real users with `manage.py createsuperuser`.")


def ensure_demo_user(*, stdout, force: bool = False) -> None:
    """The demo login `make run` prints; created once, never overwritten. It holds every role
    (analyst, model manager, kb editor); the admin manages the groups. Refused where DEMO_USERS_ALLOWED is off
    (production settings)."""
    if not settings.DEMO_USERS_ALLOWED:
        raise ImproperlyConfigured(DEMO_USERS_REFUSED)
    user, created = user_get_or_create(
        username=settings.DEMO_USERNAME, password=settings.DEMO_PASSWORD, is_staff=True
    )
    user_roles_grant(user=user)
    if created:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
        stdout.write(f"Created the demo login: {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}")
    elif user.check_password(settings.DEMO_PASSWORD):
        stdout.write(f"Demo login: {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}")
    else:
        stdout.write(f"Demo login: {settings.DEMO_USERNAME} (its password was changed; not shown)")
