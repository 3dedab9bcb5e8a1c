#!/usr/bin/env python
"""A small mutation check: do the tests fail when the code breaks?

Reads scripts/mutants.toml (one [[mutant]] table per mutation: id, file, original line,
replacement, tests, description), copies the checked-out tree (tracked and untracked-but-not-
ignored files, as `git ls-files` lists them) to a temporary folder with `.venv` symlinked, then
for each mutation: replaces that one line, runs only the listed tests with `pytest -x -q`, and
puts the line back. A mutation is *killed* when the tests fail and *survives* when they pass.

    python scripts/mutants.py                 # every mutation (what `make mutants` runs)
    python scripts/mutants.py --only budget-ignores-todays-spend,claim-no-takeover
    python scripts/mutants.py --list          # what would run, and whether each line is found

`file` may be a list of paths where the code may live (a module about to move): the first that
holds the line is mutated. The original line is matched after stripping surrounding whitespace; the replacement keeps the
original's indentation. For a line that occurs several times, `after = "def mention_add("` picks
the first match after the first line containing that text, and `before = "def f("` the last
match before it. A line that is not found (the code moved or changed) is reported as
"not applicable: line not found", never as a crash, and fails the run: a stale entry must be
updated, it cannot pass for killed. An entry whose replacement is its original line, or that repeats
another entry's file, line, replacement and anchors, is refused when the file is read.

Before the mutations, every test the entries list (the exact node ids, not just their files) runs
once unmutated (the baseline): a mutation can only be called killed if its own tests pass without
it, and a listed test that no longer exists fails the baseline. The summary counts the killed, the
survivors, the not applicable and the errors, and gives the run's time.

Exit status: 0 when every mutation was found and killed; 1 when one survived, was not applicable
(its line, anchor or tests are gone), errored, or the baseline failed. `--list` exits 1 when a line
is not found, so it doubles as a quick check for stale entries.
"""
from __future__ import annotations

import argparse
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "scripts" / "mutants.toml"


@dataclass
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    tests: list[str]
    description: str
    after: str = ""
    before: str = ""
    candidates: list[str] = field(default_factory=list)
    killed_by: str = ""  # `file` may list where the code may live
    status: str = "not run"
    detail: str = ""
    seconds: float = 0.0
    line_no: int | None = field(default=None)


def mutants_load(path: Path) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    mutants = []
    seen = set()
    breaks: dict[tuple, str] = {}  # (files, original, replacement, after, before) -> id: one entry per break
    for number, entry in enumerate(data.get("mutant", []), start=1):
        missing = [k for k in ("id", "file", "original", "replacement", "tests", "description") if k not in entry]
        if missing:
            raise SystemExit(f"{path}: mutant #{number} lacks {', '.join(missing)}")
        if entry["id"] in seen:
            raise SystemExit(f"{path}: duplicate mutant id {entry['id']!r}")
        seen.add(entry["id"])
        if entry["original"].strip() == entry["replacement"].strip():
            raise SystemExit(f"{path}: mutant {entry['id']!r} replaces its line with itself (it can never be killed)")
        tests = entry["tests"]
        files = entry["file"] if isinstance(entry["file"], list) else [entry["file"]]
        same = (tuple(files), entry["original"].strip(), entry["replacement"].strip(), entry.get("after", ""),
                entry.get("before", ""))
        if same in breaks:
            raise SystemExit(f"{path}: mutant {entry['id']!r} repeats {breaks[same]!r} (same line, same replacement)")
        breaks[same] = entry["id"]
        mutants.append(Mutant(id=entry["id"], file=files[0], candidates=files, original=entry["original"],
                              replacement=entry["replacement"], tests=[tests] if isinstance(tests, str) else list(tests),
                              description=entry["description"], after=entry.get("after", ""),
                              before=entry.get("before", "")))
    return mutants


