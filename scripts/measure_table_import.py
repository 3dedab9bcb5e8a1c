"""Time to import a small table beside a large one, and whether the large table's files were touched.

    .venv/bin/python scripts/measure_table_import.py --checkout . --big-rows 1000000 --small-rows 50000

Runs the checkout's own `manage.py import_subset` (so the same script measures the code before and after a
change) on a fresh SEARCH_SUBSET_DIR under --workdir: first the large table `big`, then the small table `small`;
prints JSON: the seconds of each import (wall, and the child's CPU), and every file of the subset before and after
the small import with (inode, mtime, size), saying which of them the small import left untouched.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def _parquet(path: Path, rows: int, start: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    text = [" ".join(words[rng.integers(0, len(words), 12)]) + f" n{start + i}" for i in range(rows)]
    pq.write_table(pa.table({"id": np.arange(start, start + rows, dtype=np.int64), "text": text,
                             "label": rng.choice(["a", "b", "c"], rows)}), path, row_group_size=100_000)


def _files(root: Path) -> dict[str, list[int]]:
    return {str(p.relative_to(root)): [p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size]
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def _import(checkout: Path, env: dict, source: Path, table: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", "import_subset", str(source), "--table", table, "--key", "id"],
                          cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)
    return {"seconds": round(seconds, 2),
            "child_cpu_seconds": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, required=True, help="the repository whose manage.py runs")
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir, deleted after")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="measure-import-"))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        subset = workdir / "subset"
        shutil.rmtree(subset, ignore_errors=True)
        big, small = workdir / "big.parquet", workdir / "small.parquet"
        _parquet(big, args.big_rows, 0, 1)
        _parquet(small, args.small_rows, 10**9, 2)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.samplescope.settings.test",
               "DATA_DIR": str(workdir / "data"), "SEARCH_SUBSET_DIR": str(subset), "SEARCH_DUCKDB_THREADS": "2"}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.checkout, capture_output=True,
                                text=True).stdout.strip()
        result = {"checkout": str(args.checkout.resolve()), "commit": commit, "cpu_count": os.cpu_count(),
                  "load_average_before": os.getloadavg(), "big_rows": args.big_rows, "small_rows": args.small_rows}
        result["import_big"] = _import(args.checkout, env, big, "big")
        before = _files(subset)
        result["import_small_beside_big"] = _import(args.checkout, env, small, "small")
        after = _files(subset)
        result["files_before_small_import"] = before
        result["files_after_small_import"] = after
        result["untouched_by_small_import"] = sorted(name for name, stat in before.items() if after.get(name) == stat)
        result["new_file_bytes_outside_the_small_tables_folder"] = sum(
            stat[2] for name, stat in after.items() if name not in before and "small" not in name)
        result["load_average_after"] = os.getloadavg()
        print(json.dumps(result, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
