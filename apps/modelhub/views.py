from __future__ import annotations

import os
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from apps.accounts.roles import MANAGE_MODELS, SEARCH, role_required, user_has_role
from apps.core.ratelimit import rate_limit
from apps.samples.selectors import SavedSearchUnknown
from apps.samples.services import saved_search_open
from apps.search.errors import SearchError

from .forms import AliasForm, BatchPreviewForm, BatchUploadForm, CompareForm, FlagForm, PredictForm, RegisterForm
from .models import BatchJob, ModelVersion
from .runtime import ModelRuntimeError, PredictionInputError
from .selectors import (
    ModelNotFound,
    batch_job_get,
    batch_job_list,
    flag_list,
    model_summary_list,
    model_version_get,
    model_versions_all,
    model_versions_of,
    shared_input_get,
)
from .services import (
    BatchInputError,
    RegistrationRefused,
    batch_csv_preview,
    batch_job_create,
    compare_texts_split,
    flags_csv,
    labelled_examples_check,
    model_alias_move,
    model_register,
    prediction_flag_create,
    prediction_make,
    scored_search_csv,
    shared_input_save,
    texts_compare,
)
from .snippets import api_snippets
from .store import StoreError

TOP_CLASSES = 5


# Registering versions and moving aliases need the "model manager" role (apps/accounts/roles.py): else 403.
model_manager_required = role_required(MANAGE_MODELS, what="Registering model versions and moving aliases")
# Batch scoring (upload, preview, job page, download) needs the analyst role, as scoring a search and running
# warehouse fallbacks do: it is data work that takes a shared worker for minutes. Without it: 403.
analyst_required = role_required(SEARCH, what="Batch scoring")


def _model_or_404(*, name: str, version: str | None = None) -> ModelVersion:
    try:
        return model_version_get(name=name, version=version or None)
    except ModelNotFound as exc:
        raise Http404(str(exc)) from exc


def probability_chart(*, prediction, title: str = "") -> dict:
    """Plotly spec: horizontal bars of the top classes' probabilities, best on top."""
    top = prediction.top(TOP_CLASSES)
    return {
        "data": [{
            "type": "bar", "orientation": "h",
            "x": [round(p, 4) for _, p in top], "y": [label for label, _ in top],
            "text": [f"{p:.1%}" for _, p in top], "textposition": "auto",
            "marker": {"color": ["#2f6fde"] + ["#9db5e6"] * (len(top) - 1)},
        }],
        "layout": {"height": 240, "title": {"text": title}, "xaxis": {"range": [0, 1], "tickformat": ".0%"},
                   "yaxis": {"autorange": "reversed", "automargin": True}, "margin": {"t": 30 if title else 10, "l": 110}},
    }


def _outcome(*, model_version: ModelVersion, text: str, user, chart_id: str) -> dict:
    """What the templates show for one scored text: prediction, chart, latency, truncation note."""
    batch = prediction_make(user=user, model_version=model_version, texts=[text], source="demo")
    prediction = batch.predictions[0]
    limit = model_version.card.get("input") or {}
    limit_text = (f"{limit['max_length']} tokens" if limit.get("kind") == "tokens"
                  else f"{limit.get('max_chars', 10000)} characters")
    return {
        "model_version": model_version, "prediction": prediction, "latency_ms": batch.latency_ms,
        "chart": probability_chart(prediction=prediction), "chart_id": chart_id, "limit_text": limit_text,
        "top": prediction.top(TOP_CLASSES), "text": text,
        "flag_form": FlagForm(labels=model_version.labels, initial={
            "version": model_version.version, "input_text": text, "predicted_label": prediction.label}),
    }


@login_required
def model_list(request):
    return render(request, "modelhub/list.html", {
        "summaries": model_summary_list(), "register_form": RegisterForm() if user_has_role(user=request.user, permission=MANAGE_MODELS) else None,
        "store_uri": settings.MODEL_STORE_URI,
    })


