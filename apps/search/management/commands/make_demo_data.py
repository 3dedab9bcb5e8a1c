from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.search.demo import demo_data_build


class Command(BaseCommand):
    help = (
        "Generate the demo web-crawl sample table: ROWS rows as Parquet files under "
        "SEARCH_FULL_DATA_DIR (what the local warehouse backend scans) and a random "
        "--subset-fraction of them installed as the local DuckDB subset (table 'samples')."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=settings.DEMO_DATA_ROWS, help="rows in the full dataset")
        parser.add_argument("--subset-fraction", type=float, default=settings.DEMO_SUBSET_FRACTION,
                            help="share of rows copied into the local subset (default %(default)s)")
        parser.add_argument("--seed", type=int, default=7, help="random seed; same seed, same data")

    def handle(self, *args, rows: int, subset_fraction: float, seed: int, **options):
        if rows < 1:
            raise CommandError("--rows must be at least 1")
        if not 0 < subset_fraction <= 1:
            raise CommandError("--subset-fraction must be in (0, 1]")
        self.stdout.write(f"Generating {rows:,} demo rows (subset fraction {subset_fraction}, seed {seed})")
        demo_data_build(rows=rows, subset_fraction=subset_fraction, seed=seed, stdout=self.stdout)
