from __future__ import annotations

import json
from collections.abc import Iterator

from django.db.models import Count, Q

from .models import Entity, EvaluationRun, KnowledgeBase, Mention
from .services import NotFound


def kb_get(*, name: str | None = None) -> KnowledgeBase:
    """A KB by "name" (its newest version) or "name@version"; None = the serving one (else the newest)."""
    if not name:
        kb = (
            KnowledgeBase.objects.filter(is_serving=True).first()
            or KnowledgeBase.objects.order_by("-created_at").first()
        )
        if kb is None:
            raise NotFound("no entity-linking knowledge base exists yet: run `python manage.py setup_demo`")
        return kb
    base, _, version = name.partition("@")
    qs = KnowledgeBase.objects.filter(name=base)
    if version:
        qs = qs.filter(version=version)
    kb = qs.order_by("-is_serving", "-created_at").first()
    if kb is None:
        raise NotFound(f"no entity-linking model {name!r}")
    return kb


def kb_list() -> list[KnowledgeBase]:
    return list(KnowledgeBase.objects.annotate(entity_count=Count("entities")).order_by("name", "-created_at"))


ENTITY_SEARCH_MAX_CHARS = 1000  # a search longer than this uses its start (SQLite refuses LIKE patterns over 50 KB)


def entity_list(*, kb: KnowledgeBase, query: str = "", limit: int = 50) -> list[Entity]:
    qs = Entity.objects.filter(kb=kb).annotate(mention_count=Count("mentions", distinct=True))
    query = query.strip()[:ENTITY_SEARCH_MAX_CHARS]
    if query:
        qs = qs.filter(
            Q(key__icontains=query)
            | Q(name__icontains=query)
            | Q(aliases__text__icontains=query)
            | Q(description__icontains=query)
        ).distinct()
    return list(qs.prefetch_related("aliases").order_by("name", "key")[:limit])


def entity_count(*, kb: KnowledgeBase) -> int:
    return Entity.objects.filter(kb=kb).count()


def entity_get(*, kb: KnowledgeBase, key: str) -> Entity:
    entity = Entity.objects.filter(kb=kb, key=key).prefetch_related("aliases", "mentions").first()
    if entity is None:
        raise NotFound(f"no entity {key!r} in {kb.label}")
    return entity


def mentions_by_id(*, ids: list[int]) -> dict[int, Mention]:
    return {m.pk: m for m in Mention.objects.filter(pk__in=ids)}


def evaluation_latest(*, kb: KnowledgeBase) -> dict[str, EvaluationRun]:
    """The newest run of each scorer ("linker", "prior") for this KB."""
    latest: dict[str, EvaluationRun] = {}
    for run in EvaluationRun.objects.filter(kb=kb).order_by("-created_at")[:20]:
        latest.setdefault(run.scorer, run)
    return latest


def kb_export_jsonl(*, kb: KnowledgeBase) -> Iterator[str]:
    """One JSON object a line, in the format `kb_import_jsonl` reads (embeddings are not exported)."""
    entities = Entity.objects.filter(kb=kb).prefetch_related("aliases", "mentions").order_by("key")
    for entity in entities:
        yield json.dumps(
            {
                "id": entity.key,
                "name": entity.name,
                "aliases": [a.text for a in entity.aliases.all()],
                "type": entity.type,
                "description": entity.description,
                "url": entity.url,
                "mentions": [{"text": m.text, "start": m.start, "end": m.end} for m in entity.mentions.all()],
            },
            ensure_ascii=False,
        )


def entity_keys(*, kb: KnowledgeBase, limit: int = 5000) -> list[tuple[str, str]]:
    """(key, name) of the KB's entities, for pickers."""
    return list(Entity.objects.filter(kb=kb).order_by("key").values_list("key", "name")[:limit])


def deletion_list(*, kb: KnowledgeBase, limit: int = 20) -> list:
    """The KB's latest entity deletions, newest first (the history the KB editor offers undo from)."""
    from .models import EntityDeletion

    return list(EntityDeletion.objects.filter(kb=kb).select_related("deleted_by")[:limit])