def _scores_text(request) -> bool:
    """Does this demo request run a model (a text to score, an example, a stored input, the labelled-examples
    check)? A POST without htmx only stores the text and redirects to the GET that scores it."""
    if request.method == "POST":
        return bool(request.htmx)
    return any(k in request.GET for k in ("text", "example", "check", SHARED_INPUT_PARAM))


# A demo or compare text travels by POST (it can be 100,000 characters: too long for a URL) and is stored
# (SharedInput); its results then live at a short URL, `?_in=<key>` (+ version, or a and b), that reloads,
# shares and comes back with Back and Forward. htmx gets the partial and HX-Push-Url; without JS, POST redirects
# there (Post/Redirect/Get).
SHARED_INPUT_PARAM = "_in"


def _submitted_data(request, *, keep: tuple[str, ...]):
    """The form data of this request: the POST; a GET's `?_in=` stored text with the `keep` parameters; a GET's
    own `text`/`example` (older links); else None. Raises Http404 for an unknown stored input."""
    if request.method == "POST":
        return request.POST
    if SHARED_INPUT_PARAM in request.GET:
        try:
            text = shared_input_get(key=request.GET[SHARED_INPUT_PARAM])
        except ModelNotFound as exc:
            raise Http404(str(exc)) from exc
        data = QueryDict(mutable=True)
        data.update({key: request.GET[key] for key in keep if key in request.GET})
        data["text"] = text
        return data
    if "text" in request.GET or "example" in request.GET:
        return request.GET
    return None


def _shared_url(*, viewname: str, name: str, text: str, params: dict) -> str:
    key = shared_input_save(text=text).key
    return reverse(viewname, args=[name]) + "?" + urlencode({SHARED_INPUT_PARAM: key, **params})


def _partial_or_page(request, *, template: str, partial: str, context: dict, push_url: str | None = None,
                     status: int = 200):
    """htmx gets the partial (and, with results, their URL to push); a page load or htmx's history restore (a
    Back to a page no longer in its cache) gets the whole page."""
    as_partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#{partial}" if as_partial else template, context, status=status)
    if as_partial and push_url:
        response["HX-Push-Url"] = push_url
    patch_vary_headers(response, ["HX-Request"])  # the same URL answers a partial or a page
    return response


@login_required
@rate_limit("predict", when=_scores_text)
def model_detail(request, name: str):
    """The demo page. A text is POSTed (stored, its results at `?_in=<key>&version=V`); GET `?_in=` (or an older
    `?text=`) shows the prediction. htmx gets the #demo partial."""
    serving = _model_or_404(name=name)
    versions = model_versions_of(name=name)
    data = _submitted_data(request, keep=("version",))
    form = PredictForm(data, versions=versions, initial={"version": serving.version})
    context = {"serving": serving, "versions": versions, "form": form, "model_version": serving,
               "flags_count": flag_list(name=name).count()}
    push_url = None
    if data is not None and form.is_valid():
        chosen = _model_or_404(name=name, version=form.cleaned_data.get("version"))
        context["model_version"] = chosen
        text = form.cleaned_data["text"]
        if request.method == "POST":
            push_url = _shared_url(viewname="modelhub:detail", name=name, text=text,
                                   params={"version": chosen.version})
            if not request.htmx:
                return redirect(push_url)
        if chosen.kind != ModelVersion.Kind.CLASSIFIER:
            form.add_error(None, f"v{chosen.version} is an {chosen.kind}: the demo scores classifiers only.")
            push_url = None
        else:
            try:
                context.update(_outcome(model_version=chosen, text=text, user=request.user,
                                        chart_id="prediction-chart"))
            except PredictionInputError as exc:
                form.add_error("text", str(exc))
            except (ModelRuntimeError, StoreError) as exc:
                form.add_error(None, f"The model could not run: {exc}")
        if not form.errors:
            # The box shows the text that was scored (an example's too), ready to edit and try again.
            context["form"] = PredictForm(versions=versions, initial={"text": text, "version": chosen.version})
    if request.GET.get("check") and context["model_version"].kind == ModelVersion.Kind.CLASSIFIER:
        context["check"] = labelled_examples_check(user=request.user, model_version=context["model_version"])
    if serving.kind == ModelVersion.Kind.CLASSIFIER:
        text = context.get("text") or (serving.examples[0] if serving.examples else "Type your text here")
        context["snippets"] = api_snippets(
            url=request.build_absolute_uri(f"/api/models/{name}/predict"),
            payload={"inputs": [text], "version": context["model_version"].version},
        )
    return _partial_or_page(request, template="modelhub/detail.html", partial="demo", context=context,
                            push_url=push_url if "prediction" in context else None)


