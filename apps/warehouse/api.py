from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status

from .models import Fallback
from .selectors import fallback_can_view
from .services import fallback_cancel

router = Router(tags=["warehouse"])


class FallbackOut(Schema):
    id: int
    state: str
    rows: list[dict]  # the warehouse's rows only; GET /api/search?...&fallback=<id> merges them with the local ones
    bytes_scanned: int | None
    bytes_are_estimate: bool
    cost_usd: float
    elapsed_ms: int
    error: str
    engine_query_id: str
    backend: str
    cancelled_by: str  # who stopped it ("" when nobody did)
    left: bool = False  # POST .../cancel by someone whose search only joined it: they left it, it runs on


class ErrorOut(Schema):
    detail: str


def _out(fallback: Fallback, *, left: bool = False) -> dict:
    return {
        "id": fallback.pk,
        "state": fallback.state,
        "rows": list(fallback.rows) if fallback.state == Fallback.State.SUCCEEDED else [],
        "bytes_scanned": fallback.bytes_scanned,
        "bytes_are_estimate": fallback.bytes_are_estimate,
        "cost_usd": float(fallback.cost_usd),
        "elapsed_ms": fallback.elapsed_ms,
        "error": fallback.error,
        "engine_query_id": fallback.engine_query_id,
        "backend": fallback.backend,
        "cancelled_by": fallback.cancelled_by_name,
        "left": left,
    }


@router.get("/fallbacks/{fallback_id}", response={200: FallbackOut, 403: ErrorOut}, url_name="fallback-detail",
            summary="A warehouse fallback: state, its rows once succeeded, bytes scanned, cost")
def fallback_get_endpoint(request, fallback_id: int):
    fallback = get_object_or_404(Fallback, pk=fallback_id)
    if not fallback_can_view(fallback=fallback, user=request.user):
        return Status(403, {"detail": "Only its creator, the people whose searches joined it, and staff see a fallback."})
    return Status(200, _out(fallback))


@router.post("/fallbacks/{fallback_id}/cancel", response={200: FallbackOut, 403: ErrorOut},
             url_name="fallback-cancel",
             summary="Cancel a fallback: its creator or staff stop the warehouse query; someone whose search "
                     "joined it leaves it (`left`: true), and it runs on")
def fallback_cancel_endpoint(request, fallback_id: int):
    fallback = get_object_or_404(Fallback, pk=fallback_id)
    outcome = fallback_cancel(fallback=fallback, user=request.user)  # anyone else: PermissionDenied, a 403
    return Status(200, _out(outcome.fallback, left=outcome.left))
