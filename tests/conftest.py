"""Fixtures shared by every app's tests: real redis-server and Celery worker processes,
a real headless Chromium driven by Playwright, logged-in users and API tokens."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

# Playwright's sync API runs an event loop in the test thread; Django then refuses ORM calls
# from that thread unless told that this is deliberate.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A real redis-server on a free port, started and stopped by the tests."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: `make test` installs it (scripts/install_system_deps.sh)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_until(self.ping, timeout=10, what="redis-server to answer")

    def ping(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _point_app_at(url: str) -> None:
    from apps.samplescope.celery import app

    settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = url
    app.conf.update(broker_url=url, result_backend=url)
    # Drop cached connections so the next publish, ping or result uses the new URL.
    app._after_fork()
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    previous = settings.CELERY_BROKER_URL
    _point_app_at(server.url)
    yield server
    _point_app_at(previous)
    server.stop()


class PostgresServer:
    """A real PostgreSQL (Debian's package) in a temporary data directory on a free port.

    The server refuses to run as root, so as root the data directory belongs to the `postgres` user
    and every command runs through `runuser -u postgres --`."""

    def __init__(self):
        import glob
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert bins, "PostgreSQL is not installed: `make test` installs it (scripts/install_system_deps.sh)"
        self.bin = Path(bins[-1]).parent
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp dir: that is private to root (0700) and the postgres user could not enter it.
        self.dir = Path(tempfile.mkdtemp(prefix="samplescope-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120, **kwargs)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.dir, user="postgres", group="postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def database_url(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the tests that need its locking (the spend ledger)."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def worker_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="apps.samplescope.settings.test",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        DATA_DIR=str(settings.DATA_DIR),
        DATABASE_URL=f"sqlite:///{settings.DATABASES['default']['TEST']['NAME']}",
        PYTHONUNBUFFERED="1",
    )
    return env


class CeleryWorker:
    """A real `celery worker` process on the test Redis, using the test database file."""

    def __init__(self, redis_url: str, log_path: Path, name: str = "test", queues: tuple[str, ...] = ()):
        self.redis_url = redis_url
        self.log_path = log_path
        self.name = f"{name}-{os.getpid()}@%h"
        self.queues = queues  # none: the default queue only, as the Procfile's `worker`
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "apps.samplescope", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--pool", "prefork", "--without-gossip", "--without-mingle", "-n", self.name,
             *(["-Q", ",".join(self.queues)] if self.queues else [])],
            cwd=ROOT, env=worker_env(self.redis_url), stdout=self.log, stderr=subprocess.STDOUT,
        )
        from apps.samplescope.celery import app

        node = self.name.split("@")[0]
        wait_until(lambda: self.proc.poll() is None and any(node in name for reply in app.control.ping(timeout=0.5)
                                                            for name in reply),
                   timeout=60, interval=0.5, what=f"the Celery worker to answer (log: {self.log_path})")

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: no cleanup, no acks."""
        if self.proc and self.proc.poll() is None:
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def celery_worker(redis_server, django_db_setup, django_db_blocker, tmp_path_factory):
    worker = CeleryWorker(redis_server.url, tmp_path_factory.mktemp("celery") / "worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def batch_worker(redis_server, django_db_setup, django_db_blocker, tmp_path_factory):
    """The batch worker: a real `celery worker -Q batch`, the only one serving BATCH_TASK_QUEUE (the Procfile's
    `batch-worker`); `celery_worker` serves the default queue only."""
    from django.conf import settings as django_settings

    worker = CeleryWorker(redis_server.url, tmp_path_factory.mktemp("celery-batch") / "worker.log", name="batch",
                          queues=(django_settings.BATCH_TASK_QUEUE,))
    worker.start()
    yield worker
    worker.stop()


# --- Users and API --------------------------------------------------------------------------

def _with_every_role(user):
    """Most tests are about something else than roles: their users hold analyst, model manager and kb
    editor (apps/accounts/roles.py). Role tests use `plain_user`, who holds none."""
    from apps.accounts.services import user_roles_grant

    user_roles_grant(user=user)
    return user


@pytest.fixture
def user(django_user_model):
    return _with_every_role(django_user_model.objects.create_user(username="analyst", password="analyst-password-1"))


@pytest.fixture
def staff_user(django_user_model):
    return _with_every_role(
        django_user_model.objects.create_user(username="boss", password="boss-password-1", is_staff=True)
    )


@pytest.fixture
def plain_user(django_user_model):
    """A signed-in user with no role: every role-gated page and endpoint answers 403."""
    return django_user_model.objects.create_user(username="nobody", password="nobody-password-1")


@pytest.fixture
def api_token(user):
    from apps.accounts.services import api_token_create

    _, raw = api_token_create(user=user, name="tests")
    return raw


@pytest.fixture
def api_client(client, api_token):
    """Django's test client sending `Authorization: Bearer <token>`."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return client


# --- Browser --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


@pytest.fixture
def logged_in_page(page, user, live_server):
    """A page whose browser is logged in as `user` through the real login form."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "analyst-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)
    return page


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with no rate-limit counters (Redis when one is set, and the local fallback), and with no
    remembered full-data globs (the tests share one DATA_DIR: an earlier test's empty folder must not count)."""
    from apps.core.ratelimit import rate_limits_reset
    from apps.search.tables import full_data_checks_forget

    rate_limits_reset()
    full_data_checks_forget()
    yield
