"""Entity linking over the JSON API: /api/link and the KB editor's /api/kb/<model>/... endpoints."""

from __future__ import annotations

from django.conf import settings
from ninja import Router, Schema, Status
from pydantic import Field

from apps.accounts.roles import EDIT_KB, api_role_require
from apps.core.ratelimit import rate_limit_hit

from . import selectors, services
from .linker import LinkResult
from .services import EntityInput, LinkingError, MentionInput, NotFound

router = Router(tags=["entity linking"])


class ErrorOut(Schema):
    detail: str


class LinkIn(Schema):
    text: str
    model: str | None = Field(None, description="KB name or name@version; default: the serving linker")


class TermOut(Schema):
    name: str = Field(..., description="mentions, description or prior")
    weight: float
    value: float
    contribution: float = Field(..., description="weight × value, rounded so the contributions add up to the score")


class CandidateOut(Schema):
    entity_id: str
    score: float
    terms: list[TermOut] = Field([], description="the score as a sum of weight × value terms")


class NearTieOut(Schema):
    entity_id: str
    score: float
    runner_up_id: str
    runner_up_score: float
    text: str


class LinkedMentionOut(Schema):
    start: int
    end: int
    text: str
    entity_id: str | None
    entity_name: str | None
    type: str | None
    score: float
    candidates: list[CandidateOut]
    unknown: bool = Field(False, description="a capitalised name that no alias of the KB covers (NIL)")
    nil_reason: str = Field("", description="why the mention is NIL (empty when linked)")
    near_tie: NearTieOut | None = Field(
        None, description="the runner-up's score is within LINKING_NEAR_TIE of the best"
    )


class LinkOut(Schema):
    model: str
    revision: int
    mentions: list[LinkedMentionOut]
    latency_ms: float


class MentionIn(Schema):
    text: str = Field(..., description="the context sentence")
    start: int
    end: int = Field(..., description="exclusive")


class MentionOut(Schema):
    id: int
    entity_id: str
    text: str
    start: int
    end: int


class EntityIn(Schema):
    id: str
    name: str
    type: str = "other"
    aliases: list[str] = []
    description: str = ""
    url: str = ""
    mentions: list[MentionIn] = []


class EntityOut(Schema):
    id: str
    name: str
    type: str
    aliases: list[str]
    description: str
    url: str
    mention_count: int


class EntityListOut(Schema):
    model: str
    count: int
    entities: list[EntityOut]


def link_result_json(result: LinkResult) -> dict:
    return {
        "model": result.kb_label,
        "revision": result.kb_revision,
        "latency_ms": round(result.latency_ms, 2),
        "mentions": [
            {
                "start": m.start,
                "end": m.end,
                "text": m.text,
                "entity_id": m.entity.key if m.entity else None,
                "entity_name": m.entity.name if m.entity else None,
                "type": m.entity.type if m.entity else None,
                "score": round(m.score, 4),
                "candidates": [
                    {
                        "entity_id": c.entity.key,
                        "score": round(c.score, 4),
                        "terms": [
                            {"name": t.name, "weight": round(t.weight, 4), "value": round(t.value, 4),
                             "contribution": shown}
                            for t, shown in c.terms_shown
                        ],
                    }
                    for c in m.candidates
                ],
                "unknown": m.unknown,
                "nil_reason": m.nil_reason,
                "near_tie": near_tie_json(m),
            }
            for m in result.mentions
        ],
    }


def near_tie_json(mention) -> dict | None:
    if mention.near_tie is None:
        return None
    best, second = mention.near_tie
    return {
        "entity_id": best.entity.key,
        "score": round(best.score, 4),
        "runner_up_id": second.entity.key,
        "runner_up_score": round(second.score, 4),
        "text": mention.near_tie_text,
    }


def entity_json(entity) -> dict:
    return {
        "id": entity.key,
        "name": entity.name,
        "type": entity.type,
        "aliases": [a.text for a in entity.aliases.all()],
        "description": entity.description,
        "url": entity.url,
        "mention_count": getattr(entity, "mention_count", None) or entity.mentions.count(),
    }


