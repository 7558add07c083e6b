"""The dashboard in a real headless Chromium (Selenium driving the system's chromium).

The data is recorded through the SDK against the live server, so the page renders what a user
would see. Screenshots land in ``.ci/artifacts/dashboard/`` (kept by CI, ignored by git).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drip import Drip

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait as _Wait  # noqa: E402


def WebDriverWait(driver: Any, timeout: float) -> Any:
    """A wait that reads again when the dashboard re-rendered the element it was reading
    (the pages refresh themselves)."""
    return _Wait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    # CI installs them (.ci/run); there a missing browser is a failure, not a skip
    if os.environ.get("CI"):
        raise RuntimeError(
            "chromium and chromedriver are required in CI (apt: chromium chromium-driver)"
        )
    pytest.skip(
        "needs chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for tests
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1360,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, max(900, min(int(height) + 40, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1360, 900)
    print(f"screenshot: {path}")
    return path


def wait_for(driver: Any, css: str, timeout: float = 15) -> Any:
    try:
        return WebDriverWait(driver, timeout).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css) or False
        )
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(f"{css!r} did not appear; page error: {error!r}") from None


def open_page(driver: Any, account: Any, fragment: str) -> None:
    driver.get(f"{account.base_url}/#{fragment}")


def sign_in(driver: Any, account: Any, route: str = "/runs") -> None:
    # the key travels in the fragment, as `drip serve` prints it, then leaves the URL
    open_page(driver, account, f"key={account.secret_key}")
    wait_for(driver, "#runs-table")
    if route != "/runs":
        driver.execute_script(f"location.hash = '#{route}'")


class Agent:
    """A small instrumented agent: a step with nested tool calls, a child run, one failure."""

    def __init__(self, client: Drip) -> None:
        metered = client.metered
        self.client = client
        self.search = metered(meter="tool_calls", event_type="tool.search")(self._sleep)
        self.llm = metered(meter="llm_tokens", event_type="llm.call", quantity=lambda r: r)(
            self._tokens
        )
        self.step = metered(meter="agent_steps", event_type="agent.research")(self._step)
        self.fetch = metered(meter="tool_calls", event_type="tool.fetch")(self._fetch)

    def _sleep(self) -> None:
        time.sleep(0.004)

    def _tokens(self, n: int) -> int:
        time.sleep(0.006)
        return n

    def _step(self) -> None:
        self.search()
        self.llm(420)

    def _fetch(self) -> None:
        time.sleep(0.003)
        raise TimeoutError("fetching https://example.org/broken timed out")


@pytest.fixture(scope="module")
def seeded(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One account with 30 runs of two customers; the last one has a child run and fails."""
    import uuid

    name = f"dash-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    account.public_key = live_server.create_key(name, public=True)
    client = Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1")
    acme = client.create_customer(external_customer_id="acme-corp")
    globex = client.create_customer(external_customer_id="globex")
    agent = Agent(client)
    for i in range(29):
        with client.run(workflow="nightly-report", customer_id=(acme, globex)[i % 2].id):
            agent.search()
            agent.llm(100 + i)
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("dashboard-test")
    with (
        tracer.start_as_current_span("session") as span,
        pytest.raises(TimeoutError),
        client.run(workflow="research-agent", customer_id=acme.id) as run,
    ):
        agent.step()
        with client.run(workflow="report-writer") as child:
            agent.llm(250)
            child.event("report.published", 1, units="reports")
        agent.fetch()
    report = client.flush(timeout=20)
    assert report.failed == 0, report
    client.close()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    return {
        "account": account,
        "run_id": run.id,
        "child_id": child.id,
        "acme": acme,
        "trace_id": trace_id,
    }


