"""A WSGI app for testing gunicorn's worker (apps/samplescope/gunicorn_worker.py) without Django: every answer is
the pid of the process that served it; `/slow?seconds=S` answers after S seconds."""
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["3"])[0]))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
