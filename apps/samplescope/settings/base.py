"""Settings shared by every environment; values come from environment variables.

Each setting has a safe local default so `make run` needs no configuration.
`local.py`, `test.py` and `production.py` override a few of them.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parents[3]


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core -------------------------------------------------------------------
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# Everything the app writes (SQLite db, DuckDB subset, Parquet files, model cache).
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "ninja",
    "axes",  # login throttle and lockout (see "Login throttle" below)
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.search",
    "apps.warehouse",
    "apps.modelhub",
    "apps.linking",
    "apps.subsets",
    "apps.samples",
    "apps.dashboard",
    "apps.samplescope",  # the project: setup_demo, which builds every app's demo data
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless its view is marked @login_not_required;
    # the API answers 401 itself (apps/samplescope/api.py).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # RateLimited from a page view → 429 with Retry-After (apps/core/ratelimit.py; the API maps it itself).
    "apps.core.ratelimit.RateLimitMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page (AXES_LOCKOUT_TEMPLATE).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "apps.samplescope.urls"
WSGI_APPLICATION = "apps.samplescope.wsgi.application"
ASGI_APPLICATION = "apps.samplescope.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.app_context",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'samplescope.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
# SQLite checkpoints (the WAL copied back into the database file, then an fsync) run in a background thread of each
# web worker, every SQLITE_CHECKPOINT_SECONDS (apps/core/dbwrite.py), not in the request whose commit crossed
# SQLite's 1,000-page default: with other disk reads going on that commit took 20-60 ms, one search in ~80. A
# connection still checkpoints itself past SQLITE_WAL_AUTOCHECKPOINT_PAGES (a backstop: a database no web worker
# serves), and a reset WAL is cut back to 64 MB.
SQLITE_CHECKPOINT_SECONDS = env_float("SQLITE_CHECKPOINT_SECONDS", 1.0)
SQLITE_WAL_AUTOCHECKPOINT_PAGES = env_int("SQLITE_WAL_AUTOCHECKPOINT_PAGES", 50_000)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, worker and beat read while one of them writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (f"PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                         f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}; "
                         f"PRAGMA journal_size_limit={64 * 1024 * 1024};"),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# Connections are kept between requests (DATABASE_CONN_MAX_AGE seconds) and checked before reuse: opening a
# SQLite connection (with its PRAGMAs) and closing it again cost ~2.5 ms of every request, more than many
# searches take.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- Login throttle (django-axes) ---------------------------------------------
# AxesStandaloneBackend first: it refuses a locked-out (username, client) before the password is even checked.
# It needs the request: authenticate(request, ...) as the login form and the admin do; tests use force_login (or
# Client.login(request=HttpRequest(), ...)). API tokens do not go through it (apps/samplescope/api.py).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# After AXES_FAILURE_LIMIT wrong passwords for one username from one client address, that pair is refused (429,
# templates/registration/locked_out.html) for AXES_COOLOFF_TIME, even with the right password. The pair, not the
# username alone, so nobody can lock a colleague out by typing their name wrong from elsewhere; not the address
# alone, so an office behind one NAT address is not locked out together. Failures are counted in the database
# (shared by every gunicorn process) and audited (apps/accounts/receivers.py). A success resets the pair's count.
# `manage.py axes_reset` (or axes_reset_username USER) unlocks at once; so does deleting the attempt in the admin.
AXES_ENABLED = env_bool("LOGIN_THROTTLE_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged (and audited)
# The client's address: REMOTE_ADDR, or behind the reverse proxy (production settings) the address the proxy
# appended to X-Forwarded-For (apps.accounts.selectors.request_client_ip).
AXES_CLIENT_IP_CALLABLE = "apps.accounts.selectors.request_client_ip"
TRUST_X_FORWARDED_FOR = env_bool("DJANGO_TRUST_X_FORWARDED_FOR", False)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# plotly.js is vendored as the smallest bundle that draws our charts (static/vendor/README.txt), no CDN:
# plotly-basic-<version>.min.js (bar, scatter, pie; 1.1 MB) on the dashboard, model demo and compare
# pages. Score-search draws its confusion matrix as a shaded HTML table, without plotly.
# static/vendor/bundles.json lists the bundle's trace types (tested).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root before collectstatic
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)  # collectstatic is optional off production
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "media"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024)

# Outside scripts are forbidden: htmx and plotly.js are served from static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Redis and Celery -------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request must not hang when Redis is down: fail fast and say so.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5, "max_retries": 0}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BEAT_SCHEDULE: dict = {}
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 1.5)

# --- AWS --------------------------------------------------------------------
AWS_REGION = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL")  # S3-compatible stores, moto in tests
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL", AWS_ENDPOINT_URL)

# --- Sample search (apps.search) -------------------------------------------
# Tables are described in a small JSON file; columns and types come from the data itself.
SEARCH_TABLES_FILE = Path(env_str("SEARCH_TABLES_FILE", str(BASE_DIR / "apps" / "search" / "tables.json")))
SEARCH_SUBSET_DIR = Path(env_str("SEARCH_SUBSET_DIR", str(DATA_DIR / "subset")))
SEARCH_FULL_DATA_DIR = Path(env_str("SEARCH_FULL_DATA_DIR", str(DATA_DIR / "full")))
SEARCH_DEFAULT_LIMIT = env_int("SEARCH_DEFAULT_LIMIT", 10)
SEARCH_MAX_LIMIT = env_int("SEARCH_MAX_LIMIT", 1000)
SEARCH_TIMEOUT_MS = env_int("SEARCH_TIMEOUT_MS", 5000)
# The full data's vocabulary (apps/search/vocabulary.py): proofs of absence, "did you mean", estimates.
SEARCH_VOCABULARY_ENABLED = env_bool("SEARCH_VOCABULARY_ENABLED", True)
# An Athena refresh also UNLOADs the vocabulary statements (one per text column, its cost added to the refresh's).
SUBSET_VOCABULARY_ON_ATHENA = env_bool("SUBSET_VOCABULARY_ON_ATHENA", True)
# A refresh (and the demo data) also adds the rows of rare words and thin facet cells that the sample lacks
# (apps.search.coverage), at most this share of the full data's rows; 0 turns it off.
SUBSET_COVERAGE_SHARE = env_float("SUBSET_COVERAGE_SHARE", 0.1)
SUBSET_COVERAGE_WORD_ROWS = env_int("SUBSET_COVERAGE_WORD_ROWS", 30)  # a word in at most this many rows is held whole
SEARCH_FACET_TIMEOUT_MS = env_int("SEARCH_FACET_TIMEOUT_MS", 800)
SEARCH_COUNT_TIMEOUT_MS = env_int("SEARCH_COUNT_TIMEOUT_MS", 300)  # exact match count, else "≥ N"
SEARCH_EXPORT_MAX_ROWS = env_int("SEARCH_EXPORT_MAX_ROWS", 10000)
SEARCH_DUCKDB_THREADS = env_int("SEARCH_DUCKDB_THREADS", 2)
DEMO_DATA_ROWS = env_int("DEMO_DATA_ROWS", 2_000_000)
DEMO_SUBSET_FRACTION = env_float("DEMO_SUBSET_FRACTION", 0.05)

# --- Warehouse fallback (apps.warehouse) ------------------------------------
WAREHOUSE_BACKEND = env_str("WAREHOUSE_BACKEND", "local")  # "local" or "athena"
ATHENA_DATABASE = env_str("ATHENA_DATABASE", "default")
ATHENA_TABLE = env_str("ATHENA_TABLE", "samples")
ATHENA_WORKGROUP = env_str("ATHENA_WORKGROUP", "primary")
ATHENA_OUTPUT_LOCATION = env_str("ATHENA_OUTPUT_LOCATION", "")
ATHENA_RESULT_REUSE_MAX_AGE_MINUTES = env_int("ATHENA_RESULT_REUSE_MAX_AGE_MINUTES", 60)
ATHENA_PRICE_PER_TB_USD = env_float("ATHENA_PRICE_PER_TB_USD", 5.0)
FALLBACK_CACHE_MAX_AGE_SECONDS = env_int("FALLBACK_CACHE_MAX_AGE_SECONDS", 24 * 3600)
FALLBACK_DAILY_BUDGET_USD = env_float("FALLBACK_DAILY_BUDGET_USD", 5.0)  # per user and day
FALLBACK_TEAM_DAILY_BUDGET_USD = env_float("FALLBACK_TEAM_DAILY_BUDGET_USD", 50.0)  # everyone together, per day
FALLBACK_MAX_BYTES_SCANNED = env_int("FALLBACK_MAX_BYTES_SCANNED", 200 * 1024**3)
# A user's queued or running fallbacks at once; past it a new one is refused (0: no cap). Others' wait stays short.
FALLBACK_MAX_IN_FLIGHT_PER_USER = env_int("FALLBACK_MAX_IN_FLIGHT_PER_USER", 4)
FALLBACK_SOFT_TIME_LIMIT = env_int("FALLBACK_SOFT_TIME_LIMIT", 600)
FALLBACK_TIME_LIMIT = env_int("FALLBACK_TIME_LIMIT", 660)
FALLBACK_STALE_AFTER_SECONDS = env_int("FALLBACK_STALE_AFTER_SECONDS", 900)
FALLBACK_MAX_ATTEMPTS = env_int("FALLBACK_MAX_ATTEMPTS", 3)  # runs of one fallback before the sweeper fails it
FALLBACK_PANEL_POLL_SECONDS = env_int("FALLBACK_PANEL_POLL_SECONDS", 1)
ATHENA_POLL_MAX_SECONDS = env_float("ATHENA_POLL_MAX_SECONDS", 5.0)
# Exports of every matching row (apps/warehouse/README.md, "Exports"): local CSV files, or Athena UNLOAD prefixes
# (default: ATHENA_OUTPUT_LOCATION + "exports/"). Time limits as for a fallback, longer.
WAREHOUSE_EXPORT_DIR = Path(env_str("WAREHOUSE_EXPORT_DIR", str(DATA_DIR / "exports")))
ATHENA_EXPORT_LOCATION = env_str("ATHENA_EXPORT_LOCATION", "")
EXPORT_SOFT_TIME_LIMIT = env_int("EXPORT_SOFT_TIME_LIMIT", 1800)
EXPORT_TIME_LIMIT = env_int("EXPORT_TIME_LIMIT", 1860)
WAREHOUSE_TASK_QUEUE = env_str("WAREHOUSE_TASK_QUEUE", "celery")
# Demo aid: pad local-backend runs to at least this long so the panel's states can be watched.
WAREHOUSE_LOCAL_MIN_LATENCY_MS = env_int("WAREHOUSE_LOCAL_MIN_LATENCY_MS", 0)
# Fails or requeues fallbacks whose worker died (apps.warehouse.services.fallback_sweep).
CELERY_BEAT_SCHEDULE["warehouse-sweep-fallbacks"] = {
    "task": "apps.warehouse.tasks.fallback_sweep_task",
    "schedule": env_float("FALLBACK_SWEEP_EVERY_SECONDS", 60.0),
}
# Retention (`manage.py prune_logs`): search logs older than this many days, and the row copies of fallbacks
# finished longer ago than FALLBACK_CACHE_MAX_AGE_SECONDS, and long searches stored for `?_q=<key>` unused for
# SAVED_SEARCH_KEEP_DAYS (apps.samples.services.retention_prune). Audit events are kept.
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 90)
SAVED_SEARCH_KEEP_DAYS = env_int("SAVED_SEARCH_KEEP_DAYS", 90)
# ... and the files of exports (local CSV, S3 objects) finished longer ago than this; the export is marked expired.
EXPORT_KEEP_DAYS = env_int("EXPORT_KEEP_DAYS", 14)
CELERY_BEAT_SCHEDULE["warehouse-prune-logs"] = {
    "task": "apps.samples.tasks.retention_prune_task",
    "schedule": env_float("LOG_PRUNE_EVERY_SECONDS", 24 * 3600.0),
}

# --- The subset's life (apps.subsets) --------------------------------------
# `manage.py refresh_subset` and the beat task below rebuild the subset from the warehouse.
SUBSET_DEFAULT_FRACTION = env_float("SUBSET_DEFAULT_FRACTION", DEMO_SUBSET_FRACTION)
# "hash" (a hash of the key: uniform, stable, reads every block), "system" (whole blocks/splits: reads about
# the fraction of the bytes, clumpier) or "bernoulli" (row by row: reads every block); "" = hash on the local
# backend, system on Athena where bytes scanned are billed. See apps/subsets/README.md.
SUBSET_SAMPLE_METHOD = env_str("SUBSET_SAMPLE_METHOD", "")
SUBSET_SAMPLE_SALT = env_str("SUBSET_SAMPLE_SALT", "samplescope")  # change it to draw a different hash sample
SUBSET_UNLOAD_S3_URI = env_str("SUBSET_UNLOAD_S3_URI", "")  # Athena: s3://bucket/prefix/ for UNLOAD output
SUBSET_REFRESH_EVERY_SECONDS = env_float("SUBSET_REFRESH_EVERY_SECONDS", 24 * 3600.0)
SUBSET_REFRESH_STALE_AFTER_SECONDS = env_int("SUBSET_REFRESH_STALE_AFTER_SECONDS", 3 * 3600)  # a dead refresh's lock
# Learned rows: what fallbacks brought back, kept as small indexed segments (apps/warehouse/README.md) and
# searched with the subset.
SUBSET_LEARNED_DIR = Path(env_str("SUBSET_LEARNED_DIR", str(DATA_DIR / "learned")))
SUBSET_LEARNED_MAX_ROWS = env_int("SUBSET_LEARNED_MAX_ROWS", 200_000)
SUBSET_LEARNED_MAX_ANSWERS = env_int("SUBSET_LEARNED_MAX_ANSWERS", 50_000)
# Past this many segments, the beat's merge (`warehouse-merge-learned`) compacts the smallest ones.
SUBSET_LEARNED_MAX_SEGMENTS = env_int("SUBSET_LEARNED_MAX_SEGMENTS", 8)
CELERY_BEAT_SCHEDULE["warehouse-merge-learned"] = {
    "task": "apps.warehouse.tasks.learned_segments_merge_task",
    "schedule": env_float("SUBSET_LEARNED_MERGE_EVERY_SECONDS", 60.0),
}
# A "complete" learned answer (every matching row of the full table) older than this stops counting as complete,
# so the search asks the warehouse again for rows added since (0 = no limit).
SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS = env_int("SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS", 24 * 3600)
# Rows brought back by fallbacks are kept and searched locally (apps/subsets/README.md).
SUBSET_LEARNING_ENABLED = env_bool("SUBSET_LEARNING_ENABLED", True)
CELERY_BEAT_SCHEDULE["subsets-refresh"] = {
    "task": "apps.subsets.tasks.subset_refresh_task",
    "schedule": SUBSET_REFRESH_EVERY_SECONDS,
}
# Every byte of the subset's word index checked against its checksums (apps/search/README.md, "Index format").
CELERY_BEAT_SCHEDULE["search-verify-index"] = {
    "task": "apps.search.tasks.index_verify_task",
    "schedule": env_float("INDEX_VERIFY_EVERY_SECONDS", 6 * 3600.0),
}

# --- Models (apps.modelhub) -------------------------------------------------
MODEL_STORE_URI = env_str("MODEL_STORE_URI", str(DATA_DIR / "model-store"))
MODEL_CACHE_DIR = Path(env_str("MODEL_CACHE_DIR", str(DATA_DIR / "model-cache")))
MODEL_SESSION_CACHE_SIZE = env_int("MODEL_SESSION_CACHE_SIZE", 8)
ORT_INTRA_OP_THREADS = env_int("ORT_INTRA_OP_THREADS", 2)  # 2 halves MiniLM latency on 2 cores
ORT_INTER_OP_THREADS = env_int("ORT_INTER_OP_THREADS", 1)
PREDICTION_CACHE_SIZE = env_int("PREDICTION_CACHE_SIZE", 4096)
PREDICT_MAX_TEXT_CHARS = env_int("PREDICT_MAX_TEXT_CHARS", 20_000)  # per input of /api/models/<name>/predict
PREDICT_MAX_INPUTS = env_int("PREDICT_MAX_INPUTS", 1000)  # inputs per call
BATCH_UPLOAD_MAX_BYTES = env_int("BATCH_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
# The largest accepted job: BATCH_MAX_ROWS rows. MiniLM scores ~20-50 texts/s on 2 cores, so 50k rows take at
# most ~2500 s: the time limits below fit it. A worker that dies mid-job stops the heartbeat (one per 256 rows,
# ~13 s at worst); the sweeper (beat, every BATCH_SWEEP_EVERY_SECONDS) fails a running job silent for
# BATCH_STALE_AFTER_SECONDS and a queued job no worker took within BATCH_QUEUED_MAX_SECONDS.
BATCH_MAX_ROWS = env_int("BATCH_MAX_ROWS", 50_000)
BATCH_SOFT_TIME_LIMIT = env_int("BATCH_SOFT_TIME_LIMIT", 3600)
BATCH_TIME_LIMIT = env_int("BATCH_TIME_LIMIT", 3720)
BATCH_STALE_AFTER_SECONDS = env_int("BATCH_STALE_AFTER_SECONDS", 600)
BATCH_QUEUED_MAX_SECONDS = env_int("BATCH_QUEUED_MAX_SECONDS", 2 * 3600)
# Scoring tasks go to a queue of their own, served by the batch worker (Procfile `batch-worker`, compose
# `batch-worker`): two long jobs in the default worker's 2 slots made an analyst's fallback wait 52 s, and a
# fallback queued 15 minutes is failed by its sweeper. The default worker consumes only the default queue.
BATCH_TASK_QUEUE = env_str("BATCH_TASK_QUEUE", "batch")
CELERY_TASK_ROUTES = {"modelhub.batch_job_score": {"queue": BATCH_TASK_QUEUE}}
CELERY_BEAT_SCHEDULE["modelhub-sweep-batches"] = {
    "task": "modelhub.batch_job_sweep",
    "schedule": env_float("BATCH_SWEEP_EVERY_SECONDS", 60.0),
}
# Stored demo and compare texts (their short `?_in=` URLs) are kept LOG_RETENTION_DAYS, as the search logs.
CELERY_BEAT_SCHEDULE["modelhub-prune-shared-inputs"] = {
    "task": "modelhub.shared_inputs_prune",
    "schedule": env_float("LOG_PRUNE_EVERY_SECONDS", 24 * 3600.0),
}

# --- Entity linking (apps.linking) ------------------------------------------
LINKING_VECTOR_INDEX = env_str("LINKING_VECTOR_INDEX", "numpy")  # "numpy" or "qdrant"
LINKING_QDRANT_PATH = env_str("LINKING_QDRANT_PATH", str(DATA_DIR / "qdrant"))
# NIL when the best similarity is below max(LINKING_NIL_THRESHOLD, LINKING_NIL_RELATIVE × that
# entity's typical similarity of its own mentions); both chosen by tune_linker (README).
LINKING_NIL_THRESHOLD = env_float("LINKING_NIL_THRESHOLD", 0.15)
LINKING_NIL_RELATIVE = env_float("LINKING_NIL_RELATIVE", 0.5)
LINKING_MAX_TEXT_CHARS = env_int("LINKING_MAX_TEXT_CHARS", 5000)
LINKING_ENCODER = env_str("LINKING_ENCODER", "minilm-l6")  # registered in modelhub (kind "encoder")
LINKING_SCORE = env_str("LINKING_SCORE", "topk")  # "topk" (mean of the k nearest mentions) or "nearest"
LINKING_TOP_K = env_int("LINKING_TOP_K", 5)
LINKING_PRIOR_WEIGHT = env_float("LINKING_PRIOR_WEIGHT", 0.0)  # 0.02-0.1 only hurt on the demo KB (README)
# Weight of the similarity to the entity's "name: description" embedding vs its stored mentions.
LINKING_PROFILE_WEIGHT = env_float("LINKING_PROFILE_WEIGHT", 0.7)
LINKING_NEAR_TIE = env_float("LINKING_NEAR_TIE", 0.01)  # a runner-up this close to the best score is flagged
# Candidates holding more stored mentions than this are pre-ranked by their aggregate embedding,
# and only the best LINKING_SHORTLIST get the exact per-mention comparison.
LINKING_AGGREGATE_CUTOFF = env_int("LINKING_AGGREGATE_CUTOFF", 200)
LINKING_SHORTLIST = env_int("LINKING_SHORTLIST", 8)
# A KB rebuild scores each entity's mentions against each other (its NIL bar): past this many mentions a fixed
# sample stands for the rest, so a rebuild is not quadratic in a popular entity's mentions.
LINKING_TYPICAL_MAX_MENTIONS = env_int("LINKING_TYPICAL_MAX_MENTIONS", 200)
# One API call may add at most this many mentions / aliases to an entity.
LINKING_MAX_MENTIONS_PER_CALL = env_int("LINKING_MAX_MENTIONS_PER_CALL", 200)
LINKING_MAX_ALIASES_PER_CALL = env_int("LINKING_MAX_ALIASES_PER_CALL", 100)

# --- Rate limits (apps/core/ratelimit.py) -------------------------------------
# Requests per user per minute (a fixed window) on the expensive pages, htmx partials, exports and API endpoints
# alike; over it: 429 with Retry-After. 0 turns a limit off. One search on the page is two requests (results,
# then facets), so 120 lets someone page through results every second without meeting it.
# Counters shared by every web process; when this Redis is down each process counts on its own.
RATE_LIMIT_REDIS_URL = env_str("RATE_LIMIT_REDIS_URL", REDIS_URL)
RATE_LIMIT_PREDICT_PER_MINUTE = env_int("RATE_LIMIT_PREDICT_PER_MINUTE", 120)
RATE_LIMIT_LINK_PER_MINUTE = env_int("RATE_LIMIT_LINK_PER_MINUTE", 120)
RATE_LIMIT_SEARCH_PER_MINUTE = env_int("RATE_LIMIT_SEARCH_PER_MINUTE", 120)
# score-search runs a model over up to SEARCH_MAX_LIMIT rows (1000 rows of MiniLM ≈ 60 s of CPU): few per minute.
RATE_LIMIT_SCORE_PER_MINUTE = env_int("RATE_LIMIT_SCORE_PER_MINUTE", 4)
# Uploads and their previews (a preview per file or column picked).
RATE_LIMIT_BATCH_PER_MINUTE = env_int("RATE_LIMIT_BATCH_PER_MINUTE", 20)

# --- Demo setup (`python manage.py setup_demo`, apps/samplescope/management/commands/setup_demo.py) ---
# Training rows for the demo classifiers (MiniLM encodes ~20-50 texts/s on 2 cores).
DEMO_TFIDF_TRAIN_ROWS = env_int("DEMO_TFIDF_TRAIN_ROWS", 15_000)
DEMO_MINILM_TRAIN_ROWS = env_int("DEMO_MINILM_TRAIN_ROWS", 1_000)
# The demo login is a superuser with a published password: production settings turn it off (setup_demo refuses).
DEMO_USERS_ALLOWED = True
DEMO_USERNAME = env_str("DEMO_USERNAME", "demo")
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "samplescope-demo")
