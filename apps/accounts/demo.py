from django.conf import settings

from .services import user_get_or_create, user_roles_grant


def ensure_demo_user(*, stdout, force: bool = False) -> None:
    """The demo login `make run` prints; created once, never overwritten. It holds every role
    (analyst, model manager, kb editor); the admin manages the groups."""
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
