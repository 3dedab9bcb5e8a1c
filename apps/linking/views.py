from __future__ import annotations

import re
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.roles import EDIT_KB, role_missing_message, role_required, user_has_role
from apps.core.ratelimit import rate_limit

from . import selectors, services
from .detection import sentence_around
from .forms import AliasForm, EntityForm, LinkForm, MentionForm
from .linker import LinkerParams, LinkResult
from .services import LinkingError, NotFound

# KB edits need the "kb editor" role (apps/accounts/roles.py); without it: 403.
kb_editor_required = role_required(EDIT_KB, what="Editing the knowledge base")


def _kb_or_404(model: str | None):
    try:
        return selectors.kb_get(name=model)
    except NotFound as exc:
        raise Http404(str(exc)) from exc


def _segments(*, kb, text: str, result: LinkResult) -> list[dict]:
    """The text cut into plain pieces and mentions, for highlighting."""
    pieces, cursor = [], 0
    for index, mention in enumerate(result.mentions):
        if mention.start > cursor:
            pieces.append({"text": text[cursor : mention.start]})
        pieces.append(
            {
                "text": mention.text,
                "mention": mention,
                "index": index,
                "url": _page_url(kb=kb, text=text, selected=index),
            }
        )
        cursor = mention.end
    if cursor < len(text):
        pieces.append({"text": text[cursor:]})
    return pieces


def _page_url(*, kb, text: str, selected: int | None = None, meant: str = "") -> str:
    params = {"text": text, "model": kb.label}
    if selected is not None:
        params["m"] = selected
    if meant:
        params["meant"] = meant
    return f"{reverse('linking:page')}?{urlencode(params)}"


@login_required
@rate_limit("link", when=lambda request: "text" in request.GET)
def page(request):
    """The demo: link a text, highlight its mentions, explain one (`m`), add it to the KB."""
    kbs = selectors.kb_list()
    model = request.GET.get("model") or None
    kb = None
    if kbs:
        try:
            kb = selectors.kb_get(name=model)
        except NotFound:
            messages.error(request, f"No entity-linking model {model!r}: showing the serving one.")
            kb = selectors.kb_get()
    form = LinkForm(request.GET if "text" in request.GET else None, initial={"text": ""})
    context = {
        "kb": kb,
        "kbs": kbs,
        "form": form,
        "result": None,
        "error": None,
        "selected": None,
        "nil_threshold": settings.LINKING_NIL_THRESHOLD,
        "nil_relative": settings.LINKING_NIL_RELATIVE,
        "top_k": settings.LINKING_TOP_K,
        "profile_weight": settings.LINKING_PROFILE_WEIGHT,
        "prior_weight": settings.LINKING_PRIOR_WEIGHT,
        "near_tie": LinkerParams.from_settings().near_tie,
    }
    if kb is not None and form.is_bound and form.is_valid():
        text = form.cleaned_data["text"]
        try:
            result = services.text_link(user=request.user, kb=kb, text=text)
        except LinkingError as exc:
            context["error"] = str(exc)
        else:
            context.update(result=result, text=text, segments=_segments(kb=kb, text=text, result=result))
            selected = request.GET.get("m", "")
            if selected.isascii() and selected.isdigit() and int(selected) < len(result.mentions):
                context["selected"] = _mention_detail(kb=kb, text=text, result=result, index=int(selected))
                meant = request.GET.get("meant", "")
                if meant:
                    mention = result.mentions[int(selected)]
                    try:
                        context["correction"] = services.correction_outcome(
                            kb=kb, result=result, start=mention.start, end=mention.end, key=meant
                        )
                    except NotFound:
                        pass
    elif form.is_bound and not form.is_valid():
        context["error"] = " ".join(e for errors in form.errors.values() for e in errors)
    if kb is not None:
        from apps.modelhub.snippets import api_snippets

        shown = context.get("text") or (kb.examples[0] if kb.examples else "Paris Hilton flew from Paris to Java.")
        context["snippets"] = api_snippets(
            url=request.build_absolute_uri("/api/link"),
            payload={"text": shown, "model": kb.label},
        )
        evaluations = selectors.evaluation_latest(kb=kb)
        context["evaluations"] = evaluations
        # Each run shows the KB revision it was computed on; the KB has moved on since when they differ (every
        # edit bumps it): the figures may no longer hold, and the page says so next to the current revision.
        context["evaluations_stale"] = any(run.kb_revision != kb.revision for run in evaluations.values())
        context["examples"] = [(example, _page_url(kb=kb, text=example)) for example in kb.examples]
    # Back/Forward past htmx's history cache asks for the whole page again (HX-History-Restore-Request): it gets
    # the page, form filled from the URL, not a partial.
    if request.htmx and not request.htmx.history_restore_request:
        part = "detail" if request.htmx.target == "mention-detail" else "results"
        response = render(request, f"linking/page.html#{part}", context)
    else:
        response = render(request, "linking/page.html", context)
    patch_vary_headers(response, ("HX-Request", "HX-History-Restore-Request"))
    return response


