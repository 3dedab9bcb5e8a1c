"""The "fallback handle" apps.samples.pipeline gets back from `fallback_request`, also the object the
panel template renders, so the search page and the panel's polls show the same thing."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from .models import Fallback

PANEL_TEMPLATE = "warehouse/_fallback_panel.html"


@dataclass
class FallbackHandle:
    fallback: Fallback
    request_id: int | None = None
    from_cache: bool = False
    created: bool = False  # this search started a new warehouse query (not joined, reused or refused)
    may_stop: bool = True  # the viewer is its creator or staff; a joiner's "cancel" only leaves it
    left: bool = False  # this viewer's search left it (a joiner's cancel): the panel stops waiting for it
    panel_template: str = PANEL_TEMPLATE

    @property
    def id(self) -> int:
        return self.fallback.pk

    @property
    def state(self) -> str:
        return self.fallback.state

    @property
    def state_label(self) -> str:
        if self.fallback.state == Fallback.State.RUNNING and self.fallback.cancel_requested_at:
            return "Cancelling"
        return self.fallback.get_state_display()

    @property
    def is_active(self) -> bool:
        """Still worth waiting for, for this viewer: queued or running, and not left."""
        return self.fallback.is_active and not self.left

    @property
    def has_left(self) -> bool:
        """This viewer left it while it still runs for the others."""
        return self.left and self.fallback.is_active

    @property
    def can_cancel(self) -> bool:
        return self.is_active and not self.fallback.cancel_requested_at

    @property
    def rows(self) -> list[dict]:
        return list(self.fallback.rows) if self.fallback.state == Fallback.State.SUCCEEDED else []

    @property
    def error_message(self) -> str:
        return self.fallback.error

    @property
    def cancelled_by(self) -> str:
        return self.fallback.cancelled_by_name

    @property
    def url(self) -> str:
        return reverse("api:fallback-detail", kwargs={"fallback_id": self.id})

    @property
    def poll_url(self) -> str:
        url = reverse("warehouse:detail", kwargs={"fallback_id": self.id})
        return f"{url}?request={self.request_id}" if self.request_id else url

    @property
    def cancel_url(self) -> str:
        return reverse("warehouse:cancel", kwargs={"fallback_id": self.id})

    @property
    def poll_seconds(self) -> int:
        return max(1, min(2, settings.FALLBACK_PANEL_POLL_SECONDS))

    @property
    def elapsed_seconds(self) -> float:
        return round(self.fallback.elapsed_ms / 1000, 1)

    @property
    def bytes_scanned(self) -> int | None:
        return self.fallback.bytes_scanned

    @property
    def bytes_are_estimate(self) -> bool:
        return self.fallback.bytes_are_estimate

    @property
    def cost_usd(self):
        return self.fallback.cost_usd

    @property
    def query_text(self) -> str:
        return self.fallback.query_text

    @property
    def querystring(self) -> str:
        return self.fallback.querystring

    def as_api(self) -> dict:
        return {"id": self.id, "state": self.state, "url": self.url}

    def __bool__(self) -> bool:
        return True