def locate(mutant: Mutant, text: str) -> tuple[int | None, str]:
    """(index of the line to mutate, "") or (None, why not applicable)."""
    lines = text.splitlines(keepends=True)
    start = 0
    if mutant.after:
        anchors = [i for i, line in enumerate(lines) if mutant.after in line]
        if not anchors:
            return None, f"not applicable: anchor {mutant.after!r} not found"
        start = anchors[0]
    end = len(lines)
    if mutant.before:
        anchors = [i for i in range(start, len(lines)) if mutant.before in lines[i]]
        if not anchors:
            return None, f"not applicable: anchor {mutant.before!r} not found"
        end = anchors[0]
    wanted = mutant.original.strip()
    matches = [i for i in range(start, end) if lines[i].strip() == wanted]
    if not matches:
        return None, "not applicable: line not found"
    if mutant.before:
        return matches[-1], ""
    if not mutant.after and len(matches) > 1:
        return None, f"not applicable: line found {len(matches)} times (add `after` or `before` to pick one)"
    return matches[0], ""


def resolve(mutant: Mutant, root: Path) -> tuple[int | None, str]:
    """Pick the first of the mutant's candidate files that holds its line; set mutant.file to it."""
    reasons = []
    for name in mutant.candidates or [mutant.file]:
        path = root / name
        if not path.is_file():
            reasons.append(f"no file {name}")
            continue
        index, why = locate(mutant, path.read_text())
        if index is not None:
            mutant.file = name
            return index, ""
        reasons.append(f"{why.removeprefix('not applicable: ')} in {name}")
    if all(r.startswith("no file") for r in reasons):
        return None, f"not applicable: line not found ({'; '.join(reasons)})"
    found = [r for r in reasons if not r.startswith("no file")]
    return None, f"not applicable: {'; '.join(found)}"


def tree_copy(destination: Path, source_root: Path = ROOT) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=source_root,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = source_root / name
        if name == ".venv" or not source.is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    venv = source_root / ".venv"
    if venv.exists():
        (destination / ".venv").symlink_to(venv.resolve())


