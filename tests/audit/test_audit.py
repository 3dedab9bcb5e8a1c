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



@pytest.mark.django_db
def test_renaming_a_user_does_not_rewrite_who_did_what(client, user, staff_user):
    audit_record(user=user, action="search", target="before-the-rename", cost_usd=Decimal("0.5"))
    user.username = "renamed-analyst"
    user.save()
    audit_record(user=user, action="search", target="after-the-rename", cost_usd=Decimal("0.25"))

    client.force_login(staff_user)
    response = client.get("/dashboard/")
    html = response.content.decode()
    assert html.count("<td>analyst</td>") == 1 and html.count("<td>renamed-analyst</td>") == 1
    rows = {item.event.target: item.event.actor for item in response.context["activity"]}
    assert rows == {"before-the-rename": "analyst", "after-the-rename": "renamed-analyst"}
    spend = {row["username"]: row["cost_usd"] for row in response.context["audit_spend"]}
    assert spend == {"analyst": Decimal("0.5"), "renamed-analyst": Decimal("0.25")}

    # the admin's read-only list shows the stored name, and finds the event by it
    admin = type(user).objects.create_superuser("root", "root@example.com", "root-password-1")
    client.force_login(admin)
    listing = client.get("/admin/audit/auditevent/", {"q": "before-the-rename"}).content.decode()
    assert '<td class="field-actor">analyst</td>' in listing
    assert "renamed-analyst" not in listing
    assert "after-the-rename" in client.get("/admin/audit/auditevent/", {"q": "renamed-analyst"}).content.decode()


@pytest.mark.django_db
def test_deleting_a_user_keeps_their_name_on_their_events_and_system_events_stay_system(client, user, staff_user):
    audit_record(user=user, action="fallback", target="by-the-leaver", cost_usd=Decimal("2"))
    audit_record(user=None, action="subset_refresh", target="nightly-refresh")
    user.delete()

    client.force_login(staff_user)
    response = client.get("/dashboard/")
    html = response.content.decode()
    assert html.count("<td>analyst</td>") == 1 and html.count("<td>(system)</td>") == 1
    rows = {item.event.target: item.event.actor for item in response.context["activity"]}
    assert rows == {"by-the-leaver": "analyst", "nightly-refresh": "(system)"}
    assert {r["username"] for r in response.context["audit_spend"]} == {"analyst", "(system)"}
    assert str(AuditEvent.objects.get(target="by-the-leaver")).split()[2] == "analyst"


@pytest.mark.django_db
def test_the_migration_backfills_the_name_of_existing_events(user):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("apps.audit.migrations.0003_actor_name")
    old = AuditEvent.objects.create(user=user, action="search", target="written-before-0003")
    system = AuditEvent.objects.create(user=None, action="subset_refresh", target="system")
    assert old.actor_name == ""
    migration.backfill_actor_name(apps, None)
    old.refresh_from_db()
    system.refresh_from_db()
    assert old.actor_name == "analyst" and system.actor_name == ""