def test_run_list_pages_and_filters(browser: Any, seeded: dict[str, Any]) -> None:
    account = seeded["account"]
    sign_in(browser, account)
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr[data-run]")
    assert len(rows) == 25
    first_page = {r.get_attribute("data-run") for r in rows}
    assert seeded["child_id"] in first_page  # newest first
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#runs-table th")]
    assert header[:7] == ["RUN", "WORKFLOW", "CUSTOMER", "STATUS", "STARTED", "DURATION", "EVENTS"]
    shot(browser, "runs")
    browser.find_element(By.ID, "older").click()
    wait_for(browser, "#page-no")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "page-no").text == "Page 2")
    second = {
        r.get_attribute("data-run")
        for r in browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr[data-run]")
    }
    assert len(second) == 31 - 25  # 29 + the failing run + its child
    assert not first_page & second
    assert browser.find_element(By.ID, "older").get_attribute("disabled") is not None
    # filter: the failed runs only
    open_page(browser, account, "/runs?status=FAILED")
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr[data-run]")) == 1
    )
    row = browser.find_element(By.CSS_SELECTOR, "#runs-table tbody tr[data-run]")
    assert row.get_attribute("data-run") == seeded["run_id"]


def test_waterfall_shows_nested_events_child_run_and_error(
    browser: Any, seeded: dict[str, Any]
) -> None:
    account = seeded["account"]
    sign_in(browser, account, f"/runs/{seeded['run_id']}")
    wait_for(browser, "#waterfall .wf-row")
    rows = browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row")
    layout = [
        (
            r.get_attribute("data-kind"),
            int(r.get_attribute("data-depth")),
            r.find_element(By.CSS_SELECTOR, ".wf-name").text,
        )
        for r in rows
    ]
    # agent.research holds search + llm one level down; the child run holds its own events
    assert ("event", 0, "agent.research") in layout
    at = layout.index(("event", 0, "agent.research"))
    assert layout[at + 1 : at + 3] == [("event", 1, "tool.search"), ("event", 1, "llm.call")]
    assert ("run", 0, "run · Report Writer") in layout
    child = layout.index(("run", 0, "run · Report Writer"))
    assert ("event", 1, "report.published") in layout[child + 1 : child + 3]
    failed = browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row.failed")
    assert any("tool.fetch" in r.text and "TimeoutError" in r.text for r in failed)
    assert "TimeoutError" in browser.find_element(By.ID, "run-error").text
    assert browser.find_element(By.ID, "trace-id").text == seeded["trace_id"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-bar")
    lefts = {b.value_of_css_property("left") for b in bars}
    assert len(lefts) > 3  # bars placed along the time axis, not stacked at one spot
    rows[0].click()
    assert "agent.research" in browser.find_element(By.ID, "detail").text
    shot(browser, "run-waterfall")


def test_usage_chart_renders_for_a_customer_filter(browser: Any, seeded: dict[str, Any]) -> None:
    account = seeded["account"]
    sign_in(browser, account, "/usage?range=24h&customer=acme-corp")
    chart = wait_for(browser, "svg.chart[data-meter='llm_tokens']")[0]
    heights = [
        float(b.get_attribute("height")) for b in chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    ]
    assert len(heights) >= 24 and max(heights) > 0
    total = sum(
        float(b.get_attribute("data-q")) for b in chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    )
    # acme ran the even nightly reports (100 + i tokens) plus 420 + 250 in the failing run
    assert total == sum(100 + i for i in range(0, 29, 2)) + 420 + 250
    # one customer's usage has no per-customer table, and no stray "null" where it would be
    view = browser.find_element(By.ID, "view").text
    assert "null" not in view.split() and "Per customer" not in view
    shot(browser, "usage-customer")
    sign_in(browser, account, "/usage?range=7d")
    wait_for(browser, "#customer-usage tbody tr")
    table = browser.find_element(By.ID, "customer-usage").text
    assert "acme-corp" in table and "globex" in table
    shot(browser, "usage")


def test_customer_page_shows_both_ids(browser: Any, seeded: dict[str, Any]) -> None:
    account = seeded["account"]
    acme = seeded["acme"]
    sign_in(browser, account, "/customers/acme-corp")
    wait_for(browser, "#customer-ids")
    ids = browser.find_element(By.ID, "customer-ids").text
    assert acme.id in ids and "acme-corp" in ids
    wait_for(browser, "#runs-table tbody tr[data-run]")
    shot(browser, "customer")


def test_key_is_not_visible_and_lives_in_session_storage(
    browser: Any, seeded: dict[str, Any]
) -> None:
    account = seeded["account"]
    sign_in(browser, account)
    secret = account.secret_key
    assert secret not in browser.find_element(By.TAG_NAME, "body").text
    assert secret not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('drip.key')") == secret
    assert browser.execute_script("return localStorage.length") == 0
    badge = browser.find_element(By.ID, "key-badge").text
    assert badge.startswith("sk_") and secret[-4:] in badge and secret[8:-4] not in badge


def test_public_key_gets_a_clear_message(browser: Any, seeded: dict[str, Any]) -> None:
    account = seeded["account"]
    open_page(browser, account, f"key={account.public_key}")
    error = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "error").text or False)
    assert "public key" in error and "secret key" in error
    shot(browser, "public-key")
    browser.find_element(By.ID, "signout").click()
    assert browser.find_element(By.ID, "signin").is_displayed()


