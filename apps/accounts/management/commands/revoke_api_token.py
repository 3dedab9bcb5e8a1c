from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_revoke


class Command(BaseCommand):
    help = "Revoke API tokens by their prefix (shown when created and on the tokens page), or all of a user's with --user."

    def add_arguments(self, parser):
        parser.add_argument("prefix", nargs="?", help="token prefix, e.g. ssk_AbCdEfGh")
        parser.add_argument("--user", help="revoke every active token of this user")

    def handle(self, *args, prefix: str | None, user: str | None, **options):
        if not prefix and not user:
            raise CommandError("Give a token prefix or --user USERNAME.")
        tokens = ApiToken.objects.filter(revoked_at__isnull=True)
        tokens = tokens.filter(prefix=prefix) if prefix else tokens.filter(user__username=user)
        count = 0
        for token in tokens:
            api_token_revoke(token=token)
            count += 1
        if not count:
            raise CommandError("No active token matched.")
        self.stdout.write(f"Revoked {count} token(s).")
