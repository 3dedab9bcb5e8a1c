"""`make run`'s web server (the Procfile's gunicorn command, apps/samplescope/gunicorn_conf.py) against clients that
send their request headers one byte a second (slowloris): it must keep answering everyone else."""
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SLOW_CLIENTS = 10


def _procfile_web_command(port: int) -> list[str]:
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    command = line.partition(":")[2].replace("$PORT", str(port))
    command = re.sub(r"\$\{(WEB_WORKERS|WEB_THREADS):-(\d+)\}", r"\2", command)  # make run's defaults
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    return argv


@pytest.fixture
def make_run_web_server(tmp_path):
    port = free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="apps.samplescope.settings.local", DATA_DIR=str(tmp_path / "data"),
               REDIS_URL="redis://127.0.0.1:1/0", WEB_HEADER_TIMEOUT="10")
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(_procfile_web_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def answering():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
        except OSError:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
            return False

    wait_until(answering, timeout=90, what="gunicorn answering /healthz")
    yield port
    server.terminate()
    server.wait(30)
    log.close()


class SlowlorisClient(threading.Thread):
    """Sends a request's headers one byte a second and never finishes them; reconnects when cut off."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop, self.connections, self.bytes_sent = port, stop, 0, 0

    def run(self):
        header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.connections += 1
                    for byte in header:
                        if self.stop.wait(1.0):
                            return
                        sock.sendall(bytes([byte]))
                        self.bytes_sent += 1
            except OSError:
                time.sleep(0.2)  # closed by the server: come back, as an attacker would


def _healthz_seconds(port: int) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200 and response.read() == b'{"status": "ok"}'
    return time.monotonic() - started


def test_ten_slow_header_clients_do_not_stall_the_server(make_run_web_server):
    port = make_run_web_server
    stop = threading.Event()
    clients = [SlowlorisClient(port, stop) for _ in range(SLOW_CLIENTS)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: all(c.bytes_sent >= 2 for c in clients), timeout=30, what="every slow client sending")
        # Every slow connection has sent bytes, so plain gthread has given each one a thread (2 × 4 < 10): at
        # least one process has none left, and about every other request landed on it and timed out. Everyone
        # else must still get answers (5 s is a generous bound: they take milliseconds).
        for _ in range(10):
            _healthz_seconds(port)
            time.sleep(0.2)
        # and still after the slow clients were cut off and came back (header timeout 10 s)
        wait_until(lambda: sum(c.connections for c in clients) > SLOW_CLIENTS, timeout=40,
                   what="the server closing connections whose headers took over 10 s")
        for _ in range(5):
            _healthz_seconds(port)
    finally:
        stop.set()


def test_a_client_that_sends_whole_requests_slowly_but_within_the_timeout_is_served(make_run_web_server):
    """The header timeout closes only the too slow: a request whose headers come in pieces is served."""
    port = make_run_web_server
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in (request[:10], request[10:30], request[30:]):
            sock.sendall(piece)
            time.sleep(0.5)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status": "ok"}')


def test_oversized_headers_are_refused(make_run_web_server):
    port = make_run_web_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # just over 64 KiB, no end of headers: the server reads it all, then answers
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 66_000)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431")


def test_kept_alive_connections_still_serve_one_request_after_another(make_run_web_server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", make_run_web_server, timeout=10)
    try:
        for _ in range(3):  # the same socket each time (gunicorn's keepalive is 2 s)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200 and response.read() == b'{"status": "ok"}'
            assert response.getheader("Connection", "").lower() != "close"
    finally:
        connection.close()
