import json

from django.core.management.base import BaseCommand, CommandError

from apps.search.services import subset_index_verify


class Command(BaseCommand):
    help = ("Check the current subset's word index whole: every file's size, header and checksum, and the bounds "
            "a search relies on. A damaged table is marked (every process then scans it) and the command exits "
            "1; `manage.py reindex_subset` repairs it. Prints JSON: {table: null when sound, else [state, reason]}.")

    def handle(self, *args, **options):
        found = subset_index_verify()
        self.stdout.write(json.dumps({table: list(problem) if problem else None for table, problem in found.items()},
                                     indent=1))
        damaged = sorted(table for table, problem in found.items() if problem and problem[0] == "damaged")
        if damaged:
            raise CommandError(f"damaged word index: {', '.join(damaged)}; run `manage.py reindex_subset`")
