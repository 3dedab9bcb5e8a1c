"""N concurrent fallback requests against one daily budget: the ledger must never be overdrawn.

Used in-process by tests/warehouse/test_spend.py (SQLite) and, for PostgreSQL, run as
`python -m tests.warehouse.ledger_race --threads N ...` with DATABASE_URL pointing at the server
(tests/conftest.py starts one); it migrates that database and prints the outcome as JSON.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from decimal import Decimal


def ledger_race(*, threads: int, estimate_bytes: int, user_budget_usd: float, team_budget_usd: float,
                team: bool = False, widen_seconds: float = 0.05) -> dict:
    """`threads` threads, released together, each ask for a fallback of a distinct query estimated at
    `estimate_bytes`. `team`: each thread is another user (the team cap binds), else one user (the
    per-user cap binds). `widen_seconds`: a pause after the budget is read, so a check that is not
    serialized with its insert shows up as an overdraft every time. Returns what was reserved."""
    from unittest import mock

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import override_settings

    from apps.search.query import Filter, SearchQuery
    from apps.search.tables import table_spec_get
    from apps.warehouse import services
    from apps.warehouse.backends.base import scan_cost_usd
    from apps.warehouse.backends.local import LocalBackend
    from apps.warehouse.models import Fallback

    users = [get_user_model().objects.get_or_create(username=f"race-{i if team else 0}")[0] for i in range(threads)]
    spec = table_spec_get(name="samples")
    first_id = Fallback.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    errors: list[str] = []
    real_user_spent, real_team_spent = services.fallback_spent_today_usd, services.fallback_team_spent_today_usd

    def slow(read):
        def wrapper(**kwargs):
            value = read(**kwargs)
            time.sleep(widen_seconds)
            return value
        return wrapper

    def ask(index: int) -> None:
        try:
            query = SearchQuery(table="samples", filters=(Filter("id", "eq", str(10_000_000 + index)),), limit=1)
            barrier.wait(timeout=30)
            handle = services.fallback_request(user=users[index], query=query, spec=spec)
            outcomes.append(handle.state)
        except Exception as exc:  # reported, and the caller asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    with override_settings(FALLBACK_DAILY_BUDGET_USD=user_budget_usd, FALLBACK_TEAM_DAILY_BUDGET_USD=team_budget_usd,
                           FALLBACK_MAX_BYTES_SCANNED=max(estimate_bytes, 1),
                           FALLBACK_MAX_IN_FLIGHT_PER_USER=0), \
            mock.patch.object(LocalBackend, "estimate_bytes", lambda self, **_: estimate_bytes), \
            mock.patch.object(services, "fallback_enqueue", lambda **_: True), \
            mock.patch.object(services, "fallback_spent_today_usd", slow(real_user_spent)), \
            mock.patch.object(services, "fallback_team_spent_today_usd", slow(real_team_spent)):
        workers = [threading.Thread(target=ask, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)

    mine = Fallback.objects.filter(pk__gt=first_id)
    reserved = sum((f.estimated_cost_usd for f in mine.filter(state__in=Fallback.ACTIVE_STATES)), Decimal(0))
    each = scan_cost_usd(bytes_scanned=estimate_bytes)
    budget = Decimal(str(team_budget_usd if team else user_budget_usd))
    mine.delete()  # the next race starts from an empty day
    return {
        "database": connection.vendor,
        "cap": "team" if team else "user",
        "requests": threads,
        "cost_each_usd": str(each),
        "budget_usd": str(budget),
        "fit_in_budget": int(budget // each),
        "created": outcomes.count("queued"),
        "refused": outcomes.count("refused"),
        "reserved_usd": str(reserved),
        "errors": errors,
    }


def settle_and_prune_smoke() -> dict:
    """The other writes of the money path on this database: settling a stopped query on its bytes
    (`_finish`: SELECT ... FOR UPDATE, then a conditional UPDATE) and pruning row copies (JSON compare)."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.warehouse.backends.base import scan_cost_usd
    from apps.warehouse.models import Fallback
    from apps.warehouse.services import fallback_rows_prune, fallback_sweep

    common = dict(table="samples", query={}, limit=2, backend="local")
    long_ago = timezone.now() - timedelta(days=3)
    stale = Fallback.objects.create(fingerprint="smoke-1", inflight_key="smoke-1", state="running", attempts=99,
                                    bytes_scanned=3 * 1024**3, heartbeat_at=long_ago, **common)
    old = Fallback.objects.create(fingerprint="smoke-2", state="succeeded", rows=[{"id": 1}], row_count=1,
                                  finished_at=long_ago, **common)
    swept = fallback_sweep(stale_after_seconds=60)
    stale.refresh_from_db()
    pruned = fallback_rows_prune(older_than_seconds=3600)
    old.refresh_from_db()
    return {"swept_failed": swept["failed"],
            "swept_cost_ok": stale.cost_usd == scan_cost_usd(bytes_scanned=3 * 1024**3),
            "pruned": pruned, "rows_after_prune": old.rows}


def main() -> None:
    import django

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--estimate-bytes", type=int, default=100 * 1024**3)
    parser.add_argument("--budget", type=float, default=5.0)
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    results = [ledger_race(threads=args.threads, estimate_bytes=args.estimate_bytes, user_budget_usd=args.budget,
                           team_budget_usd=10**6),
               ledger_race(threads=args.threads, estimate_bytes=args.estimate_bytes, user_budget_usd=10**6,
                           team_budget_usd=args.budget, team=True)]
    print("LEDGER_RACE " + json.dumps(results))
    print("SMOKE " + json.dumps(settle_and_prune_smoke()))


if __name__ == "__main__":
    main()