def _model_ref(ref: str) -> ModelVersion:
    name, _, version = ref.partition("@")
    return _model_or_404(name=name, version=version or None)


@login_required
@rate_limit("predict", when=_scores_text)
def model_compare(request, name: str):
    """Two classifiers (two versions of one, or two different ones) on one or more texts, one a line (at most
    200). The texts are POSTed and stored; the results live at `?_in=<key>&a=NAME@V&b=NAME@V`."""
    serving = _model_or_404(name=name)
    classifiers = model_versions_all(kind=ModelVersion.Kind.CLASSIFIER)
    others = [mv for mv in classifiers if mv.name == name and mv.version != serving.version]
    other = others[0] if others else next((mv for mv in classifiers if mv.name != name), serving)
    initial = {"a": f"{serving.name}@{serving.version}", "b": f"{other.name}@{other.version}"}
    data = _submitted_data(request, keep=("a", "b"))
    form = CompareForm(data, versions=classifiers, name=name, initial=initial)
    context = {"serving": serving, "form": form}
    push_url = None
    if data is not None and form.is_valid():
        text = form.cleaned_data["text"]
        if request.method == "POST":
            push_url = _shared_url(viewname="modelhub:compare", name=name, text=text,
                                   params={"a": form.cleaned_data["a"], "b": form.cleaned_data["b"]})
            if not request.htmx:
                return redirect(push_url)
        try:
            a, b = _model_ref(form.cleaned_data["a"]), _model_ref(form.cleaned_data["b"])
            texts = compare_texts_split(text=text)
            comparison = texts_compare(user=request.user, a=a, b=b, texts=texts)
            context.update(comparison=comparison, same_model=a.name == b.name, text=text)
            if len(texts) == 1:
                sides = [
                    _outcome(model_version=mv, text=texts[0], user=request.user, chart_id=f"compare-chart-{side}")
                    for side, mv in (("a", a), ("b", b))
                ]
                context.update(sides=sides, agree=comparison.rows[0].agree)
        except PredictionInputError as exc:
            form.add_error("text", str(exc))
        except (ModelRuntimeError, StoreError) as exc:
            form.add_error(None, f"The model could not run: {exc}")
        if not form.errors:
            # The box shows the texts compared (an example's too), ready to edit.
            context["form"] = CompareForm(versions=classifiers, initial={**form.cleaned_data, "example": ""})
    return _partial_or_page(request, template="modelhub/compare.html", partial="comparison", context=context,
                            push_url=push_url if "comparison" in context else None)


@login_required
@require_POST
def flag_create(request, name: str):
    model_version = _model_or_404(name=name, version=request.POST.get("version"))
    form = FlagForm(request.POST, labels=model_version.labels)
    error = ""
    if form.is_valid():
        try:
            prediction_flag_create(
                user=request.user, model_version=model_version, input_text=form.cleaned_data["input_text"],
                predicted_label=form.cleaned_data["predicted_label"],
                correct_label=form.cleaned_data["correct_label"], comment=form.cleaned_data["comment"],
            )
        except PredictionInputError as exc:
            error = str(exc)
    else:
        error = "; ".join(m for errors in form.errors.values() for m in errors)
    if request.htmx:
        return render(request, "modelhub/_flagged.html", {"error": error, "name": name})
    if error:
        messages.error(request, f"Not flagged: {error}")
    else:
        messages.success(request, "Thanks: the prediction is flagged for review.")
    return redirect("modelhub:flags", name=name)