def test_security_headers(seeded: dict[str, Any]) -> None:
    base = seeded["account"].base_url
    for path in ("/", "/assets/app.js", "/assets/dashboard.css"):
        response = httpx.get(base + path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
    assert httpx.get(base + "/assets/..%2Fapp.py").status_code == 404
    assert httpx.get(base + "/assets/nothing.js").status_code == 404


def test_pages_leave_no_errors_in_the_console(browser: Any, seeded: dict[str, Any]) -> None:
    """Each page loads with nothing red in the browser's console (the page asked for a
    /favicon.ico the server does not have: a 404 on every visit)."""
    account = seeded["account"]
    browser.get_log("browser")  # what earlier tests left
    browser.get("about:blank")
    for route, css in (
        ("/runs", "#runs-table tbody tr[data-run]"),
        (f"/runs/{seeded['run_id']}", "#waterfall .wf-row"),
        ("/usage", "#customer-usage tbody tr"),
        ("/customers", "#customers-table tbody tr"),
    ):
        sign_in(browser, account, route)
        wait_for(browser, css)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_hostile_names_are_shown_as_text(browser: Any, live_server: Any) -> None:
    """Customer ids, workflows, meters, event types, units, metadata and error messages are
    the instrumented application's data: every page shows them as text, never as markup."""
    import uuid

    name = f"xss-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    evil = '<img src=x class=injected onerror="document.title=1"><b class=injected>b</b>'
    with Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1") as client:
        customer = client.create_customer(external_customer_id="c" + evil, metadata={"k": evil})
        client.track_usage(customer_id=customer.id, meter="m" + evil, quantity=3)
        with client.run("wf" + evil, customer_id=customer.id, correlation_id="t" + evil) as run:
            run.event("e" + evil, 2, units="u" + evil, metadata={"x": evil})
        with pytest.raises(ValueError), client.run("fail" + evil, customer_id=customer.id):
            raise ValueError("boom" + evil)
        assert client.flush(timeout=20).failed == 0
    for route, css in (
        ("/runs", "#runs-table tbody tr[data-run]"),
        (f"/runs/{run.id}", "#waterfall .wf-row"),
        ("/usage?range=24h", "#customer-usage tbody tr"),
        ("/customers", "#customers-table tbody tr"),
        (f"/customers/{customer.id}", "#customer-ids"),
    ):
        sign_in(browser, account, route)
        wait_for(browser, css)
        text = browser.find_element(By.ID, "view").text
        assert evil in text, route
        assert not browser.find_elements(By.CSS_SELECTOR, ".injected"), route
    assert browser.title != "1"


def test_a_run_of_more_events_than_a_timeline_page_is_drawn_whole_or_says_what_is_cut(
    browser: Any, live_server: Any
) -> None:
    """A run of 10,005 events: the waterfall draws its first 10,000 (it drew the first 5,000,
    one timeline page, and said nothing) and names what it left out, in a few seconds."""
    import uuid

    name = f"big-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    with Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1") as client:
        with client.run("bulk-job", external_customer_id="bulk") as run:
            for i in range(10_005):
                run.event("row.done", 1, metadata={"i": i})
        assert client.flush(timeout=60).failed == 0
    started = time.monotonic()
    sign_in(browser, account, f"/runs/{run.id}")
    notice = wait_for(browser, "#waterfall-cut", timeout=60)[0]
    assert time.monotonic() - started < 45
    count = browser.execute_script("return document.querySelectorAll('#waterfall .wf-row').length")
    assert count == 10_000
    assert "first 10,000 of 10,005 events" in notice.text and run.id in notice.text


