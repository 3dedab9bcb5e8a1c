"""The JSON API: one NinjaAPI, a router per domain app, OpenAPI docs at /api/docs.

Clients authenticate with `Authorization: Bearer <token>` (apps.accounts) or, from the
app's own pages, with their session. Anything else gets 401.
"""
from django.contrib.auth.decorators import login_required
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.security import HttpBearer, django_auth

from apps.accounts.selectors import api_token_active_get
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
        request.user = api_token.user
        request.api_token = api_token  # a read-only one never starts a billed query (apps.samples.origin)
        return api_token.user


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


api = NinjaAPI(
    title="Samplescope API",
    version="1",
    description="Sample search, warehouse fallbacks, model predictions and entity linking.",
    auth=[BearerToken(), django_auth],
    urls_namespace="api",
    docs_decorator=login_required,
)



@api.exception_handler(SearchError)
def search_error(request, exc: SearchError):
    """The one mapping of search errors to HTTP: 400 malformed, 422 does not fit the table, 503 no subset."""
    return api.create_response(request, {"detail": str(exc), "errors": exc.errors}, status=exc.status)


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