@login_required
def flag_list_view(request, name: str):
    _model_or_404(name=name)
    flags = flag_list(name=name)
    if request.GET.get("format") == "csv":
        response = HttpResponse(flags_csv(flags=flags), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}-flags.csv"'
        return response
    return render(request, "modelhub/flags.html", {"name": name, "flags": flags[:500]})


@login_required
@analyst_required
@rate_limit("batch", when=lambda request: request.method == "POST")
def batch_page(request, name: str):
    serving = _model_or_404(name=name)
    versions = model_versions_of(name=name)
    form = BatchUploadForm(request.POST or None, request.FILES or None, versions=versions,
                           initial={"version": serving.version})
    status = 200
    if request.method == "POST" and form.is_valid():
        model_version = _model_or_404(name=name, version=form.cleaned_data.get("version"))
        upload = form.cleaned_data["file"]
        try:
            job = batch_job_create(user=request.user, model_version=model_version, filename=upload.name,
                                   data=upload.read(), text_column=form.cleaned_data["text_column"],
                                   allow_numeric=form.cleaned_data["allow_numeric"])
        except BatchInputError as exc:
            form.add_error(None, str(exc))
        else:
            job.refresh_from_db()
            if job.state != BatchJob.State.FAILED:
                return redirect("modelhub:batch-detail", job_id=job.id)
            form.add_error(None, job.error_message)  # Redis down: not queued, and the job says so
            status = 503
    return render(request, "modelhub/batch.html", {
        "serving": serving, "form": form, "jobs": batch_job_list(name=name, user=request.user)[:20],
        "limit_mb": settings.BATCH_UPLOAD_MAX_BYTES / 2**20, "preview_max_bytes": PREVIEW_MAX_BYTES,
    }, status=status)


PREVIEW_MAX_BYTES = 64 * 1024


@login_required
@analyst_required
@require_POST
@rate_limit("batch")
def batch_preview(request, name: str):
    """htmx/fetch partial: the column picker and the first rows exactly as the job will score them."""
    serving = _model_or_404(name=name)
    form = BatchPreviewForm(request.POST, request.FILES)
    context = {"serving": serving}
    if not form.is_valid():
        context["error"] = "Choose a CSV file first."
    else:
        upload = form.cleaned_data["file"]
        data = upload.read(PREVIEW_MAX_BYTES + 1)
        partial = form.cleaned_data["partial"] or len(data) > PREVIEW_MAX_BYTES
        try:
            context["preview"] = batch_csv_preview(data=data[:PREVIEW_MAX_BYTES], partial=partial,
                                                   text_column=form.cleaned_data["text_column"])
        except BatchInputError as exc:
            context["error"] = str(exc)
        limit = serving.card.get("input") or {}
        context["max_chars"] = limit.get("max_chars") if limit.get("kind") == "text" else None
    return render(request, "modelhub/_batch_preview.html", context)


@login_required
@analyst_required
def batch_detail(request, job_id: int):
    try:
        job = batch_job_get(job_id=job_id, user=request.user)
    except ModelNotFound as exc:
        raise Http404(str(exc)) from exc
    if request.htmx:
        response = render(request, "modelhub/batch_detail.html#progress", {"job": job})
        if job.is_done:
            # 286 tells htmx to stop polling; the body still replaces the bar with the final state.
            stop = HttpResponseStopPolling(response.content)
            return stop
        return response
    return render(request, "modelhub/batch_detail.html", {"job": job})


