from django.conf import settings
from django.core.management.base import BaseCommand

from apps.warehouse.services import fallback_sweep


class Command(BaseCommand):
    help = ("Fail or requeue warehouse fallbacks left queued or running by a dead worker "
            "(no heartbeat for FALLBACK_STALE_AFTER_SECONDS). Celery beat runs the same every minute.")

    def add_arguments(self, parser):
        parser.add_argument("--stale-after", type=int, default=None,
                            help=f"seconds without a heartbeat (default {settings.FALLBACK_STALE_AFTER_SECONDS})")

    def handle(self, *args, stale_after=None, **options):
        if stale_after is not None and stale_after < 1:
            self.stderr.write("--stale-after must be at least 1 second")
            raise SystemExit(2)
        counts = fallback_sweep(stale_after_seconds=stale_after)
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in counts.items()))
