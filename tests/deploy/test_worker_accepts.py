"""The web server's worker (apps/samplescope/gunicorn_worker.py) takes new connections only while it has a free
thread: a request never waits behind a slow one in a busy process while another process is idle."""
import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER = "apps.samplescope.gunicorn_worker.HeaderBufferingThreadWorker"


@pytest.fixture
def probe_server(tmp_path):
    """gunicorn with the app's worker class, 2 processes of 1 thread, serving tests/deploy/wsgi_probe.py."""
    servers = []

    def start(*, worker_class: str = WORKER, workers: int = 2, threads: int = 1) -> int:
        port = free_port()
        log = (tmp_path / f"gunicorn-{port}.log").open("w")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "tests.deploy.wsgi_probe:app",
             "--bind", f"127.0.0.1:{port}", "--worker-class", worker_class,
             "--workers", str(workers), "--threads", str(threads)],
            cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        servers.append((server, log))
        log_path = tmp_path / f"gunicorn-{port}.log"

        def every_worker_answering() -> bool:  # each process booted (then listening: the app loads at once), one answer
            assert server.poll() is None, log_path.read_text()[-3000:]
            if log_path.read_text().count("Booting worker") < workers:
                return False
            try:
                return bool(_get(port, "/")[0])
            except OSError:
                return False

        wait_until(every_worker_answering, timeout=60, what="every gunicorn worker answering")
        return port

    yield start
    for server, log in servers:
        server.terminate()
        server.wait(30)
        log.close()


def _get(port: int, path: str) -> tuple[str, float]:
    """One request on a new connection (as nginx sends each request): the pid that answered and the seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode(), time.monotonic() - started
    finally:
        connection.close()


def _requests_during_a_slow_one(port: int) -> tuple[str, list[tuple[str, float]]]:
    slow: list[tuple[str, float]] = []
    thread = threading.Thread(target=lambda: slow.append(_get(port, "/slow?seconds=3")))
    thread.start()
    time.sleep(0.5)  # the slow request holds its process's only thread
    quick = [_get(port, "/") for _ in range(12)]
    thread.join()
    return slow[0][0], quick


def test_a_process_whose_threads_are_busy_takes_no_new_connection(probe_server):
    busy_pid, quick = _requests_during_a_slow_one(probe_server())
    assert all(pid != busy_pid for pid, _ in quick), quick
    assert max(seconds for _, seconds in quick) < 1.5, quick


def test_plain_gthread_queues_new_connections_behind_the_slow_request(probe_server):
    """What the worker fixes (and proof that the test above can fail): gthread accepts while its thread is busy."""
    busy_pid, quick = _requests_during_a_slow_one(probe_server(worker_class="gthread"))
    assert any(pid == busy_pid and seconds > 1.5 for pid, seconds in quick), quick


def test_a_process_with_a_free_thread_keeps_accepting(probe_server):
    """Busy is all threads taken, not one: with 2 threads a process serves a quick request beside a slow one."""
    port = probe_server(workers=1, threads=2)
    busy_pid, quick = _requests_during_a_slow_one(port)
    assert {pid for pid, _ in quick} == {busy_pid} and max(seconds for _, seconds in quick) < 1.5, quick