def _mention_detail(*, kb, text: str, result: LinkResult, index: int) -> dict:
    mention = result.mentions[index]
    evidence_ids = [mid for c in mention.candidates for mid, _ in c.evidence]
    stored = selectors.mentions_by_id(ids=evidence_ids)
    sentence, start, end = sentence_around(text, mention.start, mention.end)
    return {
        "index": index,
        "mention": mention,
        "sentence": mention.context.text if mention.context else sentence,
        "text": text,
        "candidates": [
            {
                "candidate": c,
                "evidence": [(stored[mid], sim) for mid, sim in c.evidence if mid in stored],
                "terms": _terms_shown(candidate=c, surface=mention.text),
            }
            for c in mention.candidates
        ],
        "add": {"text": sentence, "start": start, "end": end},
        "back": _page_url(kb=kb, text=text, selected=index),
        "new_entity_url": _new_entity_url(kb=kb, name=mention.text, sentence=sentence, start=start, end=end)
        if mention.entity is None
        else "",
        "entity_keys": selectors.entity_keys(kb=kb) if mention.entity is None else [],
    }


TERM_LABELS = {
    "mentions": "mean cosine of the {k} nearest stored mentions",
    "description": "cosine to its description (“name: description”)",
    "prior": "alias prior P(entity | “{surface}”)",
}


def _terms_shown(*, candidate, surface: str) -> list[dict]:
    """The score's terms as the page shows them: weight × value = contribution, 3 places, adding up to the score."""
    k = len(candidate.evidence)
    rows = []
    for term, shown in candidate.terms_shown:
        label = TERM_LABELS[term.name].format(k=k, surface=surface)
        if term.name == "mentions" and candidate.approximate:
            label = "cosine to the aggregate of its stored mentions (popular alias)"
        rows.append({"name": term.name, "label": label, "weight": term.weight, "value": term.value, "shown": shown})
    return rows


def _new_entity_url(*, kb, name: str, sentence: str, start: int, end: int) -> str:
    """The KB editor's form, filled in: the name, it as the alias, and this sentence as the first mention."""
    params = {
        "name": name,
        "id": re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:128],
        "aliases": name,
        "mentions": f"{sentence[:start]}[{sentence[start:end]}]{sentence[end:]}",
    }
    return f"{reverse('linking:kb', kwargs={'model': kb.label})}?{urlencode(params)}#add-entity"


@login_required
@rate_limit("link", when=lambda request: request.method == "POST")  # adding an entity embeds its mentions
def kb_entities(request, model: str):
    """KB editor: search entities, add one."""
    if request.method == "POST" and not user_has_role(user=request.user, permission=EDIT_KB):
        raise PermissionDenied(role_missing_message(permission=EDIT_KB, what="Editing the knowledge base"))
    kb = _kb_or_404(model)
    prefill = {k: request.GET[k] for k in ("id", "name", "aliases", "mentions") if k in request.GET}
    form = EntityForm(request.POST or None, initial=prefill)
    if request.method == "POST" and form.is_valid():
        try:
            entity = services.entity_create(user=request.user, kb=kb, data=form.entity_input())
        except LinkingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Added {entity.name} ({entity.key}); linking uses it from now on.")
            return redirect("linking:entity", model=kb.label, key=entity.key)
    query = request.GET.get("q", "")
    context = {
        "kb": kb,
        "form": form,
        "query": query,
        "entities": selectors.entity_list(kb=kb, query=query, limit=100),
        "total": selectors.entity_count(kb=kb),
        "alias_case_rule": services.ALIAS_CASE_RULE,
        "deletions": selectors.deletion_list(kb=kb),
    }
    if request.htmx and request.method == "GET":
        return render(request, "linking/kb.html#entity-table", context)
    return render(request, "linking/kb.html", context, status=400 if form.errors else 200)


@login_required
def entity_detail(request, model: str, key: str):
    kb = _kb_or_404(model)
    try:
        entity = selectors.entity_get(kb=kb, key=key)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    return render(
        request,
        "linking/entity.html",
        {
            "kb": kb,
            "entity": entity,
            "mention_form": MentionForm(),
            "alias_form": AliasForm(),
            "alias_case_rule": services.ALIAS_CASE_RULE,
        },
    )


