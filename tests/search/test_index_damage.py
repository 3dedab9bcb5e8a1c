"""A damaged or stale word index never costs rows or a 500 (issue 23, items 2-3): every file kind of an index
folder, zeroed, truncated or with bytes flipped (one word's postings included), and searches through the HTTP
client (/api/search and /samples/) return exactly the rows a plain DuckDB query returns; /healthz?details=1
names the table; `reindex_subset` makes the index serve again. A tokenizer other than the one that built the
index makes it stale: scan, named, repaired by a reindex."""
from __future__ import annotations

import io
import json
import logging
import re
import shutil
import zlib

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.search import selectors, word_index
from apps.search.query import Filter, SearchQuery
from apps.search.selectors import search_plan
from apps.search.services import subset_table_write
from apps.search.store import table_current_path, table_snapshot
from apps.search.tables import table_spec_get

pytestmark = pytest.mark.django_db

TABLE = "dmg"
ROWS = 4000
RARE = "zyxwvq"  # in 5 rows spread over the table, the last one included: its postings are an ARRAY
RARE_ROWS = [100, 1500, 2200, 3100, ROWS - 1]
DESCRIPTION = {"key": "id", "searchable": "*", "shown": ["id", "body", "label"]}
VOCABULARY = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
              "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"]


def _table() -> pa.Table:
    rng = np.random.default_rng(23)
    bodies = []
    for i in range(ROWS):
        words = [VOCABULARY[j] for j in rng.integers(0, len(VOCABULARY), 8)] + [f"w{i:05d}x", f"tag{i % 397}z"]
        if i in RARE_ROWS:
            words.insert(3, RARE)
        bodies.append(" ".join(words))
    return pa.table({"id": pa.array(range(ROWS), type=pa.int64()), "body": bodies,
                     "label": pa.array([["a", "b", "c"][i % 3] for i in range(ROWS)])})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One subset with an index, built once; each test searches a copy of it."""
    folder = tmp_path_factory.mktemp("pristine") / "subset"
    with override_settings(SEARCH_SUBSET_DIR=folder):
        path = subset_table_write(name=TABLE, arrow=_table(), description=DESCRIPTION, keep_other_tables=False,
                                  stdout=io.StringIO())
    return folder, path.name


@pytest.fixture
def subset(pristine, settings, tmp_path, monkeypatch):
    folder, name = pristine
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    shutil.copytree(folder, settings.SEARCH_SUBSET_DIR)
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)  # the planner reads candidates by position at this size
    path = table_current_path(table=TABLE)
    assert path.name == name
    yield path
    word_index._open.pop(path, None)


def _files(path) -> dict[str, str]:
    """Every file of the table's index folder: name -> kind (from the meta; the meta itself too)."""
    meta = json.loads((word_index.index_dir_for(path) / f"{TABLE}.json").read_text())
    return {**{name: entry["kind"] for name, entry in meta["files"].items()}, f"{TABLE}.json": "meta"}


def _name_of(path, kind: str) -> str:
    return next(name for name, found in _files(path).items() if found == kind)


def test_every_file_kind_is_in_the_folder_with_its_magic_and_version(subset):
    """The damage tests below cover every kind of file the index writes, and each begins with the header."""
    files = _files(subset)
    assert set(files.values()) == set(word_index.FILE_KINDS), files
    folder = word_index.index_dir_for(subset)
    assert {p.name for p in folder.iterdir()} == set(files)
    for name, kind in files.items():
        data = (folder / name).read_bytes()
        if kind == "meta":
            meta = json.loads(data)
            assert (meta["magic"], meta["version"], meta["kind"]) == ("SSWI", word_index.INDEX_VERSION, "meta")
            continue
        magic, version, code, length = word_index._HEADER.unpack(data[:word_index.HEADER_BYTES])
        assert (magic, version, code, length) == (b"SSWI", word_index.INDEX_VERSION, word_index.FILE_KINDS[kind],
                                                   len(data) - word_index.HEADER_BYTES), name
    # Every frame of the row file carries its content's checksum (zstd checks it as it decompresses).
    index = word_index.file_index(subset).table(TABLE)
    rows = (folder / f"{TABLE}.rows.bin").read_bytes()[word_index.HEADER_BYTES:]
    for start, end in zip(index.row_offsets[:-1].tolist(), index.row_offsets[1:].tolist()):
        assert zstandard.get_frame_parameters(rows[start:end]).has_checksum


