"""gunicorn's threaded worker (gthread), except that a connection takes a thread only once its request headers are in.

gthread hands a connection to a thread as soon as its first byte arrives, and the thread then reads the rest of
the headers with a blocking socket and no time limit. So a client sending its headers one byte a second holds a
thread for as long as it likes, and as many such clients as the server has threads (2 × 4 for `make run`) stop it
answering anyone (issue 22: "10 clients sending headers one byte at a time make it unresponsive").

Here the worker's main loop reads each new (or kept-alive) connection's bytes itself, without blocking, until the
blank line that ends the headers; only then does the connection go to the thread pool, the bytes already read
handed to gunicorn's own parser. A connection that has not sent its whole header block within
`WEB_HEADER_TIMEOUT` seconds (10) is closed, one whose header block passes `MAX_HEADER_BYTES` is answered 431.
Waiting connections cost a file descriptor and their bytes, not a thread; `worker_connections` bounds them per
process (apps/samplescope/gunicorn_conf.py). A slow request *body* is still read by a thread: in production the
reverse proxy (deploy/nginx.conf, required) buffers bodies and times slow clients out before they reach gunicorn.

Only plain HTTP/1.x is handled this way (TLS and HTTP/2 end at the proxy); with TLS or h2c configured the worker
reads headers as gthread does.

A process accepts new connections only while one of its threads is free. gthread accepts whatever arrives while
its threads are busy and queues the requests behind them, so with 8 processes of one thread (`make run` until
stop 32) a request could wait behind a slow search in one process while others sat idle, and 8 kept-alive
clients ended up 4, 2, 1, 1 on four processes. Here a busy process leaves new connections in the listen
backlog, where the next process to free a thread takes them: behind nginx, which opens a connection per
request, that is one queue for all processes, served first come, first served. A connection already kept alive
stays with its process.
"""
from __future__ import annotations

import errno
import os
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

HEADER_TIMEOUT_SECONDS = float(os.environ.get("WEB_HEADER_TIMEOUT", "10"))
# As nginx's default large_client_header_buffers (4 × 8 KiB) allows, with room: the request line and every header.
MAX_HEADER_BYTES = 64 * 1024
_END_OF_HEADERS = b"\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeaderBufferingThreadWorker(ThreadWorker):
    """gthread whose threads only ever see connections with complete request headers (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_conns: deque[TConn] = deque()  # waiting for their headers, oldest (first to time out) first
        self.requests_in_threads = 0  # handed to the thread pool and not finished: running or queued for a thread
        # TLS and h2c prior knowledge read the connection's first bytes themselves (neither is used here)
        self.buffers_headers = not self.cfg.is_ssl and self.cfg.http2_cleartext not in ("prior-knowledge", "both")

    def accept(self, listener):
        if not self.buffers_headers:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._headers_wait(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def set_accept_enabled(self, enabled):
        """Listen for new connections only while a thread is free (module docstring); gthread's loop asks for
        `enabled` whenever it has room for more connections."""
        super().set_accept_enabled(enabled and self.requests_in_threads < self.cfg.threads)

    def _accepting_update(self) -> None:
        self.set_accept_enabled(self.alive and self.nr_conns < self.worker_connections)

    def enqueue_req(self, conn):
        self.requests_in_threads += 1
        super().enqueue_req(conn)
        self._accepting_update()

    def finish_request(self, conn, fs):
        self.requests_in_threads -= 1
        super().finish_request(conn, fs)
        self._accepting_update()

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: its headers are read by this loop too."""
        if not self.buffers_headers:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._headers_wait(conn)

    def _headers_wait(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        conn.header_bytes = bytearray()
        conn.timeout = time.monotonic() + HEADER_TIMEOUT_SECONDS
        self.header_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        # Headers usually arrive with the connection: read them now, so that a request that takes this process's
        # last thread stops it accepting before it polls again, instead of one poll later.
        self._on_header_bytes(conn, None)

    def _on_header_bytes(self, conn: TConn, client) -> None:
        try:
            chunk = conn.sock.recv(16 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away before sending a whole request
            self._header_conn_close(conn)
            return
        searched_to = max(0, len(conn.header_bytes) - len(_END_OF_HEADERS) + 1)
        conn.header_bytes += chunk
        complete = conn.header_bytes.find(_END_OF_HEADERS, searched_to) != -1
        if not complete and len(conn.header_bytes) > MAX_HEADER_BYTES:
            try:
                conn.sock.send(_TOO_LARGE)
            except OSError:
                pass
            self._header_conn_close(conn)
            return
        if complete:
            self.poller.unregister(conn.sock)
            self.header_conns.remove(conn)
            conn.data_ready = True  # gthread's handle() must not wait for data: it is here
            self.enqueue_req(conn)

    def _header_conn_close(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.header_conns.remove(conn)
        except ValueError:
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Also close the connections that did not send their headers in time (called about once a second)."""
        super().murder_pending()
        now = time.monotonic()
        while self.header_conns and self.header_conns[0].timeout <= now:
            conn = self.header_conns[0]
            self.log.info("Closing a connection from %s: no complete request headers within %.0f s",
                          conn.client, HEADER_TIMEOUT_SECONDS)
            self._header_conn_close(conn)

    def handle(self, conn):
        """In a thread: give gunicorn's parser the header bytes the main loop read, then serve as gthread does."""
        buffered = getattr(conn, "header_bytes", None)
        if buffered:
            conn.header_bytes = None
            conn.sock.setblocking(True)
            conn.init()  # plain HTTP/1.x: creates the parser once, reading nothing
            conn.parser.unreader.unread(bytes(buffered))
        return super().handle(conn)
