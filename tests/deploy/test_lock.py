"""The same install everywhere: every package is pinned with hashes in a lock, and drift fails."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"


def _lock_check():
    spec = importlib.util.spec_from_file_location("lock_check", ROOT / "scripts" / "lock_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entries(path: Path) -> list[str]:
    """A lock's requirement entries, each with its continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_locked_package_has_an_exact_version_and_hashes():
    for name in ("local.lock", "production.lock", "models.txt"):
        entries = _entries(REQUIREMENTS / name)
        assert entries, name
        for entry in entries:
            assert re.match(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?==\S+ ", entry), (name, entry)
            assert "--hash=sha256:" in entry, (name, entry)


def test_botocore_is_locked_at_the_version_moto_serves():
    local = _lock_check().pins(REQUIREMENTS / "local.lock")
    # botocore 1.44.18 describes Athena as rest-json; moto 5.2.5 answers it "404 Not yet implemented".
    assert local["botocore"] == "1.44.5"
    assert local["boto3"] == "1.44.5"
    assert local["moto"] == "5.2.5"


def test_this_environment_equals_the_lock():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock_check.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "holds exactly" in result.stdout


def test_drift_is_reported_package_by_package():
    check = _lock_check()
    lines = check.differences(want={"botocore": "1.44.5", "moto": "5.2.5"},
                              have={"botocore": "1.44.18", "extra": "1.0"},
                              want_label="lock", have_label="venv")
    assert lines == [
        "  botocore: lock says 1.44.5, venv has 1.44.18",
        "  extra==1.0 is in venv but not in lock",
        "  moto==5.2.5 is in lock but not in venv",
    ]
    assert check.differences(want={"a": "1"}, have={"a": "1"}, want_label="l", have_label="v") == []


def test_installs_go_through_the_lock_with_hashes_checked():
    makefile = (ROOT / "Makefile").read_text()
    assert "install -q --require-hashes -r requirements/local.lock" in makefile
    assert "-r requirements/local.txt" not in makefile.split("lock: deps")[0]  # no fresh resolution on install
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/production.lock" in dockerfile
    assert "requirements/production.txt" not in dockerfile
    test_target = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "scripts/lock_check.py" in test_target
