"""`manage.py setup_demo`: the project's one command that touches every domain app, so it lives in
the project package, above them all."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.demo import DEMO_USERS_REFUSED, ensure_demo_user
from apps.linking.demo import build_demo_kb
from apps.modelhub.demo import build_demo_models
from apps.search.demo import build_demo_data

# Each step is an idempotent callable(stdout=, force=), run in this order by `make run` and `make test`.
DEMO_SETUP_STEPS = (ensure_demo_user, build_demo_data, build_demo_models, build_demo_kb)


class Command(BaseCommand):
    help = (
        "Build everything the demo needs, in order: the demo login, demo data, demo models, the "
        "entity-linking KB. Each step skips work already done, so "
        "running it again is quick; --force rebuilds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild even what already exists")

    def handle(self, *args, force: bool, **options):
        if not settings.DEMO_USERS_ALLOWED:  # production settings: refuse before touching anything
            raise CommandError(f"setup_demo is for `make run` and tests, not a server. {DEMO_USERS_REFUSED}")
        for step in DEMO_SETUP_STEPS:
            started = time.perf_counter()
            self.stdout.write(f"==> {step.__module__}.{step.__name__}")
            step(stdout=self.stdout, force=force)
            self.stdout.write(f"    done in {time.perf_counter() - started:.1f}s")
