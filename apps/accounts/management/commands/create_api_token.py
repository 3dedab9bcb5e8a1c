from django.core.management.base import BaseCommand, CommandError

from apps.accounts.roles import GROUP_PERMISSIONS, role_names_parse
from apps.accounts.services import api_token_create, user_get_or_create, user_roles_grant


class Command(BaseCommand):
    help = (
        "Create an API token for USER (the user is created, without a password, if missing). "
        "The raw token is printed as the last line and never stored; send it as "
        "'Authorization: Bearer <token>'. --role grants USER a role too (without one every role-gated call "
        "answers 403; grant_role grants or revokes later)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="user who owns the token")
        parser.add_argument("--name", default="", help="a label to recognise the token later")
        parser.add_argument("--read-only", action="store_true", dest="read_only",
                            help="the token may only GET: any other API call answers 403")
        parser.add_argument("--role", action="append", default=[], dest="roles", metavar="ROLE",
                            help=f"grant USER this role (repeatable, or a comma list): {', '.join(GROUP_PERMISSIONS)}")

    def handle(self, *args, username: str, name: str, read_only: bool = False, roles=(), **options):
        try:
            role_names = role_names_parse(roles or ())
        except ValueError as exc:  # before anything is created
            raise CommandError(str(exc)) from None
        user, created = user_get_or_create(username=username)
        if created:
            self.stderr.write(f"Created user {username!r} (no password: API access only).")
        if role_names:
            user_roles_grant(user=user, group_names=tuple(role_names))
            self.stderr.write(f"Granted {', '.join(role_names)} to {username!r}.")
        elif not user.groups.filter(name__in=GROUP_PERMISSIONS).exists() and not user.is_superuser:
            self.stderr.write(f"{username!r} holds no role: role-gated API calls answer 403 until one is granted "
                              f"(--role, or manage.py grant_role {username} ROLE).")
        token, raw = api_token_create(user=user, name=name or "command line", read_only=read_only)
        self.stderr.write(f"Token {token.prefix}… ({'read-only' if read_only else 'read-write'}) created for {username!r}. Revoke with: manage.py revoke_api_token {token.prefix}")
        self.stdout.write(raw)
