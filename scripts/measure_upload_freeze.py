#!/usr/bin/env python
"""Issue 22: do hostile CSV uploads freeze the web server? N clients upload a CSV of digits (rows of 60,000
digits and a letter: the worst case of the number regex the batch preview used, ~2 min a value) to the batch
preview endpoint, or to the batch upload itself, while another process times /healthz every 50 ms.

Starts no server: point it at one started as `make run` starts it (scripts/run.sh: gunicorn with
apps/samplescope/gunicorn_conf.py, the workers, beat, its own Redis), with the demo login, e.g.

    DATA_DIR=/tmp/m PORT=8765 REDIS_URL=redis://127.0.0.1:6399/0 scripts/run.sh   # after migrate, setup_demo
    .venv/bin/python scripts/measure_upload_freeze.py http://127.0.0.1:8765 --uploads 4 --mb 20 --duration 20
    .venv/bin/python scripts/measure_upload_freeze.py http://127.0.0.1:8765 --endpoint batch

--duration S: each client uploads again and again for S seconds (0: once). --cap S: stop waiting for the
uploads after S seconds (a frozen server never answers them). The batch endpoint queues a scoring job per
upload and is rate-limited (RATE_LIMIT_BATCH_PER_MINUTE): use it once, not with --duration.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time

import requests
from urllib3 import encode_multipart_formdata


def login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    response = session.post(f"{base}/accounts/login/", timeout=30, allow_redirects=False,
                            data={"username": username, "password": password,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                            headers={"Referer": f"{base}/accounts/login/"})
    if response.status_code != 302:
        raise SystemExit(f"login failed: HTTP {response.status_code}")
    return session


def health_poll(base: str, stop, out) -> None:
    """In a process of its own, so the client's upload threads never delay its timings."""
    session, samples = requests.Session(), []
    while not stop.is_set():
        started = time.perf_counter()
        try:
            status = session.get(f"{base}/healthz", timeout=300).status_code
        except requests.RequestException:
            status = -1
        samples.append((started, time.perf_counter() - started, status))
        time.sleep(0.05)
    out.send(samples)


def summary(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"/healthz {name}: no answer at all"
    ms = sorted(s * 1000 for s in seconds)
    return (f"/healthz {name}: n={len(ms)} p50={statistics.median(ms):.1f} ms "
            f"p95={ms[int(0.95 * (len(ms) - 1))]:.1f} ms max={ms[-1]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the server, e.g. http://127.0.0.1:8765")
    parser.add_argument("--uploads", type=int, default=4, help="concurrent clients")
    parser.add_argument("--mb", type=float, default=20, help="size of the CSV")
    parser.add_argument("--duration", type=float, default=0, help="seconds each client keeps uploading (0: once)")
    parser.add_argument("--cap", type=float, default=120, help="seconds to wait for the uploads at most")
    parser.add_argument("--endpoint", choices=["preview", "batch"], default="preview",
                        help="preview: /models/<m>/batch/preview/ (profiles the first 64 KB); batch: /models/<m>/batch/ "
                             "(profiles the whole file and queues a job)")
    parser.add_argument("--model", default="tfidf-logreg")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="samplescope-demo")
    args = parser.parse_args()

    row = "7" * 60_000 + "x\n"
    data = ("code\n" + row * ((int(args.mb * 2**20) - 5) // len(row))).encode()
    print(f"CSV: {len(data) / 2**20:.1f} MB, {data.count(b'x')} rows of 60,000 digits and an x")
    body, content_type = encode_multipart_formdata(
        {"file": ("digits.csv", data, "text/csv"), "text_column": "", "partial": "on"})
    url = f"{args.base}/models/{args.model}/batch/" + ("preview/" if args.endpoint == "preview" else "")
    sessions = [login(args.base, args.username, args.password) for _ in range(args.uploads)]
    uploads: list[tuple[int, float, int, str]] = []

    def upload_once(i: int, session: requests.Session) -> None:
        started = time.perf_counter()
        try:
            response = session.post(url, data=body, timeout=args.cap + 600, allow_redirects=False, headers={
                "Content-Type": content_type, "X-CSRFToken": session.cookies["csrftoken"],
                "Referer": f"{args.base}/models/"})
            status, reply = response.status_code, response.text
        except requests.RequestException as exc:
            status, reply = -1, str(exc)
        uploads.append((i, time.perf_counter() - started, status, reply))

    def client(i: int, session: requests.Session) -> None:
        until = time.perf_counter() + args.duration
        upload_once(i, session)
        while time.perf_counter() < until:
            upload_once(i, session)

    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    poller = multiprocessing.Process(target=health_poll, args=(args.base, stop, send), daemon=True)
    poller.start()
    time.sleep(1.0)
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i, s), daemon=True) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, args.cap - (time.perf_counter() - started)))
    ended = time.perf_counter()
    stop.set()
    health = receive.recv()  # waits for the /healthz request in flight, however long it takes
    poller.join(30)

    print(f"{args.uploads} clients x {len(data) / 2**20:.1f} MB to {url[len(args.base):]}, {ended - started:.2f} s")
    by_status: dict[int, list[float]] = {}
    for _, seconds, status, reply in uploads:
        by_status.setdefault(status, []).append(seconds)
    for status, times in sorted(by_status.items()):
        print(f"  HTTP {status}: {len(times)} uploads, median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    running = sum(thread.is_alive() for thread in threads)
    if running:
        print(f"  {running} upload(s) still unanswered after {args.cap:.0f} s")
    print(summary("before", [d for t, d, _ in health if t < started]))
    print(summary("during", [d for t, d, _ in health if started <= t < ended]))
    print("/healthz not 200:", sum(1 for *_, status in health if status != 200))


if __name__ == "__main__":
    main()
