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

    def handle(self, *args, username: str, name: str, **options):
        user, created = user_get_or_create(username=username)
        if created:
            self.stderr.write(f"Created user {username!r} (no password: API access only).")
        token, raw = api_token_create(user=user, name=name or "command line")
        self.stderr.write(f"Token {token.prefix}… created for {username!r}. Revoke with: manage.py revoke_api_token {token.prefix}")
        self.stdout.write(raw)
