"""The one place that decides where a search's rows come from.

`search_answer` answers a SearchQuery from, in order:

1. the **subset**: the local DuckDB sample (apps.search.selectors.subset_search, time-limited);
2. a **warehouse fallback the caller names** (`fallback_id`): once it has succeeded, its rows; the page
   asks again with it when the fallback finishes, and exports of that page name it too;
3. the **learned rows**: what earlier fallbacks brought back (apps.warehouse.learned); a learned answer
   that held every matching row makes the search *complete* without the warehouse; so does the full data's
   vocabulary (apps.search.vocabulary) when it proves that no row matches, or that the full data holds no
   more matching rows than the subset has (`all_here`: rare words and thin facet cells are held whole);
4. the **warehouse** itself: if the rows are still short of the limit, the answer is not known to be
   complete, the table has a warehouse and the caller allows it, a fallback is created, joined or
   reused from its cache (apps.warehouse.services.fallback_request). A cached result's rows are merged
   at once; a new one runs in a Celery worker and the page asks again when it is done.

Every caller goes through here: the samples page and its htmx partial, the CSV/JSON export, `GET
/api/search`, scoring search results with a model (which never starts a fallback), and the
benchmarks. So the screen, the export, the API and the measurements always agree.

A request resolves its search once (apps.search.context: the subset file CURRENT names, the table specs
built from it, the filters validated) and passes that `SearchContext` here; every step reads through it.
How each source was searched (the plan: index, scan or empty, why, candidates read) comes back on
`SearchAnswer.plan`. What the page, the export and the API show of an answer is built by one function,
`answer_present`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlencode

import duckdb
from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.core.dbwrite import database_write_lock
from apps.search.context import SearchContext, search_context_build
from apps.search.query import NEXT_PARAM, SearchQuery, next_token, sort_value
from apps.search.selectors import PlanReport, facet_values_known, subset_match_count, subset_search
from apps.search.services import search_log_create
from apps.search.tables import TableSpec
from apps.search.vocabulary import VocabularyAnswer, search_vocabulary_answer
from apps.warehouse.backends.base import query_columns, scan_cost_usd
from apps.warehouse.backends.local import parquet_bytes_for_columns
from apps.warehouse.handles import FallbackHandle
from apps.warehouse.learned import learned_rows_for_search, learned_snapshot
from apps.warehouse.models import Fallback
from apps.warehouse.selectors import fallback_for_query
from apps.warehouse.services import fallback_request

logger = logging.getLogger(__name__)

SOURCE_COLUMN = "_source"  # the column the export and the API add to every row
NO_WAREHOUSE = "This table has no warehouse: results come from the local copy only."
NO_SPENDING = ("This API token is read-only: it cannot start a warehouse query (that is billed). Showing local "
               "rows only; a read-write token, or the search page, can query the warehouse.")


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


@dataclass(frozen=True)
class AnswerPlan:
    """How each source was searched: the subset, and the learned rows when they were (None: not asked)."""

    subset: PlanReport | None = None
    learned: PlanReport | None = None

    def as_dict(self) -> dict:
        return {"subset": self.subset.as_dict() if self.subset else None,
                "learned": self.learned.as_dict() if self.learned else None}

    def describe(self) -> str:
        """"subset by index: candidate rows from the word postings (12 candidates, 12 read); learned rows by scan: …"."""
        parts = []
        for name, report in (("subset", self.subset), ("learned rows", self.learned)):
            if report is not None:
                parts.append(f"{name} by {report.describe()}")
        return "; ".join(parts)


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
    unknown_values: dict[str, str] = field(default_factory=dict)  # column -> a value the subset never saw
    next_token: str | None = None  # `_next` for the following page of subset rows; None on the last page
    match_count: int | None = None  # subset rows matching the filters (all pages); None when unknown
    match_count_exact: bool = False  # False: at least match_count
    merged_sort: bool = False  # rows from several sources were sorted together here, in Python
    plan: AnswerPlan = field(default_factory=AnswerPlan)  # how the subset (and the learned rows) were searched
    vocabulary: VocabularyAnswer | None = None  # the full data's vocabulary: proof, suggestions, estimates

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
        if self.query.order is not None:
            head += f"; sorted by {self.query.order.column}{' descending' if self.query.order.desc else ''}"
            if self.merged_sort:
                head += " across all sources"
        return head

    def next_params(self) -> list[tuple[str, str]] | None:
        """URL parameters of the next page (page, export and API alike); None on the last page."""
        if not self.next_token:
            return None
        base = self.query.to_params(page=False)
        return base[:-1] + [(NEXT_PARAM, self.next_token)] + base[-1:]  # limit stays last

    def match_count_text(self) -> str:
        """"1,234" or "≥ 10": subset rows that match (every page)."""
        if self.match_count is None:
            return ""
        return f"{'' if self.match_count_exact else '≥ '}{self.match_count:,}"

    def as_dicts(self) -> list[dict]:
        return [row.as_dict() for row in self.rows]


def fallback_id_from(params) -> int | None:
    """The `fallback=<id>` URL parameter (a QueryDict or (name, value) pairs): the finished fallback whose
    rows the page, the export, the API and score-search merge."""
    raw = params.get("fallback") if hasattr(params, "get") else dict(params).get("fallback")
    raw = (raw or "").strip()
    # ASCII digits only (str.isdigit also takes "²", which int() refuses), and an id a database holds.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def search_answer(*, user, query: SearchQuery | None = None, context: SearchContext | None = None,
                  allow_fallback: bool = True, fallback_id: int | None = None,
                  log: bool = True, timeout_ms: int | None = None, confirmed: bool = False,
                  count: bool = True, may_spend: bool = True) -> SearchAnswer:
    """Answer `query` (see the module docstring). Raises SearchValidationError, TableNotFound or
    SubsetMissing (apps.search.errors); a problem with the warehouse never raises: it is on `notice`
    or on the fallback handle, and the local rows still come back.

    A search for a value of a low-cardinality column that the subset has never seen (`label = cooking`)
    does not start a paid fallback unless `confirmed`: `unknown_values` says which, and `notice` asks.

    `count=False` skips the count(*) of every matching subset row when the first page did not hold them
    all (it can take up to SEARCH_COUNT_TIMEOUT_MS): the API counts only when asked (`_count=1`).

    `may_spend=False` (a read-only API token): a cached warehouse result or a fallback already in flight is
    still used (neither costs anything more), but no new, billed one is started; `notice` says why.

    `context`: the request's SearchContext (apps.search.context), else one is built from `query` here: the
    subset file and the table spec are resolved, and the filters validated, once either way."""
    context = context or search_context_build(query=query)
    query, spec = context.query, context.spec
    outcome = subset_search(context=context, timeout_ms=timeout_ms or settings.SEARCH_TIMEOUT_MS)
    rows = _Rows(key=spec.key, limit=query.limit)
    rows.add(outcome.rows_as_dicts(), RowSource.SUBSET)
    began = time.perf_counter()
    has_warehouse = spec.has_warehouse(settings.WAREHOUSE_BACKEND)
    complete = False
    token = _next_token(query=query, spec=spec, rows=rows, subset_rows=len(outcome.rows))
    match = _match_count(context=context, outcome=outcome, more=token is not None, count=count)
    if query.paged:  # later pages are pages of the subset: no learned rows, no warehouse
        allow_fallback, fallback_id = False, None

    attached = fallback_for_query(fallback_id=fallback_id, fingerprint=query.fingerprint()) if fallback_id else None
    if attached is not None and attached.row_count and not attached.rows:
        attached = None  # its row copies were pruned (`prune_logs`): answer as a fresh search would
    if attached is not None and attached.state == Fallback.State.SUCCEEDED:
        rows.add(attached.rows, RowSource.WAREHOUSE)
        complete = attached.row_count < query.limit
    learned_plan = None
    # The subset's matching rows found (distinct rows of the full data), when it was searched to the page's limit: as
    # many as the full data may hold, or a part of a needle whose every row is here, means all of them.
    searched = not query.paged and not outcome.timed_out
    vocabulary = search_vocabulary_answer(query=query, spec=spec, path=context.snapshot[0],  # the file searched
                                          subset_rows=len(outcome.rows) if searched else None)
    proven = (vocabulary is not None and vocabulary.proven_empty and not rows.rows and not confirmed
              and not query.paged and attached is None)
    # As many subset rows match as the full data may hold (rare words and thin cells are held whole): no fallback.
    all_here = vocabulary is not None and vocabulary.all_here and not confirmed and attached is None
    # The full dataset had no matching row when the vocabulary was built: no fallback. The learned rows are still
    # asked (a fallback since may have brought rows of data added later: they win over the proof).
    if rows.short and (proven or not complete) and not outcome.timed_out and not query.paged:
        learned = learned_rows_for_search(query=query, spec=spec, local_rows=rows.values(),
                                          snapshot=_learned_snapshot(), context=context)
        learned_plan = learned.plan
        rows.add(learned.rows, RowSource.LEARNED)
        proven = proven and not learned.rows
        complete = learned.complete and rows.short  # a page the learned rows filled may not hold every match
    complete = complete or proven or all_here
    elapsed_ms = round(outcome.elapsed_ms + (time.perf_counter() - began) * 1000, 2)
    plan = AnswerPlan(subset=outcome.plan, learned=learned_plan)

    needs_more = rows.short and not complete and attached is None and not query.paged
    log_row = None
    if log:  # one transaction, one write lock (SQLite: one writer at a time, waited for without sleeping)
        counts = rows.counts()
        with database_write_lock(), transaction.atomic():
            log_row = _log_and_audit(user=user, query=query, counts=counts, elapsed_ms=elapsed_ms,
                                     needed_fallback=needs_more and has_warehouse, timed_out=outcome.timed_out,
                                     plan=plan)

    handle = FallbackHandle(fallback=attached) if attached is not None else None
    notice = ""
    unknown = _unknown_values(context=context) if needs_more and has_warehouse and allow_fallback else {}
    if proven:
        notice = (f"The full dataset has none: {vocabulary.proof} (its vocabulary, built {vocabulary.built_at})."
                  + _scan_text(query=query, spec=spec))
    elif all_here and rows.short:
        notice = (f"Every matching row of the full dataset is here: {vocabulary.here_reason} "
                  f"(its vocabulary, built {vocabulary.built_at})." + _scan_text(query=query, spec=spec))
    elif needs_more and not has_warehouse:
        notice = NO_WAREHOUSE
    elif unknown and not confirmed:
        notice = "; ".join(f"{value!r} is not a known {column}" for column, value in unknown.items()) + \
            ": search the warehouse anyway?" + \
            (f" {vocabulary.expected_text()}{_scan_text(query=query, spec=spec)}" if vocabulary is not None else "")
    elif needs_more and allow_fallback:
        try:
            handle = fallback_request(user=user, query=query, spec=spec, local_keys=rows.keys(), search_log=log_row,
                                      may_spend=may_spend)
        except Exception as exc:  # the local rows must still show
            logger.exception("asking the warehouse for %s failed", query.describe())
            notice = f"The warehouse fallback could not be asked: {exc}"
        else:
            if handle is None:  # nothing to reuse, and this request may not start a billed query
                notice = NO_SPENDING
            elif handle.fallback.state == Fallback.State.SUCCEEDED:  # reused from the cache: merge it now
                rows.add(handle.fallback.rows, RowSource.WAREHOUSE)
                complete = handle.fallback.row_count < query.limit
                if log_row is not None:
                    log_row.source_counts = rows.counts()
                    log_row.save(update_fields=["source_counts"])
    merged_sort = query.order is not None and len({row.source for row in rows.rows}) > 1
    if merged_sort:
        rows.sort(column=query.order.column, kind=spec.kind(query.order.column), desc=query.order.desc)
    return SearchAnswer(query=query, spec=spec, rows=rows.rows, complete=complete, has_warehouse=has_warehouse,
                        timed_out=outcome.timed_out, elapsed_ms=elapsed_ms, fallback=handle,
                        log_id=log_row.pk if log_row else None, notice=notice,
                        unknown_values=unknown if not confirmed else {}, next_token=token,
                        match_count=match[0] if match else None, match_count_exact=bool(match and match[1]),
                        merged_sort=merged_sort, plan=plan, vocabulary=vocabulary)


def _log_and_audit(*, user, query: SearchQuery, counts: dict, elapsed_ms: float, needed_fallback: bool,
                   timed_out: bool, plan: AnswerPlan):
    """The search's log row (returned) and its audit event."""
    log_row = search_log_create(user=user, query=query, rows=counts[RowSource.SUBSET] + counts[RowSource.LEARNED],
                                elapsed_ms=elapsed_ms, needed_fallback=needed_fallback, timed_out=timed_out,
                                source_counts=counts, plan=plan.as_dict())
    audit_record(user=user, action="search", target=query.describe(), outcome="timeout" if timed_out else "ok",
                 detail={"search_log_id": log_row.pk, "rows": counts, "elapsed_ms": elapsed_ms})
    return log_row


