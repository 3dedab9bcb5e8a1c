from django.conf import settings
from django.core.management.base import BaseCommand

from apps.samples.services import retention_prune


class Command(BaseCommand):
    help = ("Retention: delete search logs older than LOG_RETENTION_DAYS and the row copies of fallbacks finished "
            "longer ago than FALLBACK_CACHE_MAX_AGE_SECONDS, and stored long searches (?_q=) unused for "
            "SAVED_SEARCH_KEEP_DAYS. Audit events are kept. Celery beat runs it daily.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help=f"keep search logs this many days (default {settings.LOG_RETENTION_DAYS})")

    def handle(self, *args, days=None, **options):
        if days is not None and days < 1:
            self.stderr.write("--days must be at least 1")
            raise SystemExit(2)
        counts = retention_prune(older_than_days=days)
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in counts.items()))
