from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_spend_by_user
from apps.audit.services import audit_record


@pytest.mark.django_db
def test_audit_record_and_spend(user, staff_user):
    audit_record(user=user, action="fallback", target="text contains 'x'", cost_usd=0.000048, detail={"bytes": 10})
    audit_record(user=user, action="fallback", target="q2", cost_usd=Decimal("0.01"))
    audit_record(user=staff_user, action="prediction", target="tfidf-logreg@1")
    spend = {row["username"]: row for row in audit_spend_by_user(since=AuditEvent.objects.earliest("created_at").created_at)}
    assert spend["analyst"]["events"] == 2
    assert spend["analyst"]["cost_usd"] == Decimal("0.010048")
    assert spend["boss"]["cost_usd"] == 0


@pytest.mark.django_db
def test_unknown_action_is_refused(user):
    with pytest.raises(ValueError):
        audit_record(user=user, action="nonsense")


@pytest.mark.django_db
def test_staff_see_the_audit_log_in_admin_read_only(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "root-password-1")
    audit_record(user=admin, action="kb_edit", target="entity paris_city")
    client.force_login(admin)
    listing = client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200 and "entity paris_city" in listing.content.decode()
    assert client.get("/admin/audit/auditevent/add/").status_code == 403

