from django.core.management.base import BaseCommand, CommandError

from apps.search.tables import TableNotFound
from apps.subsets.services import METHODS, RefreshBusy, subset_refresh


class Command(BaseCommand):
    help = (
        "Rebuild the local subset from the warehouse: sample --fraction of the full table (local backend: "
        "DuckDB over the full Parquet files; Athena: UNLOAD to SUBSET_UNLOAD_S3_URI, then download), build a "
        "new DuckDB file, verify it and swap it in atomically. A failure leaves the current subset serving."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fraction", type=float, default=None,
                            help="share of the full table to keep (default SUBSET_DEFAULT_FRACTION)")
        parser.add_argument("--table", default=None, help="table to refresh (default: the default table)")
        parser.add_argument("--method", choices=METHODS, default=None,
                            help="hash (of the key), system or bernoulli (default: hash locally, system on Athena)")
        parser.add_argument("--backend", choices=("local", "athena"), default=None,
                            help="warehouse to sample (default WAREHOUSE_BACKEND)")

    def handle(self, *args, fraction, table, method, backend, **options):
        if fraction is not None and not 0 < fraction <= 1:
            raise CommandError("--fraction must be in (0, 1]")
        try:
            run = subset_refresh(table=table, fraction=fraction, method=method, backend=backend,
                                 trigger="command", stdout=self.stdout)
        except (RefreshBusy, TableNotFound, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if run.state != run.State.SUCCEEDED:
            raise CommandError(f"refresh #{run.pk} failed: {run.error}")
        self.stdout.write(f"refresh #{run.pk} succeeded: {run.rows:,} rows, {run.file_name}, {run.duration_ms} ms")
