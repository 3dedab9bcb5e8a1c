import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = (
        "Build everything the demo needs, in order: the demo login, demo data, demo models, the "
        "entity-linking KB (settings.DEMO_SETUP_STEPS). Each step skips work already done, so "
        "running it again is quick; --force rebuilds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild even what already exists")

    def handle(self, *args, force: bool, **options):
        for dotted in settings.DEMO_SETUP_STEPS:
            step = import_string(dotted)
            started = time.perf_counter()
            self.stdout.write(f"==> {dotted}")
            step(stdout=self.stdout, force=force)
            self.stdout.write(f"    done in {time.perf_counter() - started:.1f}s")
