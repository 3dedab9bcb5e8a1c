"""N clients (8) replay bench_search's workload against /api/search of a running server for S seconds; prints
requests/s, p50 and p95. A quick gauge for server settings (e.g. gunicorn processes x threads); the figures to
report come from `bench_search --clients`. Usage: scripts/load_clients.py PORT TOKEN SECONDS [CLIENTS]"""
import http.client
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apps.samples.bench.workload import english_words, search_workload
port, token, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 8
work = search_workload(count=120, seed=7, words=english_words()[0])
lat = []
stop = time.monotonic() + seconds
def client(n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = n * 15
    while time.monotonic() < stop:
        item = work[i % len(work)]; i += 1
        params = [(f"{c}__{o}", v) for c, o, v in item["filters"]] + [("limit", str(item["limit"]))]
        t = time.perf_counter()
        conn.request("GET", "/api/search?" + urllib.parse.urlencode(params), headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse(); r.read()
        lat.append((time.perf_counter() - t) * 1000)
ts = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
[t.start() for t in ts]; [t.join() for t in ts]
lat.sort()
print(len(lat), "req", round(len(lat) / seconds, 1), "rps", "p50", round(lat[len(lat)//2], 1), "p95", round(lat[int(len(lat)*0.95)], 1))