def _learned_snapshot():
    """The learned store as this request reads it, taken once (None: none, learning off, or it cannot be
    opened: that only means no learned rows)."""
    if not settings.SUBSET_LEARNING_ENABLED:
        return None
    try:
        return learned_snapshot()
    except (duckdb.Error, OSError, ValueError) as exc:
        logger.warning("learned rows unavailable: %s", exc)
        return None


def _scan_text(*, query: SearchQuery, spec: TableSpec) -> str:
    """" A warehouse query would scan about 120 MB ($0.0006).": said where the user decides whether to pay."""
    if not spec.full_data_glob:  # what the warehouse would read, from the Parquet footers where this machine has them
        return ""
    try:
        scanned = parquet_bytes_for_columns(pattern=spec.full_data_glob, columns=query_columns(query=query, spec=spec))
    except Exception:  # an estimate is a courtesy: never the reason a search fails
        logger.warning("no scan estimate for %s", query.describe(), exc_info=True)
        return ""
    if not scanned:
        return ""
    return (f" A warehouse query would scan about {scanned / 1e6:,.0f} MB "
            f"(${scan_cost_usd(bytes_scanned=scanned):.4f}).")


def _next_token(*, query: SearchQuery, spec: TableSpec, rows: _Rows, subset_rows: int) -> str | None:
    """A token for the next page when the subset filled this one (it may have more): the last row's
    (sort value, key), or its key alone when unsorted (later pages then go in key order)."""
    if subset_rows < query.limit or not rows.rows or query.seed is not None:  # a random sample has no next page
        return None
    last = rows.rows[-1].values
    if query.order is not None:
        return next_token([last.get(query.order.column), last.get(spec.key)])
    if not query.paged:
        # An unsorted first page is in scan order: the pages after it go in key order, after the
        # largest key shown here.
        return next_token([max(rows.keys(), key=lambda k: (k is None, k))])
    return next_token([last.get(spec.key)])


