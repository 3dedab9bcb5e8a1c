import hashlib
import threading

import pytest
from django.conf import settings

from apps.modelhub import fetch as fetch_module
from apps.modelhub.fetch import ChecksumMismatch, model_file_fetch
from apps.modelhub.store import (
    StoreError,
    store_exists,
    store_put_bytes,
    store_put_file,
    store_read_bytes,
    store_version_folders,
    uri_join,
)


def _roundtrip(root: str, tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx bytes " * 1000)
    store_put_file(uri=uri_join(root, "clf", "1", "model.onnx"), source=source)
    store_put_bytes(uri=uri_join(root, "clf", "1", "card.json"), data=b'{"name": "clf"}')
    store_put_bytes(uri=uri_join(root, "clf", "2", "card.json"), data=b'{"name": "clf"}')
    assert store_read_bytes(uri=uri_join(root, "clf", "1", "card.json")) == b'{"name": "clf"}'
    assert store_exists(uri=uri_join(root, "clf", "1", "model.onnx"))
    assert not store_exists(uri=uri_join(root, "clf", "3", "model.onnx"))
    assert store_version_folders(root_uri=root) == [("clf", "1"), ("clf", "2")]
    with pytest.raises(StoreError):
        store_read_bytes(uri=uri_join(root, "nope", "1", "card.json"))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    local = model_file_fetch(uri=uri_join(root, "clf", "1", "model.onnx"), sha256=digest)
    assert local.read_bytes() == source.read_bytes()
    assert str(local).startswith(str(settings.MODEL_CACHE_DIR))


def test_local_folder_store(tmp_path):
    _roundtrip(str(tmp_path / "store"), tmp_path)


def test_s3_store_with_moto(s3_bucket, tmp_path):
    _roundtrip(s3_bucket, tmp_path)


def test_s3_missing_object_is_a_store_error(s3_bucket):
    with pytest.raises(StoreError, match="cannot download"):
        model_file_fetch(uri=uri_join(s3_bucket, "missing", "1", "model.onnx"))


def test_concurrent_fetches_share_one_download(tmp_path, monkeypatch):
    data = b"x" * 3_000_000
    source = tmp_path / "big.onnx"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    downloads = []
    original = fetch_module.store_download

    def slow_download(*, uri, fileobj):
        downloads.append(uri)
        # While this download is in flight the other threads must wait, not start their own,
        # and must never see a partial file.
        fileobj.write(data[:1000])
        fileobj.flush()
        threading.Event().wait(0.3)
        fileobj.seek(0)
        fileobj.truncate()
        original(uri=uri, fileobj=fileobj)

    monkeypatch.setattr(fetch_module, "store_download", slow_download)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        try:
            path = model_file_fetch(uri=str(source), sha256=digest)
            results.append((path, path.stat().st_size))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(downloads) == 1
    assert {r for r in results} == {(results[0][0], len(data))}
    assert not list(results[0][0].parent.glob("*.partial"))


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"the real bytes")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        model_file_fetch(uri=str(source), sha256=wrong)
    target = fetch_module.cache_path_for(uri=str(source), sha256=wrong)
    assert not target.exists()
    assert not list(target.parent.glob("*.partial"))
    # The right checksum still works afterwards.
    right = hashlib.sha256(b"the real bytes").hexdigest()
    assert model_file_fetch(uri=str(source), sha256=right).read_bytes() == b"the real bytes"


def test_corrupted_cache_entry_is_fetched_again(tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"good bytes")
    digest = hashlib.sha256(b"good bytes").hexdigest()
    cached = model_file_fetch(uri=str(source), sha256=digest)
    cached.write_bytes(b"bit rot")
    fetch_module._verified.clear()  # a new process would not know the file
    assert model_file_fetch(uri=str(source), sha256=digest).read_bytes() == b"good bytes"


def test_a_cache_entry_rewritten_after_this_process_verified_it_is_fetched_again(tmp_path):
    """The fast path trusts a file this process verified only while its size and mtime are unchanged."""
    source = tmp_path / "model.onnx"
    source.write_bytes(b"good bytes")
    digest = hashlib.sha256(b"good bytes").hexdigest()
    cached = model_file_fetch(uri=str(source), sha256=digest)
    cached.write_bytes(b"overwritten later")  # no _verified.clear(): the same, long-running process
    assert model_file_fetch(uri=str(source), sha256=digest).read_bytes() == b"good bytes"


def _fetch_in_child(uri, digest, marker_dir, queue):
    import time as time_module

    original = fetch_module.store_download

    def slow_download(*, uri, fileobj):
        (marker_dir / f"download-{__import__('os').getpid()}").touch()
        time_module.sleep(0.3)
        original(uri=uri, fileobj=fileobj)

    fetch_module.store_download = slow_download
    path = model_file_fetch(uri=uri, sha256=digest)
    queue.put((str(path), path.stat().st_size))


def test_concurrent_processes_share_one_download(tmp_path):
    import multiprocessing

    data = b"y" * 2_000_000
    source = tmp_path / "model.onnx"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    markers = tmp_path / "markers"
    markers.mkdir()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_fetch_in_child, args=(str(source), digest, markers, queue)) for _ in range(3)]
    for child in children:
        child.start()
    results = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(10)
    assert len(list(markers.iterdir())) == 1  # fcntl.flock made the other processes wait and reuse the file
    assert len(set(results)) == 1 and results[0][1] == len(data)


TRAVERSAL = "xx/../../../model-store/sentiment/1"


def test_a_traversal_checksum_never_touches_a_served_model(tmp_path, settings):
    """Issue 13: sha256 "xx/../../../model-store/sentiment/1" made the cache delete a served model.onnx."""
    from apps.modelhub.fetch import UnsafeCachePath, cache_path_for

    settings.MODEL_CACHE_DIR = str(tmp_path / "data" / "model-cache")
    served = tmp_path / "data" / "model-store" / "sentiment" / "1" / "model.onnx"
    served.parent.mkdir(parents=True)
    served.write_bytes(b"the serving model")
    source = tmp_path / "elsewhere" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(b"other bytes")

    with pytest.raises(UnsafeCachePath):
        cache_path_for(uri=str(source), sha256=TRAVERSAL)
    with pytest.raises(UnsafeCachePath):
        model_file_fetch(uri=str(source), sha256=TRAVERSAL)
    for bad in ("A" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, "0" * 63 + "\n"):
        with pytest.raises(UnsafeCachePath):
            cache_path_for(uri=str(source), sha256=bad)
    assert served.read_bytes() == b"the serving model"
    assert not (tmp_path / "data" / "model-cache").exists() or not any((tmp_path / "data" / "model-cache").rglob("*"))


def test_a_file_name_of_dot_dot_is_refused(tmp_path, settings):
    from apps.modelhub.fetch import UnsafeCachePath, cache_path_for

    settings.MODEL_CACHE_DIR = str(tmp_path / "cache")
    with pytest.raises(UnsafeCachePath):
        cache_path_for(uri=str(tmp_path / "x" / ".."), sha256="0" * 64)
    assert cache_path_for(uri=str(tmp_path / "x" / "model.onnx"), sha256="0" * 64).is_relative_to(tmp_path / "cache")
