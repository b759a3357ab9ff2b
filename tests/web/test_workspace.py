"""The retention workspace in a real browser: headless Chromium against the real server.

The tests run in file order on one browser page (one person's morning): sign in, filter the
worklist, download its CSV and compare it with ``/v1/at-risk``, open a customer, record an
outcome, see it in the worklist after a reload, sign out; then the safety checks (escaping,
CSRF, access log, revocation, the sign-in rate limit, which uses up this address's attempts
and so runs last).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.web.conftest import SIGNIN_LIMIT, XSS_ID, XSS_SEGMENT, Demo, save_screenshot

pytestmark = pytest.mark.slow  # trains the demo and drives a browser (make test, not test-fast)


@pytest.fixture(scope="module")
def context(browser) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def page(context) -> Iterator[object]:
    p = context.new_page()
    p.set_default_timeout(30_000)
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.dialogs = dialogs  # any alert() would mean a page ran injected script
    yield p
    p.close()


def api(demo: Demo) -> httpx.Client:
    return httpx.Client(base_url=demo.server.url, headers={"X-API-Key": demo.key}, timeout=30)


def submit(page, selector: str):
    """Click the submit button ``selector`` and wait until the page it leads to has loaded
    (not merely until the old page is still there); the response of that navigation."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    page.wait_for_load_state()
    return navigation.value


def sign_in(page, demo: Demo, key: str):
    page.goto(demo.server.url + "/")
    page.fill("#api_key", key)
    return submit(page, "form[action='/signin'] button[type=submit]")


def test_signed_out_visitor_gets_the_sign_in_page(page, demo: Demo):
    response = page.goto(demo.server.url + "/")
    assert page.url.endswith("/signin")
    assert page.locator("#api_key").is_visible()
    assert page.locator("table").count() == 0
    headers = response.all_headers()
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    save_screenshot(page, "signin")


def test_a_wrong_key_is_refused_and_logged_without_the_key(page, demo: Demo):
    wrong = "ck_wrong-key-" + "x" * 30
    sign_in(page, demo, wrong)
    assert page.url.endswith("/signin")
    assert "not valid" in page.locator("[role=alert]").inner_text()
    log = demo.server.log()
    assert "workspace sign-in failed" in log
    assert wrong not in log