def _match_count(*, context: SearchContext, outcome, more: bool, count: bool) -> tuple[int, bool] | None:
    """(subset rows matching the filters, exact?) over every page. Free when the first page held them
    all; else count(*) under SEARCH_COUNT_TIMEOUT_MS, and past it "at least what we have seen"."""
    if outcome.timed_out:
        return None
    if not context.query.paged and not more:
        return len(outcome.rows), True
    if not count:
        return None
    counted = subset_match_count(context=context, timeout_ms=settings.SEARCH_COUNT_TIMEOUT_MS)
    if counted is not None:
        return counted.count, True
    return len(outcome.rows) + (1 if more else 0), False


def _unknown_values(*, context: SearchContext) -> dict[str, str]:
    """column -> the first `eq`/`in` value the subset has never seen in that low-cardinality column."""
    known = facet_values_known(spec=context.spec, store=context.store)
    unknown: dict[str, str] = {}
    for flt in context.query.filters:
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

    def sort(self, *, column: str, kind: str, desc: bool) -> None:
        """As ORDER BY column [DESC] NULLS LAST, key: rows from several sources, sorted together."""
        self.rows.sort(key=lambda r: (r.values.get(self.key) is None, r.values.get(self.key)))  # tie-breaker
        present = [r for r in self.rows if r.values.get(column) is not None]
        missing = [r for r in self.rows if r.values.get(column) is None]
        present.sort(key=lambda r: sort_value(kind, r.values.get(column)), reverse=desc)
        self.rows[:] = present + missing

    def counts(self) -> dict[str, int]:
        return _source_counts(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


# --- What the page, the export and the API show of an answer ----------------------------------------------

@dataclass(frozen=True)
class AnswerPresented:
    """An answer as every caller presents it, built once by `answer_present`."""

    counts: dict[str, int]  # rows per source, every source present
    local_count: int  # subset + learned
    source: str  # "local", or "mixed" when warehouse rows are in
    summary: str
    notice: str  # what to tell about the warehouse (origin.answer_notice)
    next_params: list[tuple[str, str]] | None  # URL parameters of the next page; None on the last page
    first_page_params: list[tuple[str, str]] | None  # on a later page, the first page's; else None
    sort: str | None  # "column" or "-column"
    match_count: int | None
    match_count_exact: bool
    match_count_text: str
    fallback_id: int | None  # the fallback whose rows are (or will be) merged
    plan: dict  # AnswerPlan.as_dict()
    plan_text: str  # AnswerPlan.describe()

    def next_url(self, path: str) -> str:
        """`path?next page's parameters`, or "" on the last page."""
        return f"{path}?{urlencode(self.next_params)}" if self.next_params else ""

    def first_page_url(self, path: str) -> str:
        return f"{path}?{urlencode(self.first_page_params)}" if self.first_page_params else ""


def answer_present(*, answer: SearchAnswer, may_start_fallback: bool = True) -> AnswerPresented:
    """What the page, the CSV/JSON export and `/api/search` present of `answer`: counts, the notice, the next
    page, the match count and the plan, built here once so the three never disagree."""
    from .origin import answer_notice  # origin reads nothing of this module; imported here to keep it so

    counts = answer.counts
    query = answer.query
    return AnswerPresented(
        counts=counts,
        local_count=counts[RowSource.SUBSET] + counts[RowSource.LEARNED],
        source="mixed" if counts[RowSource.WAREHOUSE] else "local",
        summary=answer.summary(),
        notice=answer_notice(answer=answer, may_start_fallback=may_start_fallback),
        next_params=answer.next_params(),
        first_page_params=query.to_params(page=False) if query.paged else None,
        sort=(f"-{query.order.column}" if query.order.desc else query.order.column) if query.order else None,
        match_count=answer.match_count,
        match_count_exact=answer.match_count_exact,
        match_count_text=answer.match_count_text(),
        fallback_id=answer.fallback.id if answer.fallback is not None else None,
        plan=answer.plan.as_dict(),
        plan_text=answer.plan.describe(),
    )
