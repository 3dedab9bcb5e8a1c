"""The test suite: fast hashing, everything written to a temporary DATA_DIR.

Tests that need Redis or a Celery worker start their own (tests/conftest.py) and pass them
the same DATA_DIR and test database through the environment.
"""
import os
import tempfile

os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="samplescope-test-"))
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens: tests start their own

from .base import *  # noqa: E402,F401,F403
from .base import DATA_DIR, DATABASES, env_bool  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so a Celery worker process and the live server see the same rows.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
HEALTH_CHECK_TIMEOUT = 1.0
# Other apps' tests expect a repeated search to come from the fallback cache, not learned rows;
# tests/subsets turns learning on, and a test's own Celery worker can too (SUBSET_LEARNING_ENABLED=1
# in its environment: tests/warehouse/test_flow.py).
SUBSET_LEARNING_ENABLED = env_bool("SUBSET_LEARNING_ENABLED", False)
# Other apps' tests expect the demo subset to be a plain 5% sample (which searches need the warehouse);
# tests/search/test_coverage.py turns the coverage rows on.
SUBSET_COVERAGE_SHARE = 0.0
# No checkpoint thread in the test process (post_worker_init would start one): tests/core/test_dbwrite.py starts its
# own; the backstop checkpoints the test database.
SQLITE_CHECKPOINT_SECONDS = 0.0
