import glob
from pathlib import Path

import duckdb
from django.core.management.base import BaseCommand, CommandError

from apps.search.services import subset_table_write
from apps.search.store import SUBSET, disk_full
from apps.search.tables import TABLE_NAME_RE, quote_identifier, table_spec_described
from apps.search.vocabulary import vocabulary_builder


class Command(BaseCommand):
    help = (
        "Import your own Parquet file(s) as a searchable table of the local subset: "
        "`import_subset PATH_OR_GLOB --table NAME --key COLUMN`. Columns and types come from the "
        "file; every column becomes searchable with the operators its type allows. The table gets a "
        "file of its own, swapped in atomically; the other tables' files are not touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="a Parquet file or a glob such as 'data/*.parquet'")
        parser.add_argument("--table", required=True, help="table name (letters, digits, underscores)")
        parser.add_argument("--key", required=True, help="the column that identifies a row (unique)")
        parser.add_argument("--facets", default="", help="comma-separated low-cardinality columns to chart")
        parser.add_argument("--label-column", default="", help="a column holding a class label, if any")
        parser.add_argument("--text-column", default="", help="the main text column, if any")
        parser.add_argument("--sample-fraction", type=float, default=1.0,
                            help="keep only this random share of the rows (default: all)")
        parser.add_argument("--replace-all", action="store_true", help="drop the other tables of the subset")
        parser.add_argument("--full-data-glob", default="",
                            help="where the FULL table lives for the local warehouse backend (a Parquet glob; its "
                                 "vocabulary is built from it with the file); "
                                 "without it (or --athena-table) searches on this table never start a fallback")
        parser.add_argument("--athena-table", default="",
                            help="the full table in Athena (WAREHOUSE_BACKEND=athena), e.g. crawl_samples")

    def handle(self, *args, source, table, key, facets, label_column, text_column, sample_fraction, replace_all,
               full_data_glob, athena_table, **options):
        if not TABLE_NAME_RE.match(table):
            raise CommandError(f"--table {table!r}: use letters, digits and underscores, starting with a letter")
        files = sorted(glob.glob(source)) if any(ch in source for ch in "*?[") else [source]
        files = [f for f in files if Path(f).is_file()]
        if not files:
            raise CommandError(f"No Parquet file matches {source!r}")
        conn = duckdb.connect()
        try:
            schema = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [files]).fetchall()
        except duckdb.Error as exc:
            raise CommandError(f"Cannot read {source!r} as Parquet: {exc}") from exc
        columns = [row[0] for row in schema]
        for option, column in (("--key", key), ("--label-column", label_column), ("--text-column", text_column),
                               *(("--facets", c.strip()) for c in facets.split(",") if c.strip())):
            if column and column not in columns:
                raise CommandError(f"{option} {column!r} is not a column of {source!r}; columns: {', '.join(columns)}")
        if athena_table and not TABLE_NAME_RE.match(athena_table.replace(".", "_")):
            raise CommandError(f"--athena-table {athena_table!r}: use letters, digits, underscores (and one dot)")
        if not 0 < sample_fraction <= 1:
            raise CommandError("--sample-fraction must be in (0, 1]")
        total, distinct, nulls = conn.execute(
            f"SELECT count(*), count(DISTINCT {quote_identifier(key)}), count(*) - count({quote_identifier(key)}) "
            "FROM read_parquet(?)", [files]).fetchone()
        if distinct != total or nulls:
            raise CommandError(f"--key {key!r} must be unique and non-empty: {total:,} rows, {distinct:,} distinct, "
                               f"{nulls:,} empty")
        self.stdout.write(f"Importing {total:,} rows from {len(files)} file(s) as table {table!r} (key {key!r})")
        conn.close()
        description = {
            "key": key, "searchable": "*", "shown": columns,
            "facets": [c.strip() for c in facets.split(",") if c.strip()],
            "label_column": label_column or None, "text_column": text_column or None,
            "full_data_glob": full_data_glob, "athena_table": athena_table,
        }
        # Full data on this machine: its vocabulary (proofs of absence, "did you mean", estimates) is built
        # with the file, as each refresh builds it (an Athena table's comes with its first refresh).
        spec = table_spec_described(name=table, description=description, columns={r[0]: r[1] for r in schema})
        try:
            subset_table_write(
                name=table, parquet=files, description=description, keep_other_tables=not replace_all,
                sample_fraction=sample_fraction, stdout=self.stdout,
                vocabulary=vocabulary_builder(spec=spec, stdout=self.stdout),
            )
        except (OSError, duckdb.Error) as exc:
            if not disk_full(exc):
                raise
            raise CommandError(  # a full disk needs space, not a traceback; nothing of the new file is left
                f"could not write the new subset file: the disk is full (or the file is over the size limit); free "
                f"space under {SUBSET.directory()} and import again. The current subset keeps serving. ({exc})"
            ) from exc
        self.stdout.write(self.style.SUCCESS(f"Table {table!r} is searchable at /samples/?table={table}"))
        if not (full_data_glob or athena_table):
            self.stdout.write("It has no warehouse: searches answer from this local copy only (give --full-data-glob "
                              "or --athena-table to allow fallbacks).")
