#!/usr/bin/env bash
# Issue 23's speed figures, end to end: the N-row benchmark subset (bench_search --build-only, built once under
# DATA_DIR/bench/) served by the stack `make run` starts (scripts/run.sh: honcho, gunicorn, Celery, Redis), then
# bench_search over HTTP side by side with the app in-process, raw DuckDB, SQLite FTS5 and Datasette, 2 passes,
# then 8 concurrent clients. A read-only token: the replay starts no warehouse work, like the in-process engine.
# With VOCAB_ROWS=M, also issue 24's: an M-row full dataset imported beside it as table `crawl` with its
# vocabulary (bench_vocabulary, built once), then its lookups over HTTP against the same server.
# Usage: DATA_DIR=/path [VOCAB_ROWS=50000000] scripts/bench_search_http.sh [ROWS] [extra bench_search options]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-10000000}"; shift || true
: "${DATA_DIR:?set DATA_DIR (the benchmark data lives under DATA_DIR/bench/)}"
export DATA_DIR SEARCH_SUBSET_DIR="$DATA_DIR/bench/words-$ROWS-seed-7/subset" RATE_LIMIT_SEARCH_PER_MINUTE=0
export PORT="${PORT:-8790}" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6391/0}"
.venv/bin/python manage.py bench_search --subset-rows "$ROWS" --build-only
if [ -n "${VOCAB_ROWS:-}" ]; then .venv/bin/python manage.py bench_vocabulary --rows "$VOCAB_ROWS" --build-only; fi
.venv/bin/python manage.py migrate -v0
.venv/bin/python manage.py shell -c "from django.contrib.auth import get_user_model as g; g().objects.get_or_create(username='bench')"
TOKEN=$(.venv/bin/python manage.py create_api_token bench --role analyst --read-only 2>/dev/null | tail -1)
(setsid scripts/run.sh > "$DATA_DIR/bench-server.log" 2>&1 &)
trap 'pkill -f "honcho -f var/Procfile.run" || true' EXIT
for _ in $(seq 90); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 2; done
# Every worker opens and checks the subset, its index and vocabulary before it serves (the first to be ready
# answers /healthz while the others still warm): wait for all of them, then let the background prefetch settle.
for _ in $(seq 120); do
  [ "$(grep -c 'Samplescope: subset and index open' "$DATA_DIR/bench-server.log" || true)" -ge "${WEB_WORKERS:-2}" ] && break
  sleep 2
done
sleep 20
.venv/bin/python manage.py bench_search --subset-rows "$ROWS" --queries 120 --passes 2 --http "http://127.0.0.1:$PORT" \
  --token "$TOKEN" --datasette --peer-queries 40 --clients 8 --json "$DATA_DIR/bench-search-http.json" "$@"
if [ -n "${VOCAB_ROWS:-}" ]; then
  .venv/bin/python manage.py bench_vocabulary --rows "$VOCAB_ROWS" --queries 200 --peer-queries 3 \
    --http "http://127.0.0.1:$PORT" --token "$TOKEN" --json "$DATA_DIR/bench-vocabulary-http.json"
fi
