"""Writes to a knowledge base. Each edit: validate everything, embed (outside the transaction:
the encoder is the slow part), then one transaction that writes the rows, keeps the entities'
aggregate embeddings in step, bumps `KnowledgeBase.revision` and records a "kb_edit" audit event.
Any error leaves the KB as it was.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record

from .detection import fold, mention_context, mention_context_plain
from .linker import LinkerParams, LinkResult, embed, kb_state, link
from .markup import MarkupError, bracketed_one
from .models import Alias, Entity, EntityDeletion, KnowledgeBase, Mention

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class LinkingError(ValueError):
    """Bad input to the linker or a KB edit; the message is shown to the user as is."""


class NotFound(LookupError):
    pass


@dataclass
class MentionInput:
    text: str
    start: int
    end: int


@dataclass
class EntityInput:
    key: str
    name: str
    type: str = "other"
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    url: str = ""
    mentions: list[MentionInput] = field(default_factory=list)


def mention_from_bracketed(sentence: str) -> MentionInput:
    """ "The probe orbits [Mercury]." → the sentence without brackets and the span of Mercury
    (`markup.bracketed_one`, which the demo KB's generator uses too)."""
    try:
        text, span = bracketed_one(sentence)
    except MarkupError as exc:
        raise LinkingError(str(exc)) from exc
    if span.label is not None:
        raise LinkingError(f"write the mention as [surface], without '|', in: {sentence!r}")
    return MentionInput(text=text, start=span.start, end=span.end)


def _mention_validate(*, mention: MentionInput, aliases: Iterable[str], entity_label: str) -> MentionInput:
    text = mention.text
    if not isinstance(text, str) or not text.strip():
        raise LinkingError("a mention needs a non-empty sentence")
    if len(text) > settings.LINKING_MAX_TEXT_CHARS:
        raise LinkingError(f"a mention sentence may have at most {settings.LINKING_MAX_TEXT_CHARS} characters")
    if not (isinstance(mention.start, int) and isinstance(mention.end, int)):
        raise LinkingError("start and end must be integers")
    if not (0 <= mention.start < mention.end <= len(text)):
        raise LinkingError(
            f"the span {mention.start}..{mention.end} is outside the sentence (which has {len(text)} characters)"
        )
    surface = text[mention.start : mention.end]
    if surface != surface.strip():
        raise LinkingError(f"the span {surface!r} starts or ends with a space")
    folded = {fold(a) for a in aliases}
    if fold(surface) not in folded:
        raise LinkingError(f"{surface!r} is not an alias of {entity_label}: add it as an alias first")
    return mention


ALIAS_CASE_RULE = (
    "An alias written in lower case (python) matches any casing: python, Python, PYTHON. An alias with a capital "
    "(Python) matches any casing that has a capital (Python, PYTHON) but not all-lower-case text (python), so the "
    "snake is not offered the language. Case variants of one alias are merged into one: a lower-case variant "
    "wins (it matches everything the others match), otherwise the first one given is kept."
)


def alias_widest(variants: Iterable[str]) -> str:
    """Of case variants of one alias, the one matching the most surfaces (detection.case_compatible): an all-lower-case
    variant matches every casing; variants with capitals all match the same surfaces, so the first is kept."""
    variants = list(variants)
    return next((v for v in variants if not any(ch.isupper() for ch in v)), variants[0])


def _aliases_clean(aliases: Iterable[str], *, entity_label: str) -> list[str]:
    """Stripped, checked, and case variants merged (ALIAS_CASE_RULE), in the order first given."""
    groups: dict[str, list[str]] = {}
    for alias in aliases:
        alias = (alias or "").strip()
        if not alias:
            continue
        if len(alias) > 200:
            raise LinkingError(f"alias {alias[:40]!r}… is longer than 200 characters")
        if len(alias) < 2 or not any(ch.isalnum() for ch in alias):
            raise LinkingError(f"alias {alias!r} is too short to match safely (at least 2 characters, one a letter or digit)")
        groups.setdefault(fold(alias), []).append(alias)
    return [alias_widest(variants) for variants in groups.values()]


def _entity_validate(*, kb: KnowledgeBase, data: EntityInput, existing_keys: set[str]) -> EntityInput:
    key = (data.key or "").strip()
    if not KEY_RE.match(key) or len(key) > 128:
        raise LinkingError(f"entity id {key!r} must be lower-case letters, digits, '_' or '-' (at most 128)")
    if key in existing_keys:
        raise LinkingError(f"entity id {key!r} already exists in {kb.label}")
    name = (data.name or "").strip()
    if not name or len(name) > 200:
        raise LinkingError(f"entity {key!r} needs a name (at most 200 characters)")
    if data.type not in Entity.Type.values:
        raise LinkingError(f"type {data.type!r} must be one of {', '.join(Entity.Type.values)}")
    if data.url and not re.match(r"^https?://\S+$", data.url):
        raise LinkingError(f"url {data.url!r} must start with http:// or https://")
    # With no aliases given, the name is the one alias.
    aliases = _aliases_clean(data.aliases or [name], entity_label=key)
    if not aliases:
        raise LinkingError(f"entity {key!r} needs at least one alias")
    mentions = [_mention_validate(mention=m, aliases=aliases, entity_label=key) for m in data.mentions]
    return EntityInput(
        key=key,
        name=name,
        type=data.type,
        aliases=aliases,
        description=(data.description or "").strip(),
        url=(data.url or "").strip(),
        mentions=mentions,
    )


def _embed_mentions(*, kb: KnowledgeBase, mentions: list[MentionInput]) -> np.ndarray:
    contexts = [mention_context(m.text, m.start, m.end, style=kb.context_style) for m in mentions]
    return embed(texts=contexts, encoder_name=kb.encoder_name)


def profile_text(*, name: str, description: str) -> str:
    return f"{name}: {description}" if description else name


def _embed_entities(*, kb: KnowledgeBase, items: list[EntityInput]) -> tuple[np.ndarray, np.ndarray]:
    """(mention vectors, profile vectors) in one encoder pass."""
    mentions = [m for item in items for m in item.mentions]
    contexts = [mention_context(m.text, m.start, m.end, style=kb.context_style) for m in mentions]
    profiles = [profile_text(name=item.name, description=item.description) for item in items]
    vectors = embed(texts=contexts + profiles, encoder_name=kb.encoder_name)
    return vectors[: len(contexts)], vectors[len(contexts) :]


def _revision_bump(kb: KnowledgeBase) -> None:
    KnowledgeBase.objects.filter(pk=kb.pk).update(revision=F("revision") + 1)
    kb.refresh_from_db(fields=["revision"])


def _aggregate_add(entity: Entity, vectors: np.ndarray) -> None:
    current = entity.aggregate_vector()
    total = vectors.sum(axis=0) if current is None else current + vectors.sum(axis=0)
    entity.aggregate = total.astype(np.float32).tobytes()
    entity.save(update_fields=["aggregate"])


def _entities_write(
    *, kb: KnowledgeBase, items: list[EntityInput], vectors: np.ndarray, profiles: np.ndarray
) -> list[Entity]:
    created, offset = [], 0
    for item, profile in zip(items, profiles):
        entity = Entity.objects.create(
            kb=kb,
            key=item.key,
            name=item.name,
            type=item.type,
            description=item.description,
            url=item.url,
            profile=profile.astype(np.float32).tobytes(),
        )
        Alias.objects.bulk_create([Alias(kb=kb, entity=entity, text=a, norm=fold(a)) for a in item.aliases])
        own = vectors[offset : offset + len(item.mentions)]
        offset += len(item.mentions)
        Mention.objects.bulk_create(
            [
                Mention(entity=entity, text=m.text, start=m.start, end=m.end, embedding=v.astype(np.float32).tobytes())
                for m, v in zip(item.mentions, own)
            ]
        )
        if len(own):
            _aggregate_add(entity, own)
        created.append(entity)
    return created


def kb_get_or_create(*, name: str, version: str = "1", description: str = "", serving: bool = False) -> KnowledgeBase:
    kb, _ = KnowledgeBase.objects.get_or_create(
        name=name, version=version, defaults={"description": description, "encoder_name": settings.LINKING_ENCODER}
    )
    if serving and not kb.is_serving:
        with transaction.atomic():
            KnowledgeBase.objects.filter(is_serving=True).update(is_serving=False)
            KnowledgeBase.objects.filter(pk=kb.pk).update(is_serving=True)
        kb.refresh_from_db()
    return kb


def entity_create(*, user, kb: KnowledgeBase, data: EntityInput) -> Entity:
    existing = set(Entity.objects.filter(kb=kb, key=(data.key or "").strip()).values_list("key", flat=True))
    item = _entity_validate(kb=kb, data=data, existing_keys=existing)
    vectors, profiles = _embed_entities(kb=kb, items=[item])
    with transaction.atomic():
        if Entity.objects.filter(kb=kb, key=item.key).exists():  # created meanwhile by someone else
            raise LinkingError(f"entity id {item.key!r} already exists in {kb.label}")
        (entity,) = _entities_write(kb=kb, items=[item], vectors=vectors, profiles=profiles)
        _revision_bump(kb)
        audit_record(
            user=user,
            action="kb_edit",
            target=f"{kb.label}/{item.key}",
            detail={"op": "entity_create", "aliases": item.aliases, "mentions": len(item.mentions)},
        )
    return entity


def _blob(value) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def _unblob(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _entity_snapshot(entity: Entity) -> dict:
    return {
        "key": entity.key, "name": entity.name, "type": entity.type, "description": entity.description,
        "url": entity.url, "aggregate": _blob(entity.aggregate), "profile": _blob(entity.profile),
        "aliases": list(entity.aliases.order_by("pk").values_list("text", flat=True)),
        "mentions": [
            {"text": m.text, "start": m.start, "end": m.end, "pinned": m.pinned, "embedding": _blob(m.embedding)}
            for m in entity.mentions.order_by("pk")
        ],
    }


def entity_delete(*, user, kb: KnowledgeBase, key: str) -> EntityDeletion:
    """Delete an entity with its aliases and mentions, keeping a snapshot so `entity_restore` can undo it."""
    with transaction.atomic():
        entity = Entity.objects.select_for_update().filter(kb=kb, key=key).first()
        if entity is None:
            raise NotFound(f"no entity {key!r} in {kb.label}")
        snapshot = _entity_snapshot(entity)
        entity.delete()
        _revision_bump(kb)
        deletion = EntityDeletion.objects.create(
            kb=kb, key=key, name=snapshot["name"], mention_count=len(snapshot["mentions"]), snapshot=snapshot,
            kb_revision=kb.revision, deleted_by=user if getattr(user, "pk", None) else None,
        )
        audit_record(user=user, action="kb_edit", target=f"{kb.label}/{key}",
                     detail={"op": "entity_delete", "deletion": deletion.pk, "mentions": deletion.mention_count})
    return deletion


def entity_restore(*, user, kb: KnowledgeBase, deletion_id: int) -> Entity:
    """Undo a delete: the entity, its aliases and its mentions as they were (same embeddings, pins, aggregate and
    description vector; nothing is embedded again). The KB's revision moves forward, like any edit."""
    with transaction.atomic():
        deletion = EntityDeletion.objects.select_for_update().filter(pk=deletion_id, kb=kb).first()
        if deletion is None:
            raise NotFound(f"no deletion {deletion_id} in {kb.label}")
        if deletion.restored_at is not None:
            raise LinkingError(f"{deletion.key} was already restored (revision {deletion.restored_revision})")
        if Entity.objects.filter(kb=kb, key=deletion.key).exists():
            raise LinkingError(f"an entity {deletion.key!r} exists again in {kb.label}: delete or rename it first")
        snap = deletion.snapshot
        entity = Entity.objects.create(
            kb=kb, key=snap["key"], name=snap["name"], type=snap["type"], description=snap["description"],
            url=snap["url"], aggregate=_unblob(snap["aggregate"]), profile=_unblob(snap["profile"]),
        )
        Alias.objects.bulk_create([Alias(kb=kb, entity=entity, text=a, norm=fold(a)) for a in snap["aliases"]])
        Mention.objects.bulk_create([
            Mention(entity=entity, text=m["text"], start=m["start"], end=m["end"], pinned=m["pinned"],
                    embedding=_unblob(m["embedding"]))
            for m in snap["mentions"]
        ])
        _revision_bump(kb)
        deletion.restored_at = timezone.now()
        deletion.restored_revision = kb.revision
        deletion.save(update_fields=["restored_at", "restored_revision"])
        audit_record(user=user, action="kb_edit", target=f"{kb.label}/{deletion.key}",
                     detail={"op": "entity_restore", "deletion": deletion.pk, "mentions": len(snap["mentions"])})
    return entity


def mention_add(*, user, kb: KnowledgeBase, key: str, mention: MentionInput, pinned: bool = False) -> Mention:
    entity = Entity.objects.filter(kb=kb, key=key).first()
    if entity is None:
        raise NotFound(f"no entity {key!r} in {kb.label}")
    aliases = list(entity.aliases.values_list("text", flat=True))
    _mention_validate(mention=mention, aliases=aliases, entity_label=key)
    vector = _embed_mentions(kb=kb, mentions=[mention])
    with transaction.atomic():
        entity = Entity.objects.select_for_update().filter(pk=entity.pk).first()
        if entity is None:
            raise NotFound(f"entity {key!r} was deleted meanwhile")
        created = Mention.objects.create(
            entity=entity, text=mention.text, start=mention.start, end=mention.end, embedding=vector[0].tobytes(),
            pinned=pinned,
        )
        _aggregate_add(entity, vector)
        _revision_bump(kb)
        audit_record(
            user=user,
            action="kb_edit",
            target=f"{kb.label}/{key}",
            detail={"op": "mention_add", "mention": created.pk, "text": mention.text[:200], "pinned": pinned},
        )
    return created


def mention_delete(*, user, kb: KnowledgeBase, mention_id: int) -> None:
    with transaction.atomic():
        mention = Mention.objects.select_related("entity").filter(pk=mention_id, entity__kb=kb).first()
        if mention is None:
            raise NotFound(f"no mention {mention_id} in {kb.label}")
        entity = mention.entity
        vector = np.frombuffer(bytes(mention.embedding), dtype=np.float32)
        mention.delete()
        current = entity.aggregate_vector()
        remaining = entity.mentions.count()
        entity.aggregate = None if current is None or not remaining else (current - vector).astype(np.float32).tobytes()
        entity.save(update_fields=["aggregate"])
        _revision_bump(kb)
        audit_record(
            user=user,
            action="kb_edit",
            target=f"{kb.label}/{entity.key}",
            detail={"op": "mention_delete", "mention": mention_id},
        )


def alias_add(*, user, kb: KnowledgeBase, key: str, alias: str) -> Alias:
    entity = Entity.objects.filter(kb=kb, key=key).first()
    if entity is None:
        raise NotFound(f"no entity {key!r} in {kb.label}")
    (alias,) = _aliases_clean([alias], entity_label=key) or [""]
    if not alias:
        raise LinkingError("the alias is empty")
    with transaction.atomic():
        existing = entity.aliases.select_for_update().filter(norm=fold(alias)).first()
        if existing is not None:
            # A case variant of an alias it has: merged (ALIAS_CASE_RULE), never refused.
            widest = alias_widest([existing.text, alias])
            if widest == existing.text:
                return existing
            old_text, existing.text = existing.text, widest
            existing.save(update_fields=["text"])
            _revision_bump(kb)
            audit_record(user=user, action="kb_edit", target=f"{kb.label}/{key}",
                         detail={"op": "alias_merge", "alias": widest, "was": old_text})
            return existing
        created = Alias.objects.create(kb=kb, entity=entity, text=alias, norm=fold(alias))
        _revision_bump(kb)
        audit_record(
            user=user, action="kb_edit", target=f"{kb.label}/{key}", detail={"op": "alias_add", "alias": alias}
        )
    return created


# --- JSONL ------------------------------------------------------------------------------------


def entity_input_from_json(record: dict, *, line: int | str = "?") -> EntityInput:
    if not isinstance(record, dict):
        raise LinkingError(f"line {line}: expected a JSON object")
    try:
        mentions = [
            MentionInput(text=m["text"], start=int(m["start"]), end=int(m["end"])) for m in record.get("mentions") or []
        ]
        aliases = record.get("aliases") or []
        if not isinstance(aliases, list):
            raise LinkingError(f"line {line}: aliases must be a list")
        return EntityInput(
            key=str(record["id"]),
            name=str(record["name"]),
            type=str(record.get("type") or "other"),
            aliases=[str(a) for a in aliases],
            description=str(record.get("description") or ""),
            url=str(record.get("url") or ""),
            mentions=mentions,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, LinkingError):
            raise
        raise LinkingError(f"line {line}: needs id, name and mentions [{{text, start, end}}] ({exc})") from exc


def kb_import_jsonl(
    *, user, kb: KnowledgeBase, lines: Iterable[str], replace: bool = False, stdout=None, source: str = ""
) -> int:
    """Import entities (one JSON object a line). All or nothing: any bad line and nothing is written."""
    items: list[EntityInput] = []
    existing = set() if replace else set(Entity.objects.filter(kb=kb).values_list("key", flat=True))
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LinkingError(f"line {number}: not JSON ({exc.msg})") from exc
        try:
            item = _entity_validate(kb=kb, data=entity_input_from_json(record, line=number), existing_keys=existing)
        except LinkingError as exc:
            message = str(exc)
            raise LinkingError(message if message.startswith("line ") else f"line {number}: {message}") from exc
        existing.add(item.key)
        items.append(item)
    mentions = [m for item in items for m in item.mentions]
    if stdout:
        stdout.write(f"validated {len(items)} entities, {len(mentions)} mentions; embedding…")
    vectors, profiles = _embed_entities(kb=kb, items=items)
    with transaction.atomic():
        if replace:
            Entity.objects.filter(kb=kb).delete()
        _entities_write(kb=kb, items=items, vectors=vectors, profiles=profiles)
        _revision_bump(kb)
        audit_record(
            user=user,
            action="kb_edit",
            target=kb.label,
            detail={
                "op": "import",
                "entities": len(items),
                "mentions": len(mentions),
                "replace": replace,
                "source": source,
            },
        )
    return len(items)


def kb_reembed(*, user, kb: KnowledgeBase, context_style: str | None = None, stdout=None) -> int:
    """Embed every stored mention again (after changing the encoder or the context style)."""
    mentions = list(Mention.objects.filter(entity__kb=kb).order_by("pk"))
    if context_style:
        kb.context_style = context_style
    vectors = _embed_mentions(kb=kb, mentions=[MentionInput(m.text, m.start, m.end) for m in mentions])
    entities = list(Entity.objects.filter(kb=kb))
    profiles = embed(
        texts=[profile_text(name=e.name, description=e.description) for e in entities], encoder_name=kb.encoder_name
    )
    with transaction.atomic():
        sums: dict[int, np.ndarray] = {}
        for mention, vector in zip(mentions, vectors):
            mention.embedding = vector.tobytes()
            sums[mention.entity_id] = sums.get(mention.entity_id, 0) + vector
        Mention.objects.bulk_update(mentions, ["embedding"], batch_size=500)
        for entity, profile in zip(entities, profiles):
            total = sums.get(entity.pk)
            entity.aggregate = None if total is None else np.asarray(total, dtype=np.float32).tobytes()
            entity.profile = profile.tobytes()
        Entity.objects.bulk_update(entities, ["aggregate", "profile"], batch_size=500)
        KnowledgeBase.objects.filter(pk=kb.pk).update(context_style=kb.context_style)
        _revision_bump(kb)
        audit_record(user=user, action="kb_edit", target=kb.label, detail={"op": "reembed", "mentions": len(mentions)})
    return len(mentions)


# --- Linking (a read, but audited) ------------------------------------------------------------


def text_link(
    *, user, kb: KnowledgeBase, text: str, params: LinkerParams | None = None, audit: bool = True
) -> LinkResult:
    if not isinstance(text, str) or not text.strip():
        raise LinkingError("the text is empty: type or paste a sentence")
    if len(text) > settings.LINKING_MAX_TEXT_CHARS:
        raise LinkingError(
            f"the text has {len(text)} characters; the limit is {settings.LINKING_MAX_TEXT_CHARS}: split it"
        )
    # Cached contexts: opening a mention's details links the same text again. People (page, API) also see
    # the names no alias covers, as NIL mentions.
    params = replace(params or LinkerParams.from_settings(), unknown_names=True)
    result = link(state=kb_state(kb), text=text, params=params, cache=True)
    if audit:
        audit_record(
            user=user,
            action="link",
            target=kb.label,
            detail={"chars": len(text), "mentions": len(result.mentions), "latency_ms": round(result.latency_ms, 1)},
        )
    return result


# --- Corrections ("this is the one I meant") --------------------------------------------------


@dataclass
class CorrectionOutcome:
    """What linking says about one span after a correction, and why when it is still not the entity meant."""

    meant_key: str
    meant_name: str
    mention: object | None  # LinkedMention at the span (None: the span is no longer detected)
    index: int | None  # its position in result.mentions
    result: LinkResult
    fixed: bool
    reasons: list[str]
    can_pin: bool  # the entity meant is a candidate: pinning this context makes it win
    needs_alias: bool  # the surface is not an alias of the entity meant


def _mention_at(result: LinkResult, start: int, end: int):
    for index, mention in enumerate(result.mentions):
        if (mention.start, mention.end) == (start, end):
            return index, mention
    return None, None


def correction_outcome(*, kb: KnowledgeBase, result: LinkResult, start: int, end: int, key: str) -> CorrectionOutcome:
    """Is the span at start..end of the linked text now the entity `key`? If not, which stored mention, prior or
    bar decided otherwise, and which stronger fix applies."""
    from .selectors import mentions_by_id

    meant = Entity.objects.filter(kb=kb, key=key).first()
    if meant is None:
        raise NotFound(f"no entity {key!r} in {kb.label}")
    index, mention = _mention_at(result, start, end)
    if mention is None:
        return CorrectionOutcome(key, meant.name, None, None, result, False,
                                 ["the text no longer has a mention at that place"], False, False)
    fixed = mention.entity is not None and mention.entity.key == key
    by_key = {c.entity.key: c for c in mention.candidates}
    mine = by_key.get(key)
    reasons: list[str] = []
    if fixed:
        if mention.pinned_by:
            reasons.append(f"a pinned correction (stored mention #{mention.pinned_by}) decides this context")
        return CorrectionOutcome(key, meant.name, mention, index, result, True, reasons, False, False)
    if mine is None:
        reasons.append(f"“{mention.text}” is not an alias of {meant.name}, so {meant.name} is not even a candidate")
        return CorrectionOutcome(key, meant.name, mention, index, result, False, reasons, False, True)
    best = mention.candidates[0]
    if best.entity.key != key:
        reasons.append(
            f"{best.entity.name} scored {best.score:.3f} against {mine.score:.3f} for {meant.name} "
            f"(similarity {best.similarity or 0:.3f} vs {mine.similarity or 0:.3f}; prior {best.prior:.2f} vs {mine.prior:.2f})"
        )
        if best.evidence:
            mid, sim = best.evidence[0]
            stored = mentions_by_id(ids=[mid]).get(mid)
            if stored is not None:
                reasons.append(f"its closest stored mention won: “{stored.text[:160]}” (cosine {sim:.3f})")
        if mine.evidence:
            mid, sim = mine.evidence[0]
            reasons.append(f"the closest stored mention of {meant.name} has cosine {sim:.3f}")
    if mention.entity is None and mention.nil_bar is not None:
        top = mention.candidates[0]
        reasons.append(
            f"NIL: {top.entity.name}'s similarity {top.similarity or 0:.3f} is below the bar {mention.nil_bar:.3f} "
            f"(the larger of the floor and a share of its typical similarity)"
        )
    return CorrectionOutcome(key, meant.name, mention, index, result, False, reasons, True, False)


def mention_correct(
    *, user, kb: KnowledgeBase, text: str, start: int, end: int, key: str, pin: bool = False, add_alias: bool = False
) -> CorrectionOutcome:
    """"This is the one I meant": store the mention in exactly the context the linker read it in (so the new
    stored mention is the nearest one there is), link the text again and say whether it now resolves to `key`.
    `pin` stores it as a pinned correction (that context then always links to `key`); `add_alias` first adds
    the surface as an alias of `key` (when it is not one, the entity cannot be a candidate)."""
    if not isinstance(text, str) or not (0 <= start < end <= len(text)):
        raise LinkingError("the mention's span is outside the text")
    entity = Entity.objects.filter(kb=kb, key=key).first()
    if entity is None:
        raise NotFound(f"no entity {key!r} in {kb.label}")
    surface = text[start:end]
    if add_alias and not entity.aliases.filter(norm=fold(surface)).exists():
        alias_add(user=user, kb=kb, key=key, alias=surface)
    before = text_link(user=user, kb=kb, text=text, audit=False)
    _, mention = _mention_at(before, start, end)
    if mention is None:  # a hand-marked span the detector does not find
        mention = link(state=kb_state(kb), text=text, spans=[(start, end)], cache=True).mentions[0]
    context = mention.context or mention_context_plain(text, start, end, style=kb.context_style)
    mention_add(user=user, kb=kb, key=key, mention=MentionInput(context.text, context.start, context.end), pinned=pin)
    after = text_link(user=user, kb=kb, text=text)
    return correction_outcome(kb=kb, result=after, start=start, end=end, key=key)
