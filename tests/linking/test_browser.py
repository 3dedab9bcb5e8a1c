import pytest
from playwright.sync_api import expect

from apps.audit.models import AuditEvent
from apps.linking.models import Mention


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_demo_page_link_explain_and_add_a_mention(logged_in_page, kb):
    page = logged_in_page
    page.goto("/linking/")
    page.fill("textarea[name=text]", "Achilles died from the arrow Paris shot at Troy. Programmers love Java.")
    page.click("#link-form button[type=submit]")
    paris = page.locator("#link-results a.ent", has_text="Paris")
    paris.wait_for()
    assert paris.get_attribute("data-entity") == "paris_trojan"
    assert "ent-person" in paris.get_attribute("class")
    assert page.locator("#link-results a.ent", has_text="Java").get_attribute("data-entity") == "java_language"
    assert "ms" in page.locator("#latency").inner_text()
    assert "text=" in page.url  # the result has a shareable address

    paris.click()  # htmx: the candidates and the stored mentions that decided it
    page.locator("#candidates").wait_for()
    assert page.locator("#candidates tbody tr[data-entity]").count() == 2  # one row each (and its "why" line)
    assert page.locator('#candidates tr[data-entity="paris_trojan"] mark').count() > 0

    before = Mention.objects.filter(entity__key="paris_france").count()
    page.locator('#candidates tr[data-entity="paris_france"] button.meant').click()
    page.locator(".msg", has_text="as a mention of paris_france").wait_for()
    added = Mention.objects.filter(entity__key="paris_france").latest("pk")
    assert Mention.objects.filter(entity__key="paris_france").count() == before + 1
    assert added.text == "Achilles died from the arrow Paris shot at Troy." and added.surface == "Paris"
    assert AuditEvent.objects.filter(action="kb_edit", detail__op="mention_add").exists()
    page.locator("#candidates").wait_for()  # back on the same mention, with the new evidence
    assert page.console_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_example_buttons_and_kb_editor(logged_in_page, kb):
    from apps.linking.models import KnowledgeBase

    KnowledgeBase.objects.filter(pk=kb.pk).update(examples=["Volcanoes cover the island of Java in Indonesia."])
    page = logged_in_page
    page.goto("/linking/")
    page.click("a.example")
    java = page.locator("#link-results a.ent", has_text="Java")
    java.wait_for()
    assert java.get_attribute("data-entity") == "java_island"
    # "Indonesia" is a name the small KB does not know: shown as NIL
    assert page.locator("#link-results a.ent", has_text="Indonesia").get_attribute("data-entity") == "NIL"
    page.click("text=Edit the knowledge base")
    page.fill("#entity-q", "amazon")
    page.locator("#entity-table a", has_text="Amazon River").wait_for()
    expect(page.locator("#entity-table tbody tr")).to_have_count(2)
    assert page.console_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_correction_changes_the_result(logged_in_page, kb):
    page = logged_in_page
    page.goto("/linking/")
    page.fill("textarea[name=text]", "The Eiffel Tower lit up over Paris while tourists crowded the boulevards.")
    page.click("#link-form button[type=submit]")
    paris = page.locator("#link-results a.ent", has_text="Paris")
    paris.wait_for()
    assert paris.get_attribute("data-entity") == "paris_france"
    paris.click()
    page.locator('#candidates tr[data-entity="paris_trojan"] button.meant').click()
    # stored and linked again: still Paris, France, and the page says why and offers the stronger fix
    page.locator("#correction").wait_for()
    assert page.get_attribute("#correction", "data-fixed") == "0"
    assert "Still not Paris (mythology)" in page.inner_text("#correction")
    assert "closest stored mention won" in page.inner_text("#correction")
    page.click("#pin-button")
    page.locator('#correction[data-fixed="1"]').wait_for()
    assert "now links to Paris (mythology)" in page.inner_text("#correction")
    assert page.locator("#link-results a.ent", has_text="Paris").get_attribute("data-entity") == "paris_trojan"
    assert page.is_visible("#pinned-note")
    assert page.console_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_kb_editor_accepts_an_alias_list_with_case_variants(logged_in_page, kb):
    page = logged_in_page
    page.goto(f"/linking/kb/{kb.label}/")
    assert "lower case (python) matches any casing" in page.inner_text("#alias-case-rule")
    page.fill("input[name=id]", "python_language")
    page.fill("input[name=name]", "Python")
    page.select_option("select[name=type]", "other")
    page.fill("input[name=aliases]", "Python, python, PYTHON")
    page.fill("textarea[name=description]", "Programming language created by Guido van Rossum.")
    page.fill("textarea[name=mentions]", "Data scientists write most of their notebooks in [Python] these days.")
    page.click("#add-entity button[type=submit]")
    page.wait_for_url("**/entities/python_language/")
    assert page.locator("#entity-card .badge").all_inner_texts() == ["python"]
    page.fill("input[name=alias]", "PYTHON")
    page.click("text=Add alias")
    page.locator(".msg", has_text="case variant").wait_for()
    assert page.locator("#entity-card .badge").all_inner_texts() == ["python"]
    assert page.console_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_unknown_name_is_shown_as_nil_and_can_be_added(logged_in_page, kb):
    page = logged_in_page
    page.goto("/linking/")
    text = "Angela Merkel met Emmanuel Macron in Berlin to discuss Airbus."
    page.fill("textarea[name=text]", text)
    page.press("textarea[name=text]", "Control+Enter")  # links, like the button
    merkel = page.locator("#link-results a.ent", has_text="Angela Merkel")
    merkel.wait_for()
    names = page.locator("#link-results a.ent[data-unknown='1']").all_inner_texts()
    assert [n.splitlines()[0].removesuffix("NIL").removesuffix("nil").strip() for n in names] == [
        "Angela Merkel", "Emmanuel Macron", "Berlin", "Airbus"]
    assert merkel.get_attribute("data-entity") == "NIL" and "ent-nil" in merkel.get_attribute("class")
    assert "not in the KB" in merkel.get_attribute("title")
    merkel.click()
    page.locator("#nil-reason").wait_for()
    assert "no alias in the KB covers" in page.inner_text("#nil-reason")
    # one click to the KB editor, filled in with the name and this sentence as its first mention
    page.click("#add-as-entity")
    page.wait_for_url("**/linking/kb/**")
    assert page.input_value("input[name=name]") == "Angela Merkel"
    assert page.input_value("textarea[name=mentions]") == f"[Angela Merkel]{text[len('Angela Merkel'):]}"
    page.select_option("select[name=type]", "person")
    page.fill("textarea[name=description]", "German chancellor from 2005 to 2021.")
    page.click("#add-entity button[type=submit]")
    page.wait_for_url("**/entities/angela_merkel/")
    page.goto("/linking/?" + __import__("urllib.parse").parse.urlencode({"text": text}))
    assert page.locator("#link-results a.ent", has_text="Angela Merkel").get_attribute("data-entity") == "angela_merkel"
    assert page.console_errors == []
