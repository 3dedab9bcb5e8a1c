"""The web server's access line (apps/samplescope/gunicorn_logger.py): the Apache combined line plus the time
taken, built from its own atoms; any other format gets gunicorn's."""
from __future__ import annotations

import datetime as dt
import logging
import os

from gunicorn.config import Config

from apps.samplescope import gunicorn_conf
from apps.samplescope.gunicorn_logger import ACCESS_FORMAT, AccessLineLogger


class _Response:
    status = "200 OK"
    sent = 1234
    headers = [("Content-Type", "application/json")]


class _Request:
    headers = [("X-TEST", "from-the-header")]


ENVIRON = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/api/search?text__contains=foo",
           "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "curl/8", "PATH_INFO": "/api/search"}


def _line(access_format: str, caplog) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", access_format)
    logger = AccessLineLogger(cfg)
    logger.access_log.propagate = True  # let caplog see it
    with caplog.at_level(logging.INFO, logger="gunicorn.access"):
        logger.access(_Response(), _Request(), ENVIRON, dt.timedelta(seconds=1, microseconds=234_567))
    return caplog.records[-1].getMessage()


def test_make_run_uses_the_lean_access_line():
    assert gunicorn_conf.logger_class == "apps.samplescope.gunicorn_logger.AccessLineLogger"
    assert gunicorn_conf.access_log_format == ACCESS_FORMAT


def test_the_access_line_is_apaches_combined_line_and_the_time_taken(caplog):
    line = _line(ACCESS_FORMAT, caplog)
    assert line.startswith("10.0.0.7 - - [")
    assert line.endswith('] "GET /api/search?text__contains=foo HTTP/1.1" 200 1234 "-" "curl/8" 1234ms')


def test_another_format_gets_gunicorns_atoms(caplog):
    assert _line("%(h)s %({x-test}i)s %(U)s", caplog) == "10.0.0.7 from-the-header /api/search"


def test_the_web_servers_searches_run_on_one_duckdb_thread_unless_told(monkeypatch):
    monkeypatch.setenv("SEARCH_DUCKDB_THREADS", "")  # recorded, so the test leaves the environment as it found it
    monkeypatch.delenv("SEARCH_DUCKDB_THREADS")
    gunicorn_conf.on_starting(None)
    assert os.environ["SEARCH_DUCKDB_THREADS"] == "1"
    monkeypatch.setenv("SEARCH_DUCKDB_THREADS", "3")
    gunicorn_conf.on_starting(None)
    assert os.environ["SEARCH_DUCKDB_THREADS"] == "3"
