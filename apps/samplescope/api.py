"""The JSON API: one NinjaAPI, a router per domain app, OpenAPI docs at /api/docs.

Clients authenticate with `Authorization: Bearer <token>` (apps.accounts) or, from the
app's own pages, with their session. Anything else gets 401.

Errors become HTTP here, once: search errors 400/422/503, rate limits 429 with Retry-After, a body over
DATA_UPLOAD_MAX_MEMORY_SIZE 413, a JSON body with lone UTF-16 surrogates or NUL characters 400, and anything
unexpected a JSON 500 `{"detail": "Internal error", "id": …}` whose id is in the logged traceback (never the
traceback itself, DEBUG or not).
"""
import json
import logging
import re
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.parser import Parser
from ninja.security import HttpBearer, django_auth

from apps.accounts.selectors import api_token_active_get
from apps.accounts.services import api_token_use_record
from apps.core.ratelimit import RateLimited
from apps.search.errors import SearchError


class BearerToken(HttpBearer):
    openapi_scheme = "bearer"

    def authenticate(self, request, token):
        api_token = api_token_active_get(raw_token=token)
        if api_token is None:
            return None
        if api_token.read_only and request.method not in SAFE_METHODS:
            raise HttpError(403, "This API token is read-only: it may only GET.")
        api_token_use_record(token=api_token)
        request.user = api_token.user
        request.api_token = api_token  # a read-only one never starts a billed query (apps.samples.origin)
        return api_token.user


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
logger = logging.getLogger(__name__)


class JsonBodyRefused(ValueError):
    """A body that is JSON but that the app refuses; the message says why (the HttpError handler shows it)."""


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")  # NUL, and lone UTF-16 surrogates (a pair decodes to one char)


class StrictJsonParser(Parser):
    """JSON bodies whose every string (keys too) is text the app can store and encode: no lone UTF-16 surrogates
    (`"\\ud800"`: UTF-8 cannot encode them, so a model, the database or the response would fail on them) and no
    NUL characters (PostgreSQL text refuses them). Too deep nesting fails json.loads: 400 as well."""

    def parse_body(self, request):
        data = json.loads(request.body)
        pending = [data]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str) and _UNSTORABLE.search(item):
                bad = _UNSTORABLE.search(item).group()
                raise JsonBodyRefused(
                    "The JSON body holds a NUL character (\\u0000); send text without it." if bad == "\x00" else
                    "The JSON body holds a lone UTF-16 surrogate (such as \\ud800), which is not text; "
                    "send valid Unicode.")
        return data


api = NinjaAPI(
    title="Samplescope API",
    version="1",
    description="Sample search, warehouse fallbacks, model predictions and entity linking.",
    auth=[BearerToken(), django_auth],
    urls_namespace="api",
    docs_decorator=login_required,
    parser=StrictJsonParser(),
)



@api.exception_handler(SearchError)
def search_error(request, exc: SearchError):
    """The one mapping of search errors to HTTP: 400 malformed, 422 does not fit the table, 503 no subset."""
    return api.create_response(request, {"detail": str(exc), "errors": exc.errors}, status=exc.status)


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    """ninja's HttpErrors; a body the parser refused says why (ninja itself only says it could not parse it)."""
    detail = str(exc.__cause__) if isinstance(exc.__cause__, JsonBodyRefused) else str(exc)
    return api.create_response(request, {"detail": detail}, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def body_too_big(request, exc: RequestDataTooBig):
    limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 2**20
    return api.create_response(
        request, {"detail": f"The request body is over the {limit_mb:g} MB limit (UPLOAD_MAX_BYTES)."}, status=413)


@api.exception_handler(SuspiciousOperation)
def suspicious(request, exc: SuspiciousOperation):
    return api.create_response(request, {"detail": "Bad request."}, status=400)


@api.exception_handler(PermissionDenied)
def permission_denied(request, exc: PermissionDenied):
    return api.create_response(request, {"detail": str(exc) or "Permission denied."}, status=403)


@api.exception_handler(Exception)
def internal_error(request, exc: Exception):
    """Anything unexpected: logged with its traceback under an id, answered with only that id, even with DEBUG on
    (ninja's default shows the traceback then)."""
    error_id = uuid.uuid4().hex[:12]
    logger.error("Internal error %s in %s %s", error_id, request.method, request.path, exc_info=exc)
    return api.create_response(request, {"detail": "Internal error", "id": error_id}, status=500)


@api.exception_handler(RateLimited)
def rate_limited(request, exc: RateLimited):
    """429 with Retry-After for the per-user limits on expensive endpoints (apps/core/ratelimit.py)."""
    response = api.create_response(request, {"detail": str(exc)}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


api.add_router("/", "apps.core.api.router")
api.add_router("/", "apps.samples.api.router")
api.add_router("/", "apps.warehouse.api.router")
api.add_router("/", "apps.modelhub.api.router")
api.add_router("/", "apps.linking.api.router")
