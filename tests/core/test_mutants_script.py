"""scripts/mutants.py (`make mutants`) on a tiny checkout of its own: a stale entry fails the run, a killed one
passes, a survivor fails, and a listed test that is gone fails the baseline instead of passing for a kill."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutants.py"


@pytest.fixture(scope="module")
def mutants():
    spec = importlib.util.spec_from_file_location("mutants_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def checkout(tmp_path):
    """A git checkout holding one function, its test, and the least Django settings pytest-django needs
    (mutants.py runs pytest with DJANGO_SETTINGS_MODULE=apps.samplescope.settings.test)."""
    root = tmp_path / "checkout"
    files = {
        "apps/__init__.py": "",
        "apps/samplescope/__init__.py": "",
        "apps/samplescope/settings/__init__.py": "",
        "apps/samplescope/settings/test.py": 'SECRET_KEY = "x"\nINSTALLED_APPS = []\nDATABASES = {}\nUSE_TZ = True\n',
        "calc.py": "def double(x):\n    return x * 2\n",
        "test_calc.py": "from calc import double\n\n\ndef test_double():\n    assert double(2) == 4\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def entry(mutant_id: str, original: str, replacement: str, tests: str = "test_calc.py") -> str:
    return textwrap.dedent(f"""
        [[mutant]]
        id = "{mutant_id}"
        description = "{mutant_id}"
        file = "calc.py"
        original = "{original}"
        replacement = "{replacement}"
        tests = ["{tests}"]
        """)


def run(mutants, checkout: Path, capsys, *entries: str, extra=()) -> tuple[int, str]:
    data = checkout.parent / "mutants.toml"
    data.write_text("".join(entries))
    code = mutants.main(["--root", str(checkout), "--data", str(data), "--timeout", "120", *extra])
    return code, capsys.readouterr().out


def test_a_killed_mutation_passes_and_the_summary_counts_and_times_it(mutants, checkout, capsys):
    code, out = run(mutants, checkout, capsys, entry("triples", "return x * 2", "return x * 3"))
    assert code == 0, out
    assert "baseline: exit 0" in out
    assert "1 killed, 0 survived, 0 not applicable, 0 errors, of 1 mutations in " in out
    assert (checkout / "calc.py").read_text() == "def double(x):\n    return x * 2\n"  # the checkout is never touched


def test_a_stale_entry_and_a_survivor_fail_the_run(mutants, checkout, capsys):
    code, out = run(mutants, checkout, capsys,
                    entry("stale", "return x * 4", "return x * 5"),  # the line is no longer there
                    entry("adds", "return x * 2", "return x + 2"),  # 2 + 2 == 2 * 2: the test cannot tell
                    extra=["--no-baseline"])
    assert code == 1, out
    assert "0 killed, 1 survived, 1 not applicable, 0 errors, of 2 mutations" in out
    assert "NOT APPLICABLE: LINE NOT FOUND IN CALC.PY stale" in out
    assert "SURVIVED adds" in out

    code, out = run(mutants, checkout, capsys, entry("stale", "return x * 4", "return x * 5"))
    assert code == 1, out  # alone, with nothing to run: still a failure, not a quiet success
    assert "0 killed, 0 survived, 1 not applicable" in out


def test_list_fails_on_a_stale_entry(mutants, checkout, capsys):
    code, out = run(mutants, checkout, capsys, entry("triples", "return x * 2", "return x * 3"), extra=["--list"])
    assert code == 0, out
    code, out = run(mutants, checkout, capsys, entry("stale", "return x * 4", "return x * 5"), extra=["--list"])
    assert code == 1 and "not applicable" in out


def test_a_listed_test_that_is_gone_fails_the_baseline(mutants, checkout, capsys):
    code, out = run(mutants, checkout, capsys,
                    entry("triples", "return x * 2", "return x * 3", tests="test_calc.py::test_renamed_away"))
    assert code == 1, out
    assert "baseline: test_calc.py::test_renamed_away" in out
    assert "killed" not in out


def test_entries_that_cannot_be_killed_or_repeat_another_are_refused(mutants, tmp_path):
    data = tmp_path / "mutants.toml"
    data.write_text(entry("same", "return x * 2", "  return x * 2  "))
    with pytest.raises(SystemExit, match="replaces its line with itself"):
        mutants.mutants_load(data)
    data.write_text(entry("one", "return x * 2", "return x * 3") + entry("two", "return x * 2", "return x * 3"))
    with pytest.raises(SystemExit, match="'two' repeats 'one'"):
        mutants.mutants_load(data)


def test_the_baseline_runs_each_listed_test_once(mutants):
    make = mutants.Mutant
    listed = [make(id="a", file="f", original="o", replacement="r", description="", tests=["t/a.py", "t/b.py::x"]),
              make(id="b", file="f", original="o", replacement="r", description="", tests=["t/a.py::y", "t/b.py::x"])]
    assert mutants.baseline_tests(listed) == ["t/a.py", "t/b.py::x"]  # t/a.py::y runs with its whole file


def test_the_first_failing_test_is_read_from_the_summary_not_from_a_captured_log(mutants):
    output = ("------------------------------ Captured log call -------------------------------\n"
              "ERROR    django.request:log.py:293 Service Unavailable: /healthz\n"
              "=========================== short test summary info ============================\n"
              "FAILED tests/core/test_healthz.py::test_details - assert 503 == 200\n")
    assert mutants.first_failure(output) == "tests/core/test_healthz.py::test_details"