@router.post("/link", response={200: LinkOut, 400: ErrorOut, 404: ErrorOut})
def link(request, payload: LinkIn):
    """Find and link the entity mentions in `text` (at most settings.LINKING_MAX_TEXT_CHARS characters)."""
    rate_limit_hit(user=request.user, scope="link")
    try:
        kb = selectors.kb_get(name=payload.model)
        result = services.text_link(user=request.user, kb=kb, text=payload.text)
    except NotFound as exc:
        return Status(404, {"detail": str(exc)})
    except LinkingError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(200, link_result_json(result))


@router.get("/kb/{model}/entities", response={200: EntityListOut, 404: ErrorOut})
def entity_list(request, model: str, q: str = "", limit: int = 50):
    try:
        kb = selectors.kb_get(name=model)
    except NotFound as exc:
        return Status(404, {"detail": str(exc)})
    entities = selectors.entity_list(kb=kb, query=q, limit=max(1, min(limit, 500)))
    return Status(200, {"model": kb.label, "count": len(entities), "entities": [entity_json(e) for e in entities]})


@router.post("/kb/{model}/entities", response={201: EntityOut, 400: ErrorOut, 404: ErrorOut})
def entity_create(request, model: str, payload: EntityIn):
    """Add an entity with its aliases and mention sentences; linking uses it from the next request."""
    api_role_require(request=request, permission=EDIT_KB, what="Adding an entity")
    rate_limit_hit(user=request.user, scope="link")  # embeds its mentions
    if len(payload.mentions) > settings.LINKING_MAX_MENTIONS_PER_CALL:
        return Status(400, {"detail": f"At most {settings.LINKING_MAX_MENTIONS_PER_CALL} mentions per call; "
                                      f"got {len(payload.mentions)}."})
    if len(payload.aliases) > settings.LINKING_MAX_ALIASES_PER_CALL:
        return Status(400, {"detail": f"At most {settings.LINKING_MAX_ALIASES_PER_CALL} aliases per call; "
                                      f"got {len(payload.aliases)}."})
    try:
        kb = selectors.kb_get(name=model)
        entity = services.entity_create(
            user=request.user,
            kb=kb,
            data=EntityInput(
                key=payload.id,
                name=payload.name,
                type=payload.type,
                aliases=payload.aliases,
                description=payload.description,
                url=payload.url,
                mentions=[MentionInput(m.text, m.start, m.end) for m in payload.mentions],
            ),
        )
    except NotFound as exc:
        return Status(404, {"detail": str(exc)})
    except LinkingError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(201, entity_json(entity))


@router.delete("/kb/{model}/entities/{entity_id}", response={204: None, 404: ErrorOut})
def entity_delete(request, model: str, entity_id: str):
    api_role_require(request=request, permission=EDIT_KB, what="Deleting an entity")
    try:
        kb = selectors.kb_get(name=model)
        services.entity_delete(user=request.user, kb=kb, key=entity_id)
    except NotFound as exc:
        return Status(404, {"detail": str(exc)})
    return Status(204, None)


@router.post("/kb/{model}/entities/{entity_id}/mentions", response={201: MentionOut, 400: ErrorOut, 404: ErrorOut})
def mention_add(request, model: str, entity_id: str, payload: MentionIn):
    """Add a context sentence (with the mention's span) to an entity."""
    api_role_require(request=request, permission=EDIT_KB, what="Adding a mention")
    rate_limit_hit(user=request.user, scope="link")  # embeds the sentence
    try:
        kb = selectors.kb_get(name=model)
        mention = services.mention_add(
            user=request.user, kb=kb, key=entity_id, mention=MentionInput(payload.text, payload.start, payload.end)
        )
    except NotFound as exc:
        return Status(404, {"detail": str(exc)})
    except LinkingError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(
        201,
        {"id": mention.pk, "entity_id": entity_id, "text": mention.text, "start": mention.start, "end": mention.end},
    )