def pytest_run(*, tree: Path, tests: list[str], scratch: Path, timeout: int) -> tuple[int, str, float]:
    """Run pytest on `tests` in `tree` with a DATA_DIR and basetemp of its own; (exit code, output tail, seconds)."""
    scratch.mkdir(parents=True)
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="apps.samplescope.settings.test", DATA_DIR=str(scratch / "data"),
               PYTHONDONTWRITEBYTECODE="1")
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    python = tree / ".venv" / "bin" / "python"
    command = [str(python if python.exists() else sys.executable), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               f"--basetemp={scratch / 'pytest'}", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        output = f"timed out after {timeout}s\n" + ((exc.stdout or b"").decode(errors="replace")
                                                     if isinstance(exc.stdout, bytes) else (exc.stdout or ""))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return code, output, time.monotonic() - started


def baseline_tests(mutants: list[Mutant]) -> list[str]:
    """Every test the mutants list, once: whole files, and node ids in files not listed whole (so a node id
    that no longer exists fails the baseline instead of hiding in its file)."""
    wanted = sorted({t for m in mutants for t in m.tests})
    whole = {t for t in wanted if "::" not in t}
    return [t for t in wanted if "::" not in t or t.split("::")[0] not in whole]


def first_failure(output: str) -> str:
    """The test that failed first (pytest's short summary: "FAILED path::name - message"). Only the summary is
    read: a captured log line ("ERROR    django.request:log.py:…") is no test."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if "short test summary info" in line]
    for line in lines[starts[-1] + 1:] if starts else lines:
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ", 1)[0].strip()
    return ""


def last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def table_print(mutants: list[Mutant], out=sys.stdout) -> None:
    headers = ("mutant", "where", "result", "s", "first failing test")
    rows = [(m.id, f"{m.file}:{m.line_no + 1}" if m.line_no is not None else m.file, m.status, f"{m.seconds:.0f}",
             m.killed_by.removeprefix("tests/")) for m in mutants]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the mutations (TOML)")
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--list", action="store_true", help="list the mutations and whether their lines are found")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the test files")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per pytest run (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy of the tree")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to copy and mutate (default: this one)")
    args = parser.parse_args(argv)
    root_dir = args.root.resolve()

    mutants = mutants_load(args.data)
    if args.only:
        wanted = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            parser.error(f"unknown mutant ids: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.id in wanted]

    if args.list:
        stale = 0
        for m in mutants:
            index, why = resolve(m, root_dir)
            stale += index is None
            where = f"{m.file}:{index + 1}" if index is not None else f"{m.file} ({why})"
            print(f"{m.id:40} {where}\n    {m.description}\n    tests: {' '.join(m.tests)}")
        if stale:
            print(f"\n{stale} of {len(mutants)} mutations not applicable: update their entries", file=sys.stderr)
        return 1 if stale else 0

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="samplescope-mutants-"))
    tree = root / "tree"
    try:
        tree_copy(tree, source_root=root_dir)
        print(f"copied the tree to {tree}", flush=True)
        runnable = []
        for m in mutants:
            index, why = resolve(m, tree)
            if index is None:
                m.status = why
                continue
            m.line_no = index
            present = [t for t in m.tests if (tree / t.split("::")[0]).exists()]
            if not present:
                m.status = f"not applicable: none of its tests exist ({' '.join(m.tests)})"
                continue
            m.tests = present  # test files listed for where the code may move, and not there yet, are skipped
            runnable.append(m)

        if runnable and not args.no_baseline:
            tests = baseline_tests(runnable)
            print(f"baseline: {' '.join(tests)}", flush=True)
            code, output, seconds = pytest_run(tree=tree, tests=tests, scratch=root / "baseline",
                                               timeout=args.timeout * 2)
            print(f"baseline: exit {code} in {seconds:.0f}s: {last_line(output)}", flush=True)
            if code != 0:
                print(output[-4000:], file=sys.stderr)
                print("the tests fail without any mutation: fix that first", file=sys.stderr)
                return 1

        for number, m in enumerate(runnable, start=1):
            path = tree / m.file
            original_text = path.read_text()
            lines = original_text.splitlines(keepends=True)
            line = lines[m.line_no]
            indent = line[: len(line) - len(line.lstrip())]
            ending = line[len(line.rstrip("\r\n")):]
            lines[m.line_no] = indent + m.replacement.strip() + ending
            path.write_text("".join(lines))
            try:
                if path.suffix == ".py":
                    try:
                        py_compile.compile(str(path), cfile=str(root / "compiled.pyc"), doraise=True)
                    except py_compile.PyCompileError as exc:
                        m.status = "error: the mutated file does not compile"
                        m.detail = str(exc)
                        continue
                code, output, m.seconds = pytest_run(tree=tree, tests=m.tests, scratch=root / f"run-{number}",
                                                     timeout=args.timeout)
                if code == 1:
                    m.status = "killed"
                    m.killed_by = first_failure(output)
                elif code == 0:
                    m.status = "SURVIVED"
                elif code == -1:
                    m.status = "error: timed out"
                else:
                    m.status = f"error: pytest exit {code}"
                m.detail = last_line(output)
            finally:
                path.write_text(original_text)
            print(f"[{number}/{len(runnable)}] {m.id}: {m.status} ({m.seconds:.0f}s) {m.detail}"
                  + (f" <- {m.killed_by}" if m.killed_by else ""), flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    elapsed = time.monotonic() - started
    print()
    table_print(mutants)
    killed = sum(m.status == "killed" for m in mutants)
    survived = [m for m in mutants if m.status == "SURVIVED"]
    other = [m for m in mutants if m.status not in ("killed", "SURVIVED")]
    stale = sum(m.status.startswith("not applicable") for m in other)
    print(f"\n{killed} killed, {len(survived)} survived, {stale} not applicable, {len(other) - stale} errors, "
          f"of {len(mutants)} mutations in {elapsed:.0f}s ({elapsed / 60:.1f} min)")
    for m in survived:
        print(f"SURVIVED {m.id}: {m.description}\n    {m.file}: {m.original.strip()!r} -> {m.replacement.strip()!r}")
    for m in other:
        print(f"{m.status.upper()} {m.id}: {m.description} ({m.file}) {m.detail}")
    return 0 if not survived and not other else 1


if __name__ == "__main__":
    sys.exit(main())
