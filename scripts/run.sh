#!/usr/bin/env bash
# `make run`: starts Redis (unless one already answers), a Celery worker (fallbacks and the sweepers, queue
# `celery`), a batch worker (CSV scoring only, queue `batch`, BATCH_WORKER_CONCURRENCY slots, 1 by default), beat and the web
# server (gunicorn: WEB_WORKERS processes, 2 by default for 2 cores, of WEB_THREADS threads, 4 by
# default, each query on one DuckDB thread; each opens the subset and its index read-only, the index memory-mapped and shared through
# the page cache) under honcho. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PORT REDIS_URL
mkdir -p var
procfile=var/Procfile.run
cp Procfile "$procfile"
if .venv/bin/python - "$REDIS_URL" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=0.5).ping()
except redis.RedisError:
    sys.exit(1)
PY
then
  echo "Using the Redis already running at $REDIS_URL"
else
  redis_port=$(.venv/bin/python -c "import sys, urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 6379)" "$REDIS_URL")
  echo "redis: redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no" >> "$procfile"
fi
echo
echo "  Samplescope: http://127.0.0.1:${PORT}/   (Ctrl-C stops everything)"
echo
exec .venv/bin/honcho -f "$procfile" -d . start
