"""The one place that decides where a search's rows come from.

`search_answer` answers a SearchQuery from, in order:

1. the **subset**: the local DuckDB sample (apps.search.selectors.subset_search, time-limited);
2. a **warehouse fallback the caller names** (`fallback_id`): once it has succeeded, its rows; the page
   asks again with it when the fallback finishes, and exports of that page name it too;
3. the **learned rows**: what earlier fallbacks brought back (apps.warehouse.learned); a learned answer
   that held every matching row makes the search *complete* without the warehouse;
4. the **warehouse** itself: if the rows are still short of the limit, the answer is not known to be
   complete, the table has a warehouse and the caller allows it, a fallback is created, joined or
   reused from its cache (apps.warehouse.services.fallback_request). A cached result's rows are merged
   at once; a new one runs in a Celery worker and the page asks again when it is done.

Every caller goes through here: the samples page and its htmx partial, the CSV/JSON export, `GET
/api/search`, scoring search results with a model (which never starts a fallback), and the
benchmarks. So the screen, the export, the API and the measurements always agree.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings

from apps.audit.services import audit_record
from apps.search.query import SearchQuery, compile_search
from apps.search.selectors import facet_values_known, subset_search
from apps.search.services import search_log_create
from apps.search.tables import TableSpec, table_spec_get
from apps.warehouse.handles import FallbackHandle
from apps.warehouse.learned import learned_rows_for_search
from apps.warehouse.models import Fallback
from apps.warehouse.selectors import fallback_for_query
from apps.warehouse.services import fallback_request

logger = logging.getLogger(__name__)

SOURCE_COLUMN = "_source"  # the column the export and the API add to every row
NO_WAREHOUSE = "This table has no warehouse: results come from the local copy only."


class RowSource(StrEnum):
    SUBSET = "subset"
    LEARNED = "learned"
    WAREHOUSE = "warehouse"


SOURCE_LABELS = {RowSource.SUBSET: "from the subset", RowSource.LEARNED: "learned from earlier fallbacks",
                 RowSource.WAREHOUSE: "from the warehouse"}


@dataclass(frozen=True)
class SearchRow:
    values: dict
    source: RowSource

    def as_dict(self) -> dict:
        return {**self.values, SOURCE_COLUMN: self.source.value}


@dataclass
class SearchAnswer:
    query: SearchQuery
    spec: TableSpec
    rows: list[SearchRow]
    complete: bool  # the full dataset has no more matching rows than these
    has_warehouse: bool
    timed_out: bool  # the subset query ran past its time limit
    elapsed_ms: float  # local work: subset + learned rows
    fallback: FallbackHandle | None = None
    log_id: int | None = None
    notice: str = ""  # why no fallback runs although rows are short, or what went wrong asking for one
    sql: str = ""
    unknown_values: dict[str, str] = field(default_factory=dict)  # column -> a value the subset never saw

    @property
    def columns(self) -> list[str]:
        return list(self.spec.selected)

    @property
    def counts(self) -> dict[str, int]:
        """Rows per source, every source present (0 where none came)."""
        return _source_counts(self.rows)

    @property
    def local_count(self) -> int:
        counts = self.counts
        return counts[RowSource.SUBSET] + counts[RowSource.LEARNED]

    @property
    def waiting(self) -> bool:
        """A fallback for this search is still queued or running."""
        return self.fallback is not None and self.fallback.is_active

    def summary(self) -> str:
        """"10 rows: 6 from the subset, 4 from the warehouse", "5 rows: the full dataset has no more"."""
        total = len(self.rows)
        head = f"{total} row{'s' if total != 1 else ''}"
        parts = [f"{n} {SOURCE_LABELS[RowSource(source)]}" for source, n in self.counts.items() if n]
        if len(parts) > 1 or (parts and self.counts[RowSource.SUBSET] != total):
            head += ": " + ", ".join(parts)
        elif parts:
            head += " from the subset"
        if self.complete and total < self.query.limit:
            head += ("; " if ":" in head else ": ") + "the full dataset has no more"
        elif self.waiting:
            head += "; the warehouse is being asked for more"
        elif total < self.query.limit and not self.has_warehouse:
            head += "; this table has no warehouse"
        return head

    def as_dicts(self) -> list[dict]:
        return [row.as_dict() for row in self.rows]


def search_answer(*, user, query: SearchQuery, allow_fallback: bool = True, fallback_id: int | None = None,
                  log: bool = True, timeout_ms: int | None = None, confirmed: bool = False) -> SearchAnswer:
    """Answer `query` (see the module docstring). Raises SearchValidationError, TableNotFound or
    SubsetMissing (apps.search.errors); a problem with the warehouse never raises: it is on `notice`
    or on the fallback handle, and the local rows still come back.

    A search for a value of a low-cardinality column that the subset has never seen (`label = cooking`)
    does not start a paid fallback unless `confirmed`: `unknown_values` says which, and `notice` asks."""
    spec = table_spec_get(name=query.table)
    compiled = compile_search(query=query, spec=spec)
    outcome = subset_search(query=query, spec=spec, compiled=compiled,
                            timeout_ms=timeout_ms or settings.SEARCH_TIMEOUT_MS)
    rows = _Rows(key=spec.key, limit=query.limit)
    rows.add(outcome.rows_as_dicts(), RowSource.SUBSET)
    began = time.perf_counter()
    has_warehouse = spec.has_warehouse(settings.WAREHOUSE_BACKEND)
    complete = False

    attached = fallback_for_query(fallback_id=fallback_id, fingerprint=query.fingerprint()) if fallback_id else None
    if attached is not None and attached.row_count and not attached.rows:
        attached = None  # its row copies were pruned (`prune_logs`): answer as a fresh search would
    if attached is not None and attached.state == Fallback.State.SUCCEEDED:
        rows.add(attached.rows, RowSource.WAREHOUSE)
        complete = attached.row_count < query.limit
    if rows.short and not complete and not outcome.timed_out:
        learned = learned_rows_for_search(query=query, spec=spec, local_rows=rows.values())
        rows.add(learned.rows, RowSource.LEARNED)
        complete = learned.complete
    elapsed_ms = round(outcome.elapsed_ms + (time.perf_counter() - began) * 1000, 2)

    needs_more = rows.short and not complete and attached is None
    log_row = None
    if log:
        counts = rows.counts()
        log_row = search_log_create(user=user, query=query, rows=counts[RowSource.SUBSET] + counts[RowSource.LEARNED],
                                    elapsed_ms=elapsed_ms,
                                    needed_fallback=needs_more and has_warehouse, timed_out=outcome.timed_out,
                                    source_counts=counts)
        audit_record(user=user, action="search", target=query.describe(),
                     outcome="timeout" if outcome.timed_out else "ok",
                     detail={"search_log_id": log_row.pk, "rows": counts, "elapsed_ms": elapsed_ms})

    handle = FallbackHandle(fallback=attached) if attached is not None else None
    notice = ""
    unknown = _unknown_values(query=query, spec=spec) if needs_more and has_warehouse and allow_fallback else {}
    if needs_more and not has_warehouse:
        notice = NO_WAREHOUSE
    elif unknown and not confirmed:
        notice = "; ".join(f"{value!r} is not a known {column}" for column, value in unknown.items()) + \
            ": search the warehouse anyway?"
    elif needs_more and allow_fallback:
        try:
            handle = fallback_request(user=user, query=query, spec=spec, local_keys=rows.keys(), search_log=log_row)
        except Exception as exc:  # the local rows must still show
            logger.exception("asking the warehouse for %s failed", query.describe())
            notice = f"The warehouse fallback could not be asked: {exc}"
        else:
            if handle.fallback.state == Fallback.State.SUCCEEDED:  # reused from the cache: merge it now
                rows.add(handle.fallback.rows, RowSource.WAREHOUSE)
                complete = handle.fallback.row_count < query.limit
                if log_row is not None:
                    log_row.source_counts = rows.counts()
                    log_row.save(update_fields=["source_counts"])
    return SearchAnswer(query=query, spec=spec, rows=rows.rows, complete=complete, has_warehouse=has_warehouse,
                        timed_out=outcome.timed_out, elapsed_ms=elapsed_ms, fallback=handle,
                        log_id=log_row.pk if log_row else None, notice=notice, sql=compiled.sql,
                        unknown_values=unknown if not confirmed else {})


def _unknown_values(*, query: SearchQuery, spec: TableSpec) -> dict[str, str]:
    """column -> the first `eq`/`in` value the subset has never seen in that low-cardinality column."""
    known = facet_values_known(spec=spec)
    unknown: dict[str, str] = {}
    for flt in query.filters:
        if flt.column in known and flt.op in ("eq", "in") and flt.value:
            values = [v.strip() for v in flt.value.split(",")] if flt.op == "in" else [flt.value]
            missing = [v for v in values if v and v not in known[flt.column]]
            if missing:
                unknown.setdefault(flt.column, missing[0])
    return unknown


def _source_counts(rows: list[SearchRow]) -> dict[str, int]:
    counts = {source.value: 0 for source in RowSource}
    for row in rows:
        counts[row.source.value] += 1
    return counts


@dataclass
class _Rows:
    """Rows in source order, deduplicated by the table's key, never more than the limit."""

    key: str
    limit: int
    rows: list[SearchRow] = field(default_factory=list)
    seen: set = field(default_factory=set)

    def add(self, rows, source: RowSource) -> None:
        for values in rows:
            if not self.short:
                return
            key = values.get(self.key)
            if key in self.seen:
                continue
            self.seen.add(key)
            self.rows.append(SearchRow(values=dict(values), source=source))

    @property
    def short(self) -> bool:
        return len(self.rows) < self.limit

    def values(self) -> list[dict]:
        return [row.values for row in self.rows]

    def keys(self) -> list:
        return [row.values.get(self.key) for row in self.rows]

    def counts(self) -> dict[str, int]:
        return _source_counts(self.rows)

    def __len__(self) -> int:
        return len(self.rows)