def test_sign_in_opens_the_worklist_at_risk_by_value(page, context, demo: Demo):
    sign_in(page, demo, demo.key)
    page.wait_for_url("**/workspace")
    cookie = next(c for c in context.cookies() if c["name"] == "churn_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert demo.key not in cookie["value"]
    rows = page.locator("table.worklist tbody tr")
    assert rows.count() == 50
    with api(demo) as client:
        expected = client.get("/v1/at-risk", params={"status": "at_risk", "limit": 50}).json()
    shown = page.locator("table.worklist tbody a.cid").all_inner_texts()
    assert shown == [r["customer_id"] for r in expected["results"]]
    total = int(re.sub(r"\D", "", page.locator(".page-head p").inner_text().split(" ")[0]))
    assert total == expected["total"]
    assert page.locator(".change").first.inner_text().strip() != ""
    save_screenshot(page, "worklist")


def _filter_choice(page) -> tuple[str, str]:
    segments = [
        v
        for v in page.locator("#segment option").evaluate_all("o => o.map(x => x.value)")
        if v and "<" not in v
    ]
    assert segments, "the demo snapshot has segments"
    return segments[0], "medium"


def test_filtered_csv_is_exactly_what_the_api_lists(page, demo: Demo):
    segment, band = _filter_choice(page)
    page.select_option("#segment", segment)
    page.select_option("#band", band)
    submit(page, "form.filters button[type=submit]")
    assert page.locator("table.worklist tbody tr").count() > 0
    for row in page.locator("table.worklist tbody tr").all()[:20]:
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == segment and cells[2].lower() == band
    with page.expect_download() as download:
        page.click("text=Download CSV")
    ours = Path(download.value.path()).read_bytes()
    with api(demo) as client:
        theirs = client.get(
            "/v1/at-risk",
            params={"status": "at_risk", "segment": segment, "risk_band": band, "format": "csv"},
        )
    assert theirs.status_code == 200
    assert ours == theirs.content
    assert ours.count(b"\r\n") - 1 == int(
        re.sub(r"\D", "", page.locator(".page-head p").inner_text().split(" ")[0])
    )


def test_customer_page_records_an_outcome_shown_in_the_worklist(page, demo: Demo):
    worklist_url = page.url
    first = page.locator("table.worklist tbody a.cid").first
    customer_id = first.inner_text()
    first.click()
    page.wait_for_url("**/workspace/customers/**")
    assert customer_id in page.locator("h1").inner_text()
    assert page.locator("svg.chart").count() == 2
    assert page.locator("svg.chart circle.point").count() >= 2  # two kept snapshots
    assert page.locator("ol.reasons li").count() >= 1
    assert page.locator("table.facts").first.locator("tr").count() >= 1
    save_screenshot(page, "customer")
    page.check("input[name=outcome][value=saved]")
    page.fill("#note", "Offered a loyalty discount; accepted.")
    submit(page, "form.outcome-form button[type=submit]")
    history = page.locator("table.outcomes tbody tr").first.inner_text()
    assert "Saved" in history and "loyalty discount" in history and "anna" in history
    page.goto(worklist_url)
    page.reload()
    row = page.locator("table.worklist tbody tr", has=page.locator(f"text={customer_id}"))
    assert "Saved" in row.inner_text()
    page.check("#not_contacted")
    submit(page, "form.filters button[type=submit]")
    assert customer_id not in page.locator("table.worklist").inner_text()
    with api(demo) as client:
        recorded = client.get("/v1/outcomes", params={"format": "json"})
    if recorded.status_code == 200:  # the outcomes API, where the server has it
        assert customer_id in recorded.text


def test_a_post_without_the_session_csrf_token_is_refused(page, demo: Demo):
    customer_id = page.locator("table.worklist tbody a.cid").first.inner_text()
    url = f"{demo.server.url}/workspace/customers/{quote(customer_id, safe='')}/outcomes"
    response = page.request.post(url, form={"outcome": "lost", "note": "forged", "csrf": "no"})
    assert response.status == 403
    page.goto(url.removesuffix("/outcomes"))
    assert "forged" not in page.locator("#outcomes").inner_text()


def test_script_in_a_customer_id_or_segment_renders_as_text(page, demo: Demo):
    page.goto(f"{demo.server.url}/workspace?status=all&q={quote('<script>')}")
    link = page.locator("table.worklist tbody a.cid").first
    assert link.inner_text() == XSS_ID
    assert XSS_SEGMENT in page.locator("table.worklist tbody").inner_text()
    with page.expect_navigation():
        link.click()
    assert XSS_ID in page.locator("h1").inner_text()
    assert XSS_SEGMENT in page.locator(".page-head p").inner_text()
    assert page.title() != "pwned" and page.dialogs == []
    assert "&lt;script&gt;" in page.content()


def test_model_page_and_training_report(page, demo: Demo):
    page.goto(demo.server.url + "/workspace/model")
    with api(demo) as client:
        version = client.get("/v1/model").json()["version"]
    assert f"version {version}" in page.locator(".page-head p").inner_text()
    assert page.locator("table.metrics tbody tr").count() >= 3
    assert "Logistic regression" in page.locator("table.metrics thead").text_content()
    save_screenshot(page, "model")
    response = page.request.get(demo.server.url + "/workspace/model/report")
    assert response.status == 200 and "Churn model report" in response.text()
    assert "sandbox" in response.headers["content-security-policy"]


def test_the_access_log_holds_route_templates_not_ids_or_filters(demo: Demo):
    access = [ln for ln in demo.server.log().splitlines() if " /workspace" in ln]
    assert any("GET /workspace/customers/{customer_id:path}" in ln for ln in access)
    assert all("?" not in ln and "segment=" not in ln and "C0" not in ln for ln in access)


def test_sign_out_leaves_nothing_to_see(page, context, demo: Demo):
    page.goto(demo.server.url + "/workspace")
    old = next(c for c in context.cookies() if c["name"] == "churn_session")["value"]
    submit(page, "form.signout button[type=submit]")
    assert page.url.endswith("/signin")
    assert all(c["name"] != "churn_session" for c in context.cookies())
    page.go_back()
    page.goto(demo.server.url + "/workspace")
    assert page.url.endswith("/signin")
    assert page.locator("table").count() == 0 and "C0" not in page.content()
    replay = httpx.get(
        demo.server.url + "/workspace", cookies={"churn_session": old}, follow_redirects=False
    )
    assert replay.status_code == 303 and replay.headers["location"] == "/signin"


def test_revoking_the_key_ends_its_sessions(browser, demo: Demo):
    key = demo.make_key("temp")
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        sign_in(page, demo, key)
        page.wait_for_url("**/workspace")
        demo.make_key("temp")  # rotation: the old key, and its sessions, are gone
        page.goto(demo.server.url + "/workspace")
        assert page.url.endswith("/signin")
    finally:
        ctx.close()


def test_failed_sign_ins_are_rate_limited(browser, demo: Demo):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        statuses = []
        for _ in range(SIGNIN_LIMIT + 1):
            shown = page.goto(demo.server.url + "/signin")
            assert shown is not None and shown.status == 200, shown and shown.status
            page.fill("#api_key", "ck_not-a-key")
            statuses.append(submit(page, "form[action='/signin'] button[type=submit]").status)
        assert statuses[-1] == 429 and "Too many" in page.content()
        assert 401 in statuses
    finally:
        ctx.close()
