import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_demo_page_example_chart_and_compare(logged_in_page, demo_models):
    page = logged_in_page
    page.goto("/models/")
    page.click("text=tfidf-logreg")
    page.wait_for_url("**/models/tfidf-logreg/")
    page.locator("button.example").first.click()
    page.wait_for_selector("#predicted-label")
    assert page.inner_text("#predicted-label") in demo_models["tfidf-logreg@1"].labels
    # plotly drew the bar chart (app.js draws after the htmx swap)
    page.wait_for_selector("[data-chart=prediction-chart] .main-svg")
    assert page.locator("[data-chart=prediction-chart] .bars path").count() >= 3
    # the example is now in the text box, ready to edit
    assert page.input_value("textarea[name=text]").strip()
    # Ctrl+Enter classifies the edited text, as the button does
    page.fill("textarea[name=text]", "Doctors at the hospital gave the vaccine to every patient")
    page.press("textarea[name=text]", "Control+Enter")
    expect(page.locator("#predicted-label")).to_have_text("health")  # (no wait_for_function: the CSP forbids eval)

    page.click("text=Flag this prediction")
    page.wait_for_selector(".flag-result")
    assert "flagged for review" in page.inner_text(".flag-result")

    page.goto("/models/tfidf-logreg/compare/")
    page.select_option("select[name=a]", "tfidf-logreg@1")
    page.select_option("select[name=b]", "tfidf-logreg@2")
    page.fill("textarea[name=text]", "The team won the match and the league title")
    page.click("button:has-text('Compare')")
    page.wait_for_selector("#comparison [data-chart=compare-chart-b] .main-svg")
    sides = page.locator("#comparison .side h2").all_inner_texts()
    assert sides[0].startswith("v1:") and sides[1].startswith("v2:")
    assert page.locator("#comparison .main-svg").count() >= 2
    assert page.is_visible("#agreement")
    assert page.console_errors == []


def test_batch_column_picker_reads_the_csv_header(logged_in_page, demo_models):
    page = logged_in_page
    page.goto("/models/tfidf-logreg/batch/")
    page.set_input_files("input[type=file]", files=[{"name": "r.csv", "mimeType": "text/csv",
                                                     "buffer": "id,review,stars\n1,great food,5\n".encode()}])
    page.wait_for_selector("select[name=text_column]")
    options = page.locator("select[name=text_column] option").all_inner_texts()
    assert options == ["id", "review", "stars"]
    page.select_option("select[name=text_column]", "review")
    assert page.console_errors == []


def test_batch_preview_chooses_body_over_id_and_submits_it(logged_in_page, demo_models, redis_server):
    from apps.modelhub.models import BatchJob

    page = logged_in_page
    page.goto("/models/tfidf-logreg/batch/")
    csv_text = ("id,body\n1,The striker scored twice and the club won the league title\n"
                "2,Shares fell after the bank cut its profit forecast\n")
    page.set_input_files("input[type=file]", files=[{"name": "reviews.csv", "mimeType": "text/csv",
                                                     "buffer": csv_text.encode()}])
    page.wait_for_selector("#batch-preview-rows li")
    assert page.input_value("select[name=text_column]") == "body"
    rows = page.locator("#batch-preview-rows li").all_inner_texts()
    assert rows == ["The striker scored twice and the club won the league title",
                    "Shares fell after the bank cut its profit forecast"]
    # choosing the id column previews the ids and warns that they are numbers
    page.select_option("select[name=text_column]", "id")
    page.wait_for_selector("#batch-numeric-warning")
    assert page.locator("#batch-preview-rows li").all_inner_texts() == ["1", "2"]
    page.select_option("select[name=text_column]", "body")
    page.wait_for_selector("#batch-preview[data-text-column=body]")
    assert not page.is_visible("#batch-numeric-warning")
    page.click("button:has-text('Score it')")
    page.wait_for_selector("#batch-progress")
    assert "text column body" in page.inner_text("main")
    assert BatchJob.objects.get().text_column == "body"
    assert page.console_errors == []


def test_multi_line_compare_of_two_classifiers(logged_in_page, demo_models):
    page = logged_in_page
    page.goto("/models/tfidf-logreg/compare/")
    page.select_option("select[name=a]", "tfidf-logreg@1")
    page.select_option("select[name=b]", "minilm-topic@1")
    lines = ["stocks market earnings profit", "The team won the match and the league title",
             "doctors hospital patients vaccine"]
    page.fill("textarea[name=text]", "\n".join(lines))
    page.press("textarea[name=text]", "Control+Enter")  # submits, like the button
    page.wait_for_selector("#compare-rows tbody tr")
    rows = page.locator("#compare-rows tbody tr")
    assert rows.count() == 3  # three lines, three texts
    assert sorted(rows.locator("td.cell-long").all_inner_texts()) == sorted(lines)
    classes = [rows.nth(i).get_attribute("class") for i in range(3)]
    assert classes == sorted(classes, key=lambda c: c != "disagree")  # disagreements first
    header = page.inner_text("#compare-metrics thead")
    assert "tfidf-logreg v1" in header and "minilm-topic v1" in header
    assert "held-out accuracy" in page.inner_text("#compare-metrics")
    assert page.console_errors == []
