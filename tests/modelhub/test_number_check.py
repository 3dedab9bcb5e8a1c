"""Issue 22: the preview's number test was a regex that backtracked quadratically on a run of digits (or
blanks), holding the GIL: 8,000 digits took 2.3 s and two 15 KB uploads froze both web workers.
`value_is_number` must read numbers as the regex did and answer any value in one pass."""
from __future__ import annotations

import contextlib
import random
import re
import signal
import time

import pytest

from apps.modelhub.services import BatchInputError, batch_csv_preview, value_is_number

# The regex it replaces: the reference for what counts as a number (fine on short values).
OLD_NUMBER_RE = re.compile(r"^\s*[-+]?(\d[\d,_]*\.?\d*|\.\d+)([eE][-+]?\d+)?\s*%?\s*$")
# Seconds: a watchdog, not a timing. Each call below takes milliseconds now; with the regex the first
# one ran for about a minute and a half (and Python's re checks for signals, so SIGALRM stops it).
WATCHDOG_SECONDS = 5


@contextlib.contextmanager
def watchdog(seconds: float):
    """Raise TimeoutError in the main thread after `seconds`; restores pytest-timeout's own SIGALRM timer."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: quadratic (or worse) backtracking")

    previous_handler = signal.signal(signal.SIGALRM, stop)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            left = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


@pytest.mark.parametrize("value", ["0", "12", " -3.5 ", "+7", ".5", "1.", "1,234,567", "1_000", "6.02e23",
                                   "1E-9", "12%", "12 %", "-0.5e+3 % ", "\u0661\u0662"])
def test_numbers_are_numbers(value):
    assert value_is_number(value) is True


@pytest.mark.parametrize("value", ["", " ", "abc", "12abc", "1e", "e5", ".", "-", "1.2.3", "1e5e3", ",1", "- 1",
                                   "%", "1%%", "12 apples", "0x1f", "²", "1 2"])
def test_words_are_not_numbers(value):
    assert value_is_number(value) is False


def test_it_agrees_with_the_old_regex_on_every_short_value():
    alphabet = "0123456789.,_eE+-% x\n\t\u00a0\u0661²"
    rnd = random.Random(22)
    for _ in range(50_000):
        value = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
        assert value_is_number(value) == bool(OLD_NUMBER_RE.match(value)), repr(value)


@pytest.mark.parametrize("value, expected", [
    ("1" * 50_000 + "x", False),  # the regex tried every split of the digits at every backtrack: ~90 s
    ("1" * 50_000, True),
    ("1" + " " * 50_000 + "x", False),  # blanks, % and blanks: the same quadratic split
    ("1," * 25_000 + "5.5e", False),
    ("9" * 2_000_000 + "%", True),
])
def test_a_long_run_of_digits_is_answered_in_one_pass(value, expected):
    with watchdog(WATCHDOG_SECONDS):
        assert value_is_number(value) is expected


def test_the_preview_of_a_hostile_csv_is_answered_in_one_pass():
    # Three 50,000-digit values ending in a letter: the old preview ran ~90 s on each, holding the GIL.
    rows = "".join(f"{i},{'7' * 50_000}x\n" for i in range(3))
    with watchdog(WATCHDOG_SECONDS):
        preview = batch_csv_preview(data=f"id,code\n{rows}".encode())
    columns = {c.name: c for c in preview.columns}
    assert columns["id"].numeric_only
    assert (columns["code"].filled, columns["code"].numeric) == (3, 0)
    assert preview.text_column == "code"


def test_a_csv_with_too_many_columns_is_refused_before_it_is_profiled():
    # Every column is profiled in Python: a 20 MB header of 2.7 million one-digit names took 12 s.
    header = ",".join(str(i) for i in range(1001))
    with pytest.raises(BatchInputError, match="1001 columns; the limit is 1000"):
        batch_csv_preview(data=f"{header}\n".encode())
    assert len(batch_csv_preview(data=",".join(str(i) for i in range(1000)).encode()).columns) == 1000


def test_the_csv_is_read_lazily_with_its_bom_and_a_cut_last_character():
    # A UTF-8 BOM and a slice that cut "é" in two: the preview drops the half character (the BOM is not a column).
    data = "\ufeffid,body\n1,first row\n2,second row é".encode()[:-1]
    preview = batch_csv_preview(data=data, partial=True)
    assert [c.name for c in preview.columns] == ["id", "body"] and preview.texts == ["first row"]
    with pytest.raises(BatchInputError, match="byte 7 is invalid"):  # counted from the file's first byte
        batch_csv_preview(data=b"\xef\xbb\xbfid,b\xffody\n1,x\n")
