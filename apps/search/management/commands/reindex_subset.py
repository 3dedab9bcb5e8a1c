from django.core.management.base import BaseCommand, CommandError

from apps.search.errors import SubsetMissing
from apps.search.selectors import subset_index_stale
from apps.search.services import subset_reindex
from apps.search.store import subset_paths


class Command(BaseCommand):
    help = ("Rebuild the word index of the subset's tables (for each, a new file of that table with the same "
            "rows, installed atomically; the other tables' files are not touched): after an upgrade changed the "
            "index format, searches scan until this runs. Tables still in the old one-file layout get files of "
            "their own.")

    def add_arguments(self, parser):
        parser.add_argument("--if-stale", action="store_true",
                            help="only the tables whose index is missing or of another format version")
        parser.add_argument("--table", default=None, help="only this table (default: every table)")

    def handle(self, *args, if_stale: bool, table: str | None, **options):
        if table and table not in subset_paths():
            raise CommandError(f"The local subset has no table {table!r}.")
        stale = [name for name in subset_index_stale() if not table or name == table]
        if if_stale and not stale:
            self.stdout.write("The subset's word index is current.")
            return
        if stale:
            self.stdout.write(f"Tables without a current word index: {', '.join(stale)}")
        try:
            if if_stale:
                for name in stale:
                    subset_reindex(table=name, stdout=self.stdout)
            else:
                subset_reindex(table=table, stdout=self.stdout)
        except SubsetMissing as exc:
            raise CommandError(str(exc)) from exc