def _rare_postings(path) -> tuple[int, int]:
    """The byte range (in the postings file) of RARE's rows, which are stored as an ARRAY."""
    index = word_index.file_index(path).table(TABLE)
    words = index._words["body"]
    (word,) = words.matching(RARE, "exact", 10)
    assert words.kinds[word] == word_index.ARRAY and int(words.sizes[word]) == len(RARE_ROWS)
    start, end = int(words.offsets[word]), int(words.offsets[word + 1])
    word_index._open.pop(path, None)  # the damage comes next: the test's searches open the index afresh
    return word_index.HEADER_BYTES + start, word_index.HEADER_BYTES + end


def _frame_of(path, row: int) -> int:
    """The middle byte of the row file's frame holding `row` (its compressed data, past the frame header)."""
    index = word_index.file_index(path).table(TABLE)
    start, end = (int(index.row_offsets[row // index.batch_rows + i]) for i in (0, 1))
    offset = word_index.HEADER_BYTES + (start + end) // 2
    word_index._open.pop(path, None)
    return offset


def _damage(file, how: str, offsets: list[int]) -> None:
    data = bytearray(file.read_bytes())
    if how == "zeroed":
        data = bytearray(len(data))
    elif how == "truncated":
        data = data[: len(data) // 2]
    else:
        for offset in offsets:
            data[offset] ^= 0xFF
    file.write_bytes(bytes(data))


QUERIES = [  # (params, SQL WHERE of the same filters)
    ({"body__contains": RARE}, f"contains(body, '{RARE}')"),
    ({"body__icontains": RARE.upper(), "label__eq": "b"}, f"body ILIKE '%{RARE}%' AND label = 'b'"),
    ({"body__contains": "w01500x"}, "contains(body, 'w01500x')"),
    ({"body__startswith": "alpha", "body__contains": "tag17z"},
     "starts_with(body, 'alpha') AND contains(body, 'tag17z')"),
    ({"body__contains": "qqqzzzq"}, "contains(body, 'qqqzzzq')"),
]


def _scan_ids(path, where: str, limit: int = 100) -> list[int]:
    """A plain DuckDB query of the subset file (this thread's read-only connection to it)."""
    taken = table_snapshot(table=TABLE)
    assert taken.path == path
    cursor = taken.conn.cursor()
    try:
        sql = f"SELECT id FROM {TABLE} WHERE {where} ORDER BY rowid LIMIT {limit}"
        return [row[0] for row in cursor.execute(sql).fetchall()]
    finally:
        cursor.close()


def _search_everywhere(client, api_client, path) -> None:
    """Every query through the API and the page: exactly the scan's rows, no server error."""
    for params, where in QUERIES:
        expected = _scan_ids(path, where)
        response = api_client.get("/api/search", {"table": TABLE, "limit": 100, **params})
        assert response.status_code == 200, response.content[:500]
        assert [row["id"] for row in response.json()["rows"]] == expected, params
        page = client.get("/samples/", {"table": TABLE, "limit": 100, **params})
        assert page.status_code == 200
        html = page.content.decode()
        table = html[html.index("<tbody"): html.rindex("</tbody>")] if expected else ""
        # each row's own word w<id>x is in the results table exactly when the row is an answer
        assert sorted({int(found) for found in re.findall(r"w(\d{5})x", table)}) == expected, params


def _plan_kind(path) -> str:
    query = SearchQuery(TABLE, (Filter("body", "contains", RARE),), 100)
    return search_plan(query=query, spec=table_spec_get(name=TABLE),
                       index=word_index.file_index(path).table(TABLE)).kind


def _index_health(client) -> dict:
    return client.get("/healthz?details=1").json()["checks"]["index"]


def _cases():
    kinds = [kind for kind in word_index.FILE_KINDS]
    for kind in kinds:
        yield kind, "zeroed", "all"
        yield kind, "truncated", "half"
        yield kind, "flipped", "header"  # the magic (the meta: its first character)
        yield kind, "flipped", "payload ends"  # first and last byte of what follows the header
        yield kind, "flipped", "payload middle"  # its middle byte: a value, still well-formed (only a checksum sees it)
    yield "postings", "flipped", "one word"  # RARE's ARRAY postings: 100 -> 155, still a valid, wrong answer
    yield "postings", "zeroed", "one word"  # RARE's ARRAY postings zeroed: 0 rows, no error, before format 10
    yield "rows", "flipped", "read frames"  # the frames the searches read: RARE's first and last rows'


def _offsets(path, name: str, kind: str, where: str) -> tuple[str, list[int]]:
    size = (word_index.index_dir_for(path) / name).stat().st_size
    if where == "header":
        return "flipped", [0]
    start = 0 if kind == "meta" else word_index.HEADER_BYTES
    if where == "payload ends":
        return "flipped", [start, size - 1]
    if where == "payload middle":
        return "flipped", [(start + size) // 2]
    if where == "read frames":
        return "flipped", [_frame_of(path, RARE_ROWS[0]), size - 1]
    return "", []


@pytest.mark.parametrize(("kind", "how", "where"), list(_cases()), ids=lambda value: str(value).replace(" ", "-"))
def test_a_damaged_file_costs_no_row_and_no_error_and_reindex_repairs_it(
        subset, client, api_client, user, kind, how, where, caplog):
    client.force_login(user)
    name = _name_of(subset, kind)
    folder = word_index.index_dir_for(subset)
    offsets: list[int] = []
    if where in ("header", "payload ends", "payload middle", "read frames"):
        _, offsets = _offsets(subset, name, kind, where)
    elif where == "one word":
        start, end = _rare_postings(subset)
        if how == "zeroed":  # the word's bytes only: the rest of the file is intact
            data = bytearray((folder / name).read_bytes())
            data[start:end] = bytes(end - start)
            (folder / name).write_bytes(bytes(data))
        else:
            offsets = [start]  # row 100 reads as 155: increasing, in range, the wrong row
    if where != "one word" or how == "flipped":
        _damage(folder / name, how, offsets)

    with caplog.at_level(logging.WARNING, logger="apps.search.word_index"):
        _search_everywhere(client, api_client, subset)
        for params, _ in QUERIES:  # and again: still scans, logged once
            assert api_client.get("/api/search", {"table": TABLE, "limit": 100, **params}).status_code == 200
        if kind in word_index.LARGE_KINDS and where == "payload middle":
            # A byte of a large file that no search reads: the searches were right (from the index), and the
            # background verification finds it.
            assert _plan_kind(subset) == "index" and _index_health(client)["ok"] is True
            with pytest.raises(CommandError, match=f"damaged word index: {TABLE}"):
                call_command("verify_index", stdout=io.StringIO())
            assert _index_health(client)["ok"] is False and _plan_kind(subset) == "scan"
            _search_everywhere(client, api_client, subset)
    warnings = [r for r in caplog.records if r.name == "apps.search.word_index" and TABLE in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "damaged" in warnings[0].getMessage()

    health = _index_health(client)
    assert health["ok"] is False and f"{TABLE}: damaged" in health["reason"], health
    assert word_index.file_index(subset).table(TABLE) is None  # the scan answers this table from now on

    call_command("reindex_subset", "--if-stale", stdout=io.StringIO())
    repaired = table_current_path(table=TABLE)
    assert repaired != subset
    assert _plan_kind(repaired) == "index"
    _search_everywhere(client, api_client, repaired)
    assert _index_health(client)["ok"] is True
    word_index._open.pop(repaired, None)


def test_the_pristine_index_serves_its_searches(subset, client, api_client, user):
    """The control: the same searches, undamaged, are answered by the index, and health is ok."""
    client.force_login(user)
    assert _plan_kind(subset) == "index"
    _search_everywhere(client, api_client, subset)
    assert word_index.file_index(subset).table(TABLE) is not None
    health = _index_health(client)
    assert health["ok"] is True and TABLE not in health["reason"], health


def _reseal(path) -> None:
    """Recompute every checksum of the table's index (as a writer with a bug would have written them), so
    only the bounds checks stand between damaged bytes and an answer."""
    folder = word_index.index_dir_for(path)
    meta = json.loads((folder / f"{TABLE}.json").read_text())
    postings = (folder / f"{TABLE}.postings.bin").read_bytes()
    sums = word_index._block_sums(postings, len(postings) - word_index.HEADER_BYTES)
    meta["files"][f"{TABLE}.postings.sums"] = word_index._file_write(
        folder / f"{TABLE}.postings.sums", "postings_sums", word_index._array_payload(sums))
    for name, entry in meta["files"].items():
        entry["crc32"] = zlib.crc32((folder / name).read_bytes()[word_index.HEADER_BYTES:])
    meta["meta_crc32"] = word_index._meta_crc(meta)
    (folder / f"{TABLE}.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", ["zeroed", "unordered", "past the rows", "shorter", "offsets past the postings"])
def test_postings_that_pass_their_checksums_are_still_bounds_checked(subset, client, api_client, user, damage):
    """ARRAY postings must be as many rows as the word's size, strictly increasing and below the row count."""
    client.force_login(user)
    start, end = _rare_postings(subset)
    folder = word_index.index_dir_for(subset)
    data = bytearray((folder / f"{TABLE}.postings.bin").read_bytes())
    rows = np.frombuffer(bytes(data[start:end]), dtype="<u4").copy()
    if damage == "zeroed":
        rows[:] = 0
    elif damage == "unordered":
        rows[[0, 1]] = rows[[1, 0]]
    elif damage == "past the rows":
        rows[-1] = ROWS
    else:  # "shorter": the word's size says 5 rows, its offsets now hold 4 (the next word's start moved);
        # "offsets past the postings": the column's last word ends past the end of the file
        index = word_index.file_index(subset).table(TABLE)
        words = index._words["body"]
        (word,) = words.matching(RARE, "exact", 10)
        word_index._open.pop(subset, None)
        offsets = words.offsets.copy()
        if damage == "shorter":
            offsets[word + 1] -= 4
        else:
            offsets[-1] = (folder / f"{TABLE}.postings.bin").stat().st_size
        name = f"{TABLE}.t{index.columns['body']}.offsets.npy"
        (folder / name).write_bytes((folder / name).read_bytes()[:word_index.HEADER_BYTES]
                                    + word_index._array_payload(offsets))
    data[start:end] = rows.tobytes()
    (folder / f"{TABLE}.postings.bin").write_bytes(bytes(data))
    _reseal(subset)
    # every checksum holds: it opens, unless a bound checked at open fails
    assert (word_index.file_index(subset).table(TABLE) is None) == (damage == "offsets past the postings")
    word_index._open.pop(subset, None)
    _search_everywhere(client, api_client, subset)
    health = _index_health(client)
    assert health["ok"] is False and f"{TABLE}: damaged" in health["reason"], health
    assert ("past the postings" if damage == "offsets past the postings" else "of body is not") in health["reason"]


def test_damage_no_search_reads_is_found_by_verify_index_and_then_scanned(subset, client, api_client, user):
    """The large files are checked whole in the background: a flipped byte of the postings that no search
    reads is found by `verify_index` (the beat task's service), which marks the table: health names it and
    every process scans it until `reindex_subset`."""
    client.force_login(user)
    out = io.StringIO()
    call_command("verify_index", stdout=out)  # sound: exits 0
    assert json.loads(out.getvalue()) == {TABLE: None}
    assert _plan_kind(subset) == "index"  # opened before the damage, as a running web worker has it
    postings = word_index.index_dir_for(subset) / f"{TABLE}.postings.bin"
    rare_start, rare_end = _rare_postings(subset)
    assert _plan_kind(subset) == "index"
    size = postings.stat().st_size
    assert rare_end < size
    _damage(postings, "flipped", [size - 1])
    _search_everywhere(client, api_client, subset)  # the damaged block is not read: right rows, from the index
    assert _plan_kind(subset) == "index" and _index_health(client)["ok"] is True

    with pytest.raises(CommandError, match=f"damaged word index: {TABLE}"):
        call_command("verify_index", stdout=io.StringIO())
    health = _index_health(client)
    assert health["ok"] is False and f"{TABLE}: damaged" in health["reason"] and "checksum" in health["reason"]
    assert _plan_kind(subset) == "scan"
    _search_everywhere(client, api_client, subset)
    call_command("reindex_subset", "--if-stale", stdout=io.StringIO())
    assert _plan_kind(table_current_path(table=TABLE)) == "index" and _index_health(client)["ok"] is True
    word_index._open.pop(table_current_path(table=TABLE), None)


@pytest.mark.parametrize("upgrade", ["a library version", "the test vector's splitting"])
def test_another_tokenizer_makes_the_index_stale_until_a_reindex(subset, client, api_client, user, monkeypatch,
                                                                  upgrade):
    """The meta records the tokenizer (library versions and TOKENIZER_VECTOR split at build); one that differs
    at open (an upgrade) makes the index stale: searches scan, health names it, reindex_subset rebuilds it."""
    client.force_login(user)
    assert _plan_kind(subset) == "index"
    word_index._open.pop(subset, None)
    if upgrade == "a library version":
        real = word_index.tokenizer_fingerprint()
        monkeypatch.setattr(word_index, "tokenizer_fingerprint", lambda: {**real, "pyarrow": "99.0.0"})
    else:  # query-time splitting that no longer splits at underscores (x_y%z in the vector)
        real_split = word_index._split
        monkeypatch.setattr(word_index, "_split", lambda text, keep="": real_split(text, keep=keep + "_"))
    monkeypatch.setattr(word_index, "_fingerprint", None)
    assert selectors.subset_index_stale() == [TABLE]
    _search_everywhere(client, api_client, subset)
    assert _plan_kind(subset) == "scan"
    health = _index_health(client)
    changed = "pyarrow" if upgrade == "a library version" else "vector"
    assert health["ok"] is True
    assert f"{TABLE}: stale (built by another tokenizer ({changed} changed))" in health["reason"]
    call_command("reindex_subset", "--if-stale", stdout=io.StringIO())
    assert selectors.subset_index_stale() == [] and _plan_kind(table_current_path(table=TABLE)) == "index"
    word_index._open.pop(table_current_path(table=TABLE), None)


def test_every_index_file_and_the_folder_are_fsynced_before_the_build_returns(settings, tmp_path, monkeypatch):
    """index_build flushes and fsyncs each file it writes, then the folder, so CURRENT never names a folder whose
    bytes are still only in the page cache."""
    import os

    synced = []
    real = os.fsync
    monkeypatch.setattr(word_index.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    path = subset_table_write(name=TABLE, arrow=_table().slice(0, 500), description=DESCRIPTION,
                              keep_other_tables=False, stdout=io.StringIO())
    folder = word_index.index_dir_for(path)
    assert {p.name for p in folder.iterdir()} <= {os.path.basename(name) for name in synced}
    assert str(folder) in synced and synced.index(str(folder)) > synced.index(str(folder / f"{TABLE}.json"))
    word_index._open.pop(path, None)


def test_the_background_verification_is_a_beat_task_that_marks_damage(subset, settings):
    """Beat runs `index_verify_task` (the verify_index command's service); it marks a damaged table."""
    from apps.samplescope.celery import app
    from apps.search.tasks import index_verify_task

    entry = settings.CELERY_BEAT_SCHEDULE["search-verify-index"]
    assert entry["task"] == index_verify_task.name and entry["task"] in app.tasks
    assert index_verify_task() == {TABLE: None}
    marker = word_index.index_dir_for(subset) / f"{TABLE}{word_index.DAMAGED_SUFFIX}"
    assert not marker.exists()
    rows = word_index.index_dir_for(subset) / f"{TABLE}.rows.bin"
    _damage(rows, "flipped", [rows.stat().st_size // 2])
    assert index_verify_task() == {TABLE: ["damaged", f"{TABLE}.rows.bin: checksum mismatch"]}
    assert "rows.bin: checksum mismatch" in marker.read_text()
    assert not word_index.index_is_current(subset, TABLE)
