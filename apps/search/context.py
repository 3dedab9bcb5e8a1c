"""One search context per request: what a search reads, resolved once and passed down.

A request opens the store once (`search_store_open`: CURRENT is read once, the subset file's read-only
connection taken, the table specs built from that same file) and builds one `SearchContext` for its query
(`search_context_build`: the filters validated once). The pipeline (apps.samples.pipeline), the subset
search and its planner, the match count, the facets, the known values and the learned rows all take the
context instead of re-reading CURRENT, rebuilding the specs or validating again, so a swap of the subset
in the middle of a request cannot mix two files: the request keeps reading the file it started with
(an old file stays readable while a connection holds it, apps/search/store.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import duckdb

from .errors import SubsetMissing
from .query import CompiledQuery, Filter, SearchQuery, compile_search, query_validate, where_compile
from .store import SubsetSnapshot, subset_snapshot
from .tables import TableSpec, default_table_name, table_spec_get, table_spec_list

Snapshot = tuple[Path, duckdb.DuckDBPyConnection]  # a table's file and this thread's read-only connection to it


@dataclass(frozen=True, eq=False)
class SearchStore:
    """The subset files one request reads (each table's, apps/search/store.py; None: no subset installed) and
    the table specs built from them."""

    snapshot: SubsetSnapshot | None
    specs: tuple[TableSpec, ...]
    missing: str = ""  # why there is no snapshot (SubsetMissing's message)
    files: dict[str, Snapshot] | None = None  # table -> another indexed file read instead (the learned rows)

    def spec(self, name: str | None) -> TableSpec:
        """The named table (None or "": the default one). Raises TableNotFound."""
        return table_spec_get(name=name, specs=list(self.specs))

    def default_table(self) -> str:
        return default_table_name(specs=list(self.specs))

    def subset(self, table: str) -> Snapshot:
        """The file serving `table` in this snapshot and its connection, or SubsetMissing."""
        if self.files is not None and table in self.files:
            return self.files[table]
        if self.snapshot is None:
            raise SubsetMissing(self.missing or "No local subset installed.")
        taken = self.snapshot.table(table)
        return taken.path, taken.conn


def search_store_open() -> SearchStore:
    """Read CURRENT once: this thread's connection to the subset file it names, and that file's table specs."""
    try:
        snapshot = subset_snapshot()
    except SubsetMissing as exc:
        return SearchStore(snapshot=None, specs=tuple(table_spec_list(snapshot=None)), missing=str(exc))
    return SearchStore(snapshot=snapshot, specs=tuple(table_spec_list(snapshot=snapshot)))


@dataclass(frozen=True, eq=False)
class SearchContext:
    """A validated search over one snapshot: the query, its table's spec, its filters with their typed
    values (query_validate's answer, computed once), and the subset file it reads."""

    query: SearchQuery
    spec: TableSpec
    validated: tuple[tuple[Filter, object], ...]
    store: SearchStore

    @property
    def snapshot(self) -> Snapshot:
        """(path, read-only connection) of the table's file; SubsetMissing when none is installed."""
        return self.store.subset(self.spec.name)

    @cached_property
    def where(self) -> CompiledQuery:
        return where_compile(query=self.query, spec=self.spec, validated=self.validated)

    @cached_property
    def compiled(self) -> CompiledQuery:
        return compile_search(query=self.query, spec=self.spec, validated=self.validated)

    def over(self, *, snapshot: Snapshot, limit: int | None = None) -> SearchContext:
        """The same validated search over another indexed file (the learned rows), optionally with another
        limit: nothing is validated again."""
        query = self.query if limit is None else replace(self.query, limit=limit)
        return SearchContext(query=query, spec=self.spec, validated=self.validated,
                             store=SearchStore(snapshot=None, specs=self.store.specs, files={self.spec.name: snapshot}))


def search_context_build(*, query: SearchQuery, store: SearchStore | None = None,
                         spec: TableSpec | None = None) -> SearchContext:
    """The context of one search: the store (opened now unless given), the query's table spec from it (or
    `spec`), and the filters validated once. Raises TableNotFound or SearchValidationError."""
    store = store or search_store_open()
    spec = spec or store.spec(query.table)
    return SearchContext(query=query, spec=spec, validated=tuple(query_validate(query=query, spec=spec)),
                         store=store)