@login_required
@analyst_required
def batch_download(request, job_id: int):
    try:
        job = batch_job_get(job_id=job_id, user=request.user)
    except ModelNotFound as exc:
        raise Http404(str(exc)) from exc
    if job.state != job.State.SUCCEEDED or not job.output_path or not os.path.exists(job.output_path):
        raise Http404("The scored file is not ready.")
    stem = os.path.splitext(job.original_name)[0] or "batch"
    return FileResponse(open(job.output_path, "rb"), as_attachment=True, filename=f"{stem}-scored.csv",
                        content_type="text/csv")


@login_required
@model_manager_required
@require_POST
def model_register_view(request):
    form = RegisterForm(request.POST)
    if form.is_valid():
        try:
            mv = model_register(uri=form.cleaned_data["uri"], user=request.user, aliases=form.cleaned_data["aliases"])
        except RegistrationRefused as exc:
            messages.error(request, f"Not registered: {exc}")
        else:
            messages.success(request, f"Registered {mv.name} v{mv.version}.")
            return redirect("modelhub:detail", name=mv.name)
    else:
        messages.error(request, "Not registered: give the URI of a version folder.")
    return redirect("modelhub:list")


@login_required
@model_manager_required
@require_POST
def alias_move_view(request, name: str):
    form = AliasForm(request.POST)
    if form.is_valid():
        try:
            model_alias_move(name=name, alias=form.cleaned_data["alias"], version=form.cleaned_data["version"],
                             user=request.user)
            messages.success(request, f"{form.cleaned_data['alias']} now points at v{form.cleaned_data['version']}.")
        except (ModelNotFound, ValueError) as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Give an alias (a word like candidate) and a version.")
    return redirect("modelhub:detail", name=name)


@login_required
@role_required(SEARCH, what="Scoring search results")  # it runs a search: the analyst role
@rate_limit("score")  # a search whose every row a model scores: its own, low limit
def score_search(request):
    """Runs the samples page's query, scores the text column with a model, compares with the label column."""
    from .services import search_results_score

    classifiers = [s for s in model_summary_list(kind=ModelVersion.Kind.CLASSIFIER)]
    name = request.GET.get("model") or (classifiers[0].name if classifiers else "")
    context = {"classifiers": classifiers, "name": name}
    try:
        model_version = model_version_get(name=name, version=request.GET.get("version") or None)
    except ModelNotFound as exc:
        context["error"] = str(exc) if name else "No classifier is registered yet: run `manage.py build_demo_models`."
        return render(request, "modelhub/score_search.html", context, status=404 if name else 200)
    search_params = [(k, v) for k, vs in request.GET.lists() for v in vs if k not in ("model", "version", "format")]
    own_params = [("model", model_version.name)] + (
        [("version", request.GET["version"])] if request.GET.get("version") else [])
    context.update(model_version=model_version, search_params=search_params,
                   search_url=reverse("samples:page") + ("?" + urlencode(search_params) if search_params else ""),
                   csv_url=reverse("modelhub:score-search") + "?" + urlencode(
                       own_params + search_params + [("format", "csv")]))
    try:  # `?_q=<key>`: the samples page's stored long search (its links above keep the short key)
        expanded = saved_search_open(params=QueryDict(urlencode(search_params)))
        search_params = [(k, v) for k, vs in expanded.lists() for v in vs]
    except SavedSearchUnknown as exc:
        context["error"] = str(exc)
        return render(request, "modelhub/score_search.html", context, status=404)
    try:
        scored = search_results_score(user=request.user, model_version=model_version, params=search_params)
    except (SearchError, ValueError) as exc:  # bad filters, no subset, nothing to score
        context["error"] = str(exc)
        status = 422 if request.GET.get("format") == "csv" else 200
        return render(request, "modelhub/score_search.html", context, status=status)
    if request.GET.get("format") == "csv":
        # the rows on screen, with prediction and probability (the same search, the same model, scored again)
        response = HttpResponse(scored_search_csv(scored=scored), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{scored.table}-scored-{model_version.name}-v{model_version.version}.csv"')
        return response
    context["scored"] = scored
    return render(request, "modelhub/score_search.html", context)
