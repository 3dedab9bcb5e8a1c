from django.core.management.base import BaseCommand, CommandError

from apps.search.errors import SubsetMissing
from apps.search.selectors import subset_index_stale
from apps.search.services import subset_reindex


class Command(BaseCommand):
    help = ("Rebuild the substring index of the current subset (a new file with the same tables, installed "
            "atomically): after an upgrade changed the index format, searches scan until this runs.")

    def add_arguments(self, parser):
        parser.add_argument("--if-stale", action="store_true",
                            help="only when a table's index is missing or of another format version")

    def handle(self, *args, if_stale: bool, **options):
        stale = subset_index_stale()
        if if_stale and not stale:
            self.stdout.write("The subset's substring index is current.")
            return
        if stale:
            self.stdout.write(f"Tables without a current substring index: {', '.join(stale)}")
        try:
            subset_reindex(stdout=self.stdout)
        except SubsetMissing as exc:
            raise CommandError(str(exc)) from exc
