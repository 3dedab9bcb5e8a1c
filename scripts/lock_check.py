#!/usr/bin/env python3
"""Fails when this environment, or the requirements we ask for, drift from the locks.

Three checks, each listing what differs:
1. `pip freeze` of this interpreter equals requirements/local.lock plus requirements/models.txt
   (no package missing, none extra, none at another version; pip, setuptools and wheel are compared
   where a lock pins them, else left aside as `pip freeze` does);
2. every `name==version` asked for in requirements/*.txt is the version its lock holds (an edit to a
   requirements file without `make lock` fails here, not on the next fresh machine);
3. requirements/production.lock pins each of its packages at local.lock's version (the image runs
   what the tests ran).

Run by `make deps` after installing and by `make test` before the tests: `python scripts/lock_check.py`.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements"
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name → version for every `name==version` line of a requirements or lock file (no -r following)."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def frozen(*, locked: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                         check=True, capture_output=True, text=True).stdout
    installed = {}
    for line in out.splitlines():
        match = PIN.match(line)
        if match:
            installed[canonical(match.group(1))] = match.group(2)
        elif line.strip() and not line.startswith("#"):
            installed[line.strip()] = "(not from an index: " + line.strip() + ")"
    for tool in ("pip", "setuptools", "wheel"):  # the venv's own installer: checked only where a lock pins it
        if tool not in locked:
            installed.pop(tool, None)
    return installed


def differences(*, want: dict[str, str], have: dict[str, str], want_label: str, have_label: str) -> list[str]:
    lines = []
    for name in sorted(set(want) | set(have)):
        if name not in have:
            lines.append(f"  {name}=={want[name]} is in {want_label} but not in {have_label}")
        elif name not in want:
            lines.append(f"  {name}=={have[name]} is in {have_label} but not in {want_label}")
        elif want[name] != have[name]:
            lines.append(f"  {name}: {want_label} says {want[name]}, {have_label} has {have[name]}")
    return lines


def main() -> int:
    local, production = pins(REQUIREMENTS / "local.lock"), pins(REQUIREMENTS / "production.lock")
    models = pins(REQUIREMENTS / "models.txt")
    problems = differences(want={**local, **models}, have=frozen(locked={**local, **models}),
                           want_label="requirements/local.lock + models.txt", have_label="this .venv")
    for source in sorted(REQUIREMENTS.glob("*.txt")):
        lock = {**local, **models} if source.name != "production.txt" else production
        for name, version in pins(source).items():
            if lock.get(name) != version:
                problems.append(f"  requirements/{source.name} asks {name}=={version}, its lock has "
                                f"{lock.get(name, 'nothing')}: run `make lock`")
    for name, version in production.items():
        if local.get(name) != version:
            problems.append(f"  requirements/production.lock pins {name}=={version}, local.lock "
                            f"{local.get(name, 'nothing')}: run `make lock`")
    if problems:
        print("The environment or the requirements drift from the lock:", *problems, sep="\n", file=sys.stderr)
        print("Fix: `make lock` after editing requirements/*.txt; `rm -rf .venv && make deps` for a .venv "
              "that holds something else.", file=sys.stderr)
        return 1
    print(f"lock check: .venv holds exactly the {len(local) + len(models)} locked packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
