from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from django.db.models import QuerySet

from .encoders import SentenceEncoder
from .models import BatchJob, ModelAlias, ModelVersion, PredictionFlag, SharedInput


SHARED_INPUT_KEY = re.compile(r"[0-9a-f]{24}")


class ModelNotFound(LookupError):
    """No such model, version or alias: the message says which."""


def model_version_get(*, name: str, version: str | None = None, alias: str = "production") -> ModelVersion:
    """A version by number, else the one `alias` points at (else the newest, for models without aliases)."""
    if version:
        found = ModelVersion.objects.filter(name=name, version=version).first()
        if found is None:
            if not ModelVersion.objects.filter(name=name).exists():
                raise ModelNotFound(f"Unknown model {name!r}.")
            raise ModelNotFound(f"Model {name!r} has no version {version!r}.")
        return found
    pointer = ModelAlias.objects.select_related("model_version").filter(name=name, alias=alias).first()
    if pointer is not None:
        return pointer.model_version
    newest = ModelVersion.objects.filter(name=name).order_by("-created_at", "-id").first()
    if newest is None:
        raise ModelNotFound(f"Unknown model {name!r}.")
    return newest


def shared_input_get(*, key: str) -> str:
    """The text stored for a short URL (`?_in=<key>`); ModelNotFound when there is none (or the key is not one)."""
    if not SHARED_INPUT_KEY.fullmatch(key):
        raise ModelNotFound("No such stored input: the link is wrong (a key is 24 hex digits).")
    found = SharedInput.objects.filter(key=key).values_list("text", flat=True).first()
    if found is None:
        raise ModelNotFound(f"No stored input {key!r}: the link is wrong or the input was deleted.")
    return found


def model_versions_of(*, name: str) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(name=name).prefetch_related("aliases").order_by("-created_at", "-id"))


def model_versions_all(*, kind: str | None = None) -> list[ModelVersion]:
    """Every registered version (of one kind), by model name then newest first."""
    qs = ModelVersion.objects.prefetch_related("aliases").order_by("name", "-created_at", "-id")
    return list(qs.filter(kind=kind) if kind else qs)


def model_aliases_of(*, model_version: ModelVersion) -> list[str]:
    return sorted(a.alias for a in model_version.aliases.all())


@dataclass
class ModelSummary:
    name: str
    kind: str
    description: str
    serving: ModelVersion  # the production version, else the newest
    versions: list[ModelVersion]
    aliases: dict[str, str]  # alias → version


def model_summary_list(*, kind: str | None = None) -> list[ModelSummary]:
    versions = ModelVersion.objects.prefetch_related("aliases").order_by("name", "-created_at", "-id")
    if kind:
        versions = versions.filter(kind=kind)
    by_name: dict[str, list[ModelVersion]] = {}
    for mv in versions:
        by_name.setdefault(mv.name, []).append(mv)
    summaries = []
    for name, items in by_name.items():
        aliases = {a.alias: mv.version for mv in items for a in mv.aliases.all()}
        serving = next((mv for mv in items if mv.version == aliases.get("production")), items[0])
        summaries.append(ModelSummary(name=name, kind=serving.kind, description=serving.description,
                                      serving=serving, versions=items, aliases=dict(sorted(aliases.items()))))
    return summaries


def model_listing() -> list[dict]:
    """[{"name", "version", "kind", "aliases"}] for every registered version (API and list_models)."""
    return [
        {"name": mv.name, "version": mv.version, "kind": mv.kind, "aliases": model_aliases_of(model_version=mv)}
        for mv in ModelVersion.objects.prefetch_related("aliases").order_by("name", "created_at", "id")
    ]


_encoders: dict[tuple[str, str], SentenceEncoder] = {}
_encoders_lock = threading.Lock()


def encoder_for(*, name: str, version: str | None = None) -> SentenceEncoder:
    """The process-wide SentenceEncoder of a registered model of kind "encoder" (files fetched and verified once)."""
    model_version = model_version_get(name=name, version=version)
    if model_version.kind != ModelVersion.Kind.ENCODER:
        raise ModelNotFound(f"Model {name!r} is a {model_version.kind}, not an encoder.")
    key = (model_version.name, model_version.version)
    with _encoders_lock:
        encoder = _encoders.get(key)
        if encoder is None:
            from .fetch import model_file_fetch
            from .store import uri_join

            files = model_version.card.get("files") or {}
            onnx_path = model_file_fetch(uri=uri_join(model_version.uri, "model.onnx"), sha256=files.get("model.onnx"))
            tokenizer_path = model_file_fetch(
                uri=uri_join(model_version.uri, "tokenizer.json"), sha256=files.get("tokenizer.json")
            )
            max_length = int((model_version.card.get("input") or {}).get("max_length") or 128)
            encoder = SentenceEncoder(onnx_path, tokenizer_path, max_length=max_length)
            _encoders[key] = encoder
    return encoder


def flag_list(*, name: str) -> QuerySet[PredictionFlag]:
    return PredictionFlag.objects.filter(model_version__name=name).select_related("model_version", "user")


def batch_job_get(*, job_id: int, user) -> BatchJob:
    """A user's own batch job (staff see all); ModelNotFound otherwise."""
    jobs = BatchJob.objects.select_related("model_version")
    if not user.is_staff:
        jobs = jobs.filter(user=user)
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise ModelNotFound(f"No batch job #{job_id}.")
    return job


def batch_job_list(*, name: str, user) -> QuerySet[BatchJob]:
    jobs = BatchJob.objects.filter(model_version__name=name).select_related("model_version")
    return jobs if user.is_staff else jobs.filter(user=user)
