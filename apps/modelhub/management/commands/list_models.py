
from django.core.management.base import BaseCommand

from apps.modelhub.selectors import model_listing


class Command(BaseCommand):
    help = "List registered model versions with kind and aliases; --json prints [{name, version, kind, aliases}]."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, json: bool = False, **options):
        rows = model_listing()
        if json:
            import json as json_module

            self.stdout.write(json_module.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No models registered.")
        for row in rows:
            self.stdout.write(f"{row['name']:<20} v{row['version']:<8} {row['kind']:<14} {', '.join(row['aliases'])}")
