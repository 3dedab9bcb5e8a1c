from django.core.management.base import BaseCommand

from apps.accounts.services import api_token_create, user_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API token for USER (the user is created, without a password, if missing). "
        "The raw token is printed as the last line and never stored; send it as "
        "'Authorization: Bearer <token>'."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="user who owns the token")
        parser.add_argument("--name", default="", help="a label to recognise the token later")
        parser.add_argument("--read-only", action="store_true", dest="read_only",
                            help="the token may only GET: any other API call answers 403")

    def handle(self, *args, username: str, name: str, read_only: bool = False, **options):
        user, created = user_get_or_create(username=username)
        if created:
            self.stderr.write(f"Created user {username!r} (no password: API access only).")
        token, raw = api_token_create(user=user, name=name or "command line", read_only=read_only)
        self.stderr.write(f"Token {token.prefix}… ({'read-only' if read_only else 'read-write'}) created for {username!r}. Revoke with: manage.py revoke_api_token {token.prefix}")
        self.stdout.write(raw)
