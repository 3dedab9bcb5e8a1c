"""Every CSV the app writes (the search export, the flags CSV, batch scoring output) goes through here, so a
cell a spreadsheet would run as a formula (CSV injection) is defused in one way everywhere.

OWASP's advice: a text cell starting with = + - @ tab or carriage return gets a leading `'`, which spreadsheets
show as text; we also treat the full-width forms of = + - @ the same. Numbers stay numbers: an int or float, and
text that is a plain number such as `-1.5` or `+3e2` (a spreadsheet reads it as that number, never a formula),
are written as they are.
"""
from __future__ import annotations

import csv
import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_safe(value):
    """The value to write for one cell: text that would start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class _SafeWriter:
    def __init__(self, writer):
        self._writer = writer

    def writerow(self, row):
        return self._writer.writerow([csv_safe(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def csv_writer(out, **kwargs) -> _SafeWriter:
    """csv.writer(out, **kwargs), with every cell passed through csv_safe."""
    return _SafeWriter(csv.writer(out, **kwargs))


class CsvDictWriter(csv.DictWriter):
    """csv.DictWriter with every cell, the header's too, passed through csv_safe."""

    def writerow(self, rowdict):
        return super().writerow({key: csv_safe(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts):
        for rowdict in rowdicts:
            self.writerow(rowdict)