def test_a_run_with_more_than_a_page_of_child_runs_shows_them_all(
    browser: Any, live_server: Any
) -> None:
    """A fan-out of 130 child runs: each is inline in the waterfall (the first 100, one page
    of the run list, were drawn and the other 30 left out without a word)."""
    import uuid

    name = f"fan-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    with Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1") as client:
        with client.run("fan-out", external_customer_id="fan") as run:
            for i in range(130):
                with client.run(f"part-{i}") as part:
                    part.event("part.done", 1)
        assert client.flush(timeout=60).failed == 0
    sign_in(browser, account, f"/runs/{run.id}")
    wait_for(browser, "#waterfall .wf-row")
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row.is-run")) >= 100
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row.is-run")) == 130
    assert len(browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row[data-kind=event]")) == 130
    assert not browser.find_elements(By.ID, "waterfall-cut")


def test_a_refused_filter_is_said_under_filters_that_stay(
    browser: Any, seeded: dict[str, Any]
) -> None:
    """A customer typed wrong (or a bad time) in the runs or usage filters: the 404's message
    under the filters, which keep what was typed to be corrected (the whole page was replaced
    by the message, the filters gone with it)."""
    account = seeded["account"]
    for route, form in (
        ("/runs?customer=acme-crop", "#filters"),
        ("/usage?range=24h&customer=acme-crop", "#usage-filters"),
    ):
        sign_in(browser, account, route)
        error = wait_for(browser, "#filter-error")[0]
        assert "acme-crop" in error.text
        field = browser.find_element(By.CSS_SELECTOR, f"{form} input[name=customer]")
        assert field.get_attribute("value") == "acme-crop"
        field.clear()
        field.send_keys("acme-corp")
        browser.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda d: not d.find_elements(By.ID, "filter-error"))
    wait_for(browser, "svg.chart[data-meter='llm_tokens']")
    sign_in(browser, account, "/runs?customer=acme-crop")
    wait_for(browser, "#filter-error")
    browser.find_element(By.CSS_SELECTOR, "#filters input[name=customer]").clear()
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(browser, "#runs-table tbody tr[data-run]")


def test_a_waterfall_of_big_child_runs_stays_within_one_budget(
    browser: Any, live_server: Any
) -> None:
    """Three child runs of 6,000 events each: the waterfall draws 10,000 events in all (it
    read every child's timeline whole, 18,000 rows and more without bound) and says which
    runs it cut."""
    import uuid

    name = f"kids-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    with Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1") as client:
        with client.run("parent", external_customer_id="kids") as run:
            for i in range(3):
                with client.run(f"part-{i}") as part:
                    for j in range(6_000):
                        part.event("row.done", 1, metadata={"j": j})
        assert client.flush(timeout=60).failed == 0
    sign_in(browser, account, f"/runs/{run.id}")
    notice = wait_for(browser, "#waterfall-cut", timeout=60)[0]
    rows = browser.execute_script(
        "return document.querySelectorAll('#waterfall .wf-row[data-kind=event]').length"
    )
    assert rows == 10_000
    assert len(browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row.is-run")) == 3
    assert "of 6,000 events" in notice.text


def test_customers_pages_end_where_the_customers_do(browser: Any, live_server: Any) -> None:
    """Exactly 50 customers, one page: no Next button leading to an empty page."""
    import uuid

    name = f"fifty-{uuid.uuid4().hex[:8]}"
    account = type("A", (), {})()
    account.base_url = live_server.url
    account.secret_key = live_server.create_key(name)
    with Drip(api_key=account.secret_key, base_url=f"{live_server.url}/v1") as client:
        for i in range(50):
            client.create_customer(external_customer_id=f"fifty-{i}")
    sign_in(browser, account, "/customers")
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#customers-table tbody tr")) == 50
    )
    assert browser.find_element(By.ID, "customers-next").get_attribute("disabled") is not None
