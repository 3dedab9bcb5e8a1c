"""The model store: a local folder or `s3://bucket/prefix` (any S3-compatible endpoint).

A model version is a folder `<name>/<version>/` holding `model.onnx`, optional
`tokenizer.json`, and `card.json`. Everything else in the app talks in store URIs; this
module is the only place that knows how to read and write them.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from django.conf import settings


class StoreError(Exception):
    """The store could not be read or written; the message says which URI and why."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


def uri_join(base: str, *parts: str) -> str:
    joined = base.rstrip("/")
    for part in parts:
        joined = f"{joined}/{part.strip('/')}"
    return joined


def uri_is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_location(uri: str) -> S3Location:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"not an s3:// URI: {uri}")
    return S3Location(bucket=parsed.netloc, key=parsed.path.lstrip("/"))


def local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


class OutsideStore(StoreError):
    """A URI outside the configured model store (MODEL_STORE_URI): nothing was read."""


def store_uri_inside(*, uri: str, root_uri: str | None = None) -> str:
    """`uri`, normalised, when it names something strictly inside the model store `root_uri` (default
    MODEL_STORE_URI); `OutsideStore` otherwise.

    Registration reads what a person typed: without this it read any folder of the server (as the app's user)
    and any bucket its AWS role could reach. S3: the same bucket, under the store's prefix, and no empty, `.` or
    `..` part in the key. Local: the path with every symlink and `..` resolved must lie under the resolved store
    folder, so neither `store/../../etc` nor a symlink inside the store pointing elsewhere gets out."""
    root_uri = str(root_uri or settings.MODEL_STORE_URI)
    where = f"the model store {root_uri}"
    uri = str(uri).strip()
    if uri_is_s3(root_uri):
        if not uri_is_s3(uri):
            raise OutsideStore(f"{uri[:200]!r} is not in {where}: give an s3:// URI under it.")
        root, location = s3_location(root_uri), s3_location(uri)
        parts = location.key.rstrip("/").split("/") if location.key.rstrip("/") else []
        if any(part in ("", ".", "..") for part in parts):
            raise OutsideStore(f"{uri[:200]!r} has an empty, '.' or '..' part: refused.")
        prefix = [part for part in root.key.split("/") if part]
        if location.bucket != root.bucket or len(parts) <= len(prefix) or parts[: len(prefix)] != prefix:
            raise OutsideStore(f"{uri[:200]!r} is not in {where}.")
        return f"s3://{location.bucket}/{'/'.join(parts)}"
    if uri_is_s3(uri) or ("://" in uri and not uri.startswith("file://")):
        raise OutsideStore(f"{uri[:200]!r} is not in {where}: give a path inside that folder.")
    path = local_path(uri)
    if not path.is_absolute() or "\x00" in uri:
        raise OutsideStore(f"{uri[:200]!r} is not an absolute path inside {where}.")
    root = local_path(root_uri).resolve()
    resolved = path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise OutsideStore(f"{uri[:200]!r} is not in {where} (it resolves to {str(resolved)[:200]!r}).")
    return str(resolved)


def s3_client():
    import boto3

    return boto3.client(
        "s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL or None, region_name=settings.AWS_REGION
    )


def _s3_error(uri: str, exc: Exception) -> StoreError:
    return StoreError(f"cannot reach {uri}: {exc}")


def store_put_file(*, uri: str, source: Path) -> None:
    if uri_is_s3(uri):
        location = s3_location(uri)
        try:
            s3_client().upload_file(str(source), location.bucket, location.key)
        except Exception as exc:  # botocore raises many types; all mean "not written"
            raise _s3_error(uri, exc) from exc
        return
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, temporary)
    temporary.replace(target)


def store_put_bytes(*, uri: str, data: bytes) -> None:
    if uri_is_s3(uri):
        location = s3_location(uri)
        try:
            s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=data)
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        return
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    temporary.write_bytes(data)
    temporary.replace(target)


def store_download(*, uri: str, fileobj: BinaryIO) -> None:
    """Copies the object at `uri` into an open binary file."""
    if uri_is_s3(uri):
        location = s3_location(uri)
        try:
            s3_client().download_fileobj(location.bucket, location.key, fileobj)
        except Exception as exc:
            raise StoreError(f"cannot download {uri}: {exc}") from exc
        return
    path = local_path(uri)
    if not path.is_file():
        raise StoreError(f"no such file in the model store: {uri}")
    with path.open("rb") as source:
        shutil.copyfileobj(source, fileobj, length=1024 * 1024)


def store_read_bytes(*, uri: str) -> bytes:
    if uri_is_s3(uri):
        location = s3_location(uri)
        try:
            return s3_client().get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except Exception as exc:
            raise StoreError(f"cannot read {uri}: {exc}") from exc
    path = local_path(uri)
    if not path.is_file():
        raise StoreError(f"no such file in the model store: {uri}")
    return path.read_bytes()


def store_exists(*, uri: str) -> bool:
    if uri_is_s3(uri):
        location = s3_location(uri)
        try:
            s3_client().head_object(Bucket=location.bucket, Key=location.key)
            return True
        except Exception:
            return False
    return local_path(uri).is_file()


def store_version_folders(*, root_uri: str) -> list[tuple[str, str]]:
    """(name, version) of every folder `<name>/<version>/card.json` under the store root."""
    found: list[tuple[str, str]] = []
    if uri_is_s3(root_uri):
        location = s3_location(root_uri)
        prefix = f"{location.key.rstrip('/')}/" if location.key else ""
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                parts = item["Key"][len(prefix):].split("/")
                if len(parts) == 3 and parts[2] == "card.json":
                    found.append((parts[0], parts[1]))
        return sorted(found)
    root = local_path(root_uri)
    for card in sorted(root.glob("*/*/card.json")):
        found.append((card.parent.parent.name, card.parent.name))
    return found