@login_required
@kb_editor_required
@require_http_methods(["GET", "POST"])
def entity_delete(request, model: str, key: str):
    """GET: "Delete X and its N mentions?" (a page: works without JS); POST: delete, undoable from the history."""
    kb = _kb_or_404(model)
    if request.method == "GET":
        try:
            entity = selectors.entity_get(kb=kb, key=key)
        except NotFound as exc:
            raise Http404(str(exc)) from exc
        return render(request, "linking/entity_delete.html",
                      {"kb": kb, "entity": entity, "mention_count": entity.mentions.count()})
    try:
        deletion = services.entity_delete(user=request.user, kb=kb, key=key)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    messages.success(request, f"Deleted {deletion.name} and its {deletion.mention_count} mentions; linking no longer "
                              "offers it. Undo it from the history below.")
    return redirect(reverse("linking:kb", kwargs={"model": kb.label}) + "#history")


@login_required
@kb_editor_required
@require_POST
def entity_restore(request, model: str, deletion_id: int):
    """Undo a delete from the KB's history."""
    kb = _kb_or_404(model)
    try:
        entity = services.entity_restore(user=request.user, kb=kb, deletion_id=deletion_id)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except LinkingError as exc:
        messages.error(request, str(exc))
        return redirect(reverse("linking:kb", kwargs={"model": kb.label}) + "#history")
    messages.success(request, f"Restored {entity.name} with its aliases and mentions (KB revision {kb.revision}).")
    return redirect("linking:entity", model=kb.label, key=entity.key)


@login_required
@kb_editor_required
@require_POST
@rate_limit("link")  # embeds the sentence
def mention_add(request, model: str, key: str):
    """Add a mention: from the entity page ([bracketed] sentence) or from the demo ("this is the one I meant")."""
    kb = _kb_or_404(model)
    form = MentionForm(request.POST)
    back = request.POST.get("next") or ""
    # Only back to this site: "//evil.example" and "/\\evil.example" start with "/" but leave it.
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        back = reverse("linking:entity", kwargs={"model": kb.label, "key": key})
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(back)
    mention = form.cleaned_data["mention"]
    if not form.cleaned_data.get("sentence") and 0 <= mention.start < mention.end <= len(mention.text):
        text, start, end = sentence_around(mention.text, mention.start, mention.end)
        mention = services.MentionInput(text, start, end)
    try:
        services.mention_add(user=request.user, kb=kb, key=key, mention=mention)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except LinkingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Added “{mention.text[:80]}” as a mention of {key}.")
    return redirect(back)


@login_required
@kb_editor_required
@require_POST
def alias_add(request, model: str, key: str):
    kb = _kb_or_404(model)
    form = AliasForm(request.POST)
    if form.is_valid():
        wanted = form.cleaned_data["alias"].strip()
        try:
            alias = services.alias_add(user=request.user, kb=kb, key=key, alias=wanted)
        except NotFound as exc:
            raise Http404(str(exc)) from exc
        except LinkingError as exc:
            messages.error(request, str(exc))
        else:
            if alias.text == wanted:
                messages.success(request, f"The alias “{alias.text}” is in place.")
            else:
                messages.success(request, f"“{wanted}” is a case variant of “{alias.text}”, which covers it: merged.")
    else:
        messages.error(request, "Give an alias.")
    return redirect("linking:entity", model=kb.label, key=key)


@login_required
@kb_editor_required
@require_POST
@rate_limit("link")  # stores the mention and links the text again
def mention_correct(request, model: str):
    """"This is the one I meant": store the mention as the linker read it, link again, show the outcome."""
    kb = _kb_or_404(model)
    text = request.POST.get("text", "")
    key = request.POST.get("key", "").strip()
    try:
        start, end = int(request.POST.get("start", "")), int(request.POST.get("end", ""))
    except ValueError:
        messages.error(request, "The mention's place in the text is missing.")
        return redirect(_page_url(kb=kb, text=text))
    try:
        outcome = services.mention_correct(
            user=request.user, kb=kb, text=text, start=start, end=end, key=key,
            pin=request.POST.get("pin") == "1", add_alias=request.POST.get("add_alias") == "1",
        )
    except NotFound as exc:
        messages.error(request, str(exc))
        return redirect(_page_url(kb=kb, text=text))
    except LinkingError as exc:
        messages.error(request, str(exc))
        try:
            result = services.text_link(user=request.user, kb=kb, text=text, audit=False)
        except LinkingError:  # the text itself cannot be linked (empty, too long): back to the page
            return redirect(_page_url(kb=kb, text=text))
        index = next((i for i, m in enumerate(result.mentions) if (m.start, m.end) == (start, end)), None)
        return redirect(_page_url(kb=kb, text=text, selected=index, meant=key))
    messages.success(
        request,
        f"Stored “{text[start:end]}” in this context as a {'pinned ' if request.POST.get('pin') == '1' else ''}"
        f"mention of {key}, and linked the text again.",
    )
    return redirect(_page_url(kb=kb, text=text, selected=outcome.index, meant=key))
