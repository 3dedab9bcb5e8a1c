from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.roles import GROUP_PERMISSIONS, role_names_parse
from apps.accounts.services import user_roles_grant, user_roles_revoke


class Command(BaseCommand):
    help = (
        "Grant USER a role (a comma list grants several), or take it away with --revoke. "
        f"Roles: {', '.join(GROUP_PERMISSIONS)} (apps/accounts/roles.py). "
        "Without a role every role-gated page and API call answers 403."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="an existing user")
        parser.add_argument("role", help=f"one of: {', '.join(GROUP_PERMISSIONS)} (or a comma list; "
                                         "model-manager and model_manager are accepted)")
        parser.add_argument("--revoke", action="store_true", help="take the role away instead")

    def handle(self, *args, username: str, role: str, revoke: bool = False, **options):
        try:
            names = role_names_parse([role])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not names:
            raise CommandError(f"No role given: the roles are {', '.join(repr(n) for n in GROUP_PERMISSIONS)}.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r} (create_api_token USER --role ROLE creates one).")
        if revoke:
            user_roles_revoke(user=user, group_names=tuple(names))
        else:
            user_roles_grant(user=user, group_names=tuple(names))
        held = sorted(user.groups.filter(name__in=GROUP_PERMISSIONS).values_list("name", flat=True))
        self.stdout.write(f"{'Revoked' if revoke else 'Granted'} {', '.join(names)} "
                          f"{'from' if revoke else 'to'} {username!r}; roles now: {', '.join(held) or 'none'}.")
