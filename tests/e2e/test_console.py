"""The console at /console, in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
installs) driven by Playwright, against a real Tally. Every number the pages show is checked against
the API's own answer for the same question. A page that logs an error, fails a request or reaches
another origin fails its test. Screenshots of each page go to .tally/console-screenshots/ for a
person to look at.

`make test` runs these few; the `full_suite` ones (`make etoe`) add the rest.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response, async_playwright

from tests.e2e.test_auth import cli_key
from tests.e2e.test_invoices_api import add_lines, invoice_now, line, metered_customer
from tests.support.metering import cloudevent, create_meter, ingest, query, query_until, rfc3339, total, unique
from tests.support.plans import plan_body
from tests.support.services import ROOT
from tests.support.stack import TallyProcess, create_database, wait_for
from tests.support.webhooks import WebhookReceiver

SCREENSHOTS = ROOT / ".tally" / "console-screenshots"
# Flags for Chromium on a machine with a closed network and no GPU (Playwright adds --headless and a
# fresh --user-data-dir of its own).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAY = datetime(2026, 3, 10, tzinfo=UTC)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: apt-get install -y chromium (.ci/run installs it)"
    return found


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@dataclass
class Watched:
    """What went wrong on a page while a test used it."""

    origin: str
    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def request(self, request: Request) -> None:
        if not request.url.startswith((self.origin + "/", "data:", "blob:")):
            self.problems.append(f"request to another origin: {request.url}")

    def failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")


@asynccontextmanager
async def console_page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    """A page in a fresh browser context (its own session storage), failing on any problem it saw."""
    # A fixed locale and zone, so the test knows how numbers and times are written.
    context = await browser.new_context(
        base_url=base_url, locale="en-US", timezone_id="UTC", viewport={"width": 1366, "height": 900}
    )
    opened = await context.new_page()
    watched = Watched(base_url)
    opened.on("console", watched.console)
    opened.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    opened.on("request", watched.request)
    opened.on("requestfailed", watched.failed)
    opened.on("response", watched.response)
    try:
        yield opened
    finally:
        await context.close()
    assert watched.problems == []


@pytest_asyncio.fixture
async def page(browser: Browser, tally: TallyProcess) -> AsyncIterator[Page]:
    async with console_page(browser, tally.rest_url) as opened:
        yield opened


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def number(text: str) -> float:
    """A number as the console writes it in en-US ("1,234.5")."""
    return float(text.replace(",", ""))


async def usage_meter(http: httpx.AsyncClient) -> tuple[str, str]:
    """A SUM meter grouped by model, with events on DAY in three hours, two models, two subjects."""
    slug = unique("console_tokens")
    event_type = unique("prompt")
    await create_meter(
        http, slug=slug, aggregation="SUM", eventType=event_type, valueProperty="$.tokens", groupBy={"model": "$.model"}
    )
    events = [
        cloudevent(event_type, subject, {"tokens": tokens, "model": model}, time=DAY + offset)
        for subject, model, tokens, offset in [
            ("acme", "gpt", 1200, timedelta(hours=1, minutes=5)),
            ("acme", "gpt", 34.5, timedelta(hours=1, minutes=40)),
            ("acme", "claude", 800, timedelta(hours=1, minutes=50)),
            ("globex", "claude", 2500.25, timedelta(hours=5)),
            ("globex", "gpt", 7, timedelta(hours=23, minutes=59)),
            # Outside the range the test asks for.
            ("globex", "gpt", 99, timedelta(days=1, minutes=1)),
        ]
    ]
    await ingest(http, events)
    await query_until(
        http, slug, lambda rows: total(rows) == 1200 + 34.5 + 800 + 2500.25 + 7 + 99, **{"from": rfc3339(DAY)}
    )
    return slug, event_type


async def open_page(page: Page, name: str) -> None:
    """Follows the navigation link to a page and waits for its heading: the console routes on the
    hash, so the page in view changes a moment after the click, and a field filled meanwhile by its
    label can be the previous page's field of the same name (a feature's Name, say)."""
    await page.get_by_role("link", name=name).click()
    await page.get_by_role("heading", name=name, exact=True).wait_for()


async def show_usage(page: Page, slug: str, *, window: str, group_by: list[str]) -> None:
    await page.get_by_label("Meter", exact=True).select_option(slug)
    await page.get_by_label("Time range", exact=True).select_option("custom")
    await page.get_by_label("Time zone", exact=True).fill("UTC")
    await page.get_by_label("From", exact=True).fill("2026-03-10T00:00")
    await page.get_by_label("To", exact=True).fill("2026-03-11T00:00")
    await page.get_by_label("Window size", exact=True).select_option(window)
    for key in group_by:
        await page.get_by_role("checkbox", name=key, exact=True).check()
    wanted = " ".join([slug, rfc3339(DAY), rfc3339(DAY + timedelta(days=1)), window, "UTC", ",".join(group_by)])
    await page.locator(f'section[data-state="done"][data-query="{wanted}"]').wait_for()


async def table_rows(page: Page) -> list[list[str]]:
    rows = page.locator('table[aria-label="Usage rows"] tbody tr')
    return [
        [cell.strip() for cell in await rows.nth(i).locator("td").all_inner_texts()] for i in range(await rows.count())
    ]


async def test_usage_table_chart_and_csv_show_the_meter_query(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    slug, _ = await usage_meter(http)
    # Keyless on loopback, as the API is: the console opens straight on the usage explorer.
    await page.goto("/console")
    await show_usage(page, slug, window="HOUR", group_by=["model"])

    api = await query(
        http,
        slug,
        **{"from": rfc3339(DAY), "to": rfc3339(DAY + timedelta(days=1))},
        windowSize="HOUR",
        windowTimeZone="UTC",
        groupBy="model",
    )
    expected = sorted(
        (
            row["windowStart"].replace("T", " ")[:16],
            row["windowEnd"].replace("T", " ")[:16],
            row["groupBy"]["model"],
            row["value"],
        )
        for row in api
    )
    shown = sorted((start, end, model, number(value)) for start, end, model, value in await table_rows(page))
    assert shown == expected
    assert len(shown) == 4  # hour 1: gpt and claude; hour 5: claude; hour 23: gpt
    footer = await page.locator('table[aria-label="Usage rows"] tfoot td.num').inner_text()
    assert number(footer) == sum(row["value"] for row in api) == 1200 + 34.5 + 800 + 2500.25 + 7
    # The chart is drawn (a canvas with pixels), from the same rows.
    chart = page.get_by_role("img", name=f"Usage of {slug}, stacked by group")
    assert (await chart.bounding_box() or {}).get("height", 0) > 100
    await screenshot(page, "usage")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    assert download.suggested_filename == f"{slug}-usage.csv"
    with Path(await download.path()).open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert sorted(
        (r["window_start"].replace(".000Z", "Z"), r["window_end"].replace(".000Z", "Z"), r["model"], float(r["value"]))
        for r in records
    ) == sorted((row["windowStart"], row["windowEnd"], row["groupBy"]["model"], row["value"]) for row in api)

    # A group-by value filter narrows the rows exactly as the API's filterGroupBy does.
    await page.get_by_label("model is one of", exact=True).fill("claude")
    wanted = " ".join([slug, rfc3339(DAY), rfc3339(DAY + timedelta(days=1)), "HOUR", "UTC", "model", "model=claude"])
    await page.locator(f'section[data-state="done"][data-query="{wanted}"]').wait_for()
    filtered = await query(
        http,
        slug,
        **{"from": rfc3339(DAY), "to": rfc3339(DAY + timedelta(days=1)), "filterGroupBy[model]": "claude"},
        windowSize="HOUR",
        windowTimeZone="UTC",
        groupBy="model",
    )
    assert sorted(row["value"] for row in filtered) == [800, 2500.25]
    shown = sorted(number(value) for *_, value in await table_rows(page))
    assert shown == sorted(row["value"] for row in filtered)


async def test_customer_page_shows_the_entitlement_values(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    slug = unique("console_calls")
    event_type = unique("call")
    await create_meter(http, slug=slug, aggregation="SUM", eventType=event_type, valueProperty="$.n")
    feature_key = unique("feat")
    assert (
        await http.post("/api/v1/features", json={"key": feature_key, "name": feature_key, "meterSlug": slug})
    ).status_code == 201
    key = unique("cust")
    name = f"Console {key}"
    created = await http.post(
        "/api/v1/customers",
        json={"name": name, "key": key, "currency": "USD", "usageAttribution": {"subjectKeys": [key]}},
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    entitlement = await http.post(
        f"/api/v2/customers/{customer['id']}/entitlements",
        json={
            "type": "metered",
            "featureKey": feature_key,
            "usagePeriod": {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z"},
            "measureUsageFrom": rfc3339(now - timedelta(minutes=10)),
            "issue": {"amount": 100},
        },
    )
    assert entitlement.status_code == 201, entitlement.text
    await ingest(http, [cloudevent(event_type, key, {"n": n}, time=now - timedelta(minutes=5)) for n in (30, 12.5)])
    value_path = f"/api/v2/customers/{customer['id']}/entitlements/{feature_key}/value"

    async def counted() -> dict[str, Any] | None:
        value: dict[str, Any] = (await http.get(value_path)).json()
        return value if value.get("usage") == 42.5 else None

    api = await wait_for(counted, timeout=30)
    assert api["balance"] == 57.5 and api["hasAccess"] is True

    await page.goto("/console#/customers")
    await page.get_by_label("Search by name", exact=True).fill(key)
    await page.get_by_role("link", name=name).click()
    row = page.locator(f'tr[data-feature="{feature_key}"]')
    await row.wait_for()
    assert await page.get_by_role("heading", name=name).is_visible()
    for column in ("balance", "usage", "overage"):
        assert number(await row.locator(f'td[data-column="{column}"]').inner_text()) == api[column], column
    assert (await row.locator("td").nth(2).inner_text()).strip() == "yes"
    # The grant the entitlement issued: its amount, priority and expiry.
    assert "100 · " in await row.locator("td").nth(7).inner_text()
    await screenshot(page, "customer")

    # Credits granted in the console move the balance the API reports, and the page shows it.
    await page.get_by_label("Entitlement", exact=True).select_option(feature_key)
    await page.get_by_label("Amount", exact=True).fill("50")
    await page.get_by_label("Priority", exact=True).fill("3")
    await page.get_by_role("button", name="Grant", exact=True).click()
    await page.get_by_role("status").filter(has_text=f"Granted 50 on {feature_key}.").wait_for()
    after: dict[str, Any] = (await http.get(value_path)).json()
    assert after["balance"] == 107.5
    balance = row.locator('td[data-column="balance"]')
    await page.locator(f'tr[data-feature="{feature_key}"] td[data-column="balance"][data-value="107.5"]').wait_for()
    assert number(await balance.inner_text()) == after["balance"]
    assert "50 · 3 · " in await row.locator("td").nth(7).inner_text()
    # The burn-down chart of the entitlement, from the history API, is drawn (and asked for no error).
    burn_down = page.locator(f'figure[data-feature="{feature_key}"][data-state="done"]')
    await burn_down.wait_for()
    assert (await burn_down.get_by_role("img").bounding_box() or {}).get("height", 0) > 100
    assert await page.get_by_role("alert").count() == 0
    await screenshot(page, "customer-after-grant")


async def test_readme_quickstart_in_the_console(page: Page, tally: TallyProcess, http: httpx.AsyncClient) -> None:
    """The README's quickstart done in the console instead of curl: a meter, a feature on it, a
    customer, a metered entitlement issuing 1,000 a month, two events sent from the Events page; the
    customer's page then shows the usage and balance the API reports, and the usage explorer the meter
    query's rows. Refusals are the server's."""
    slug = unique("console_qs")
    event_type = unique("prompt")
    feature_key = unique("qs_tokens")
    key = unique("qs_acme")
    name = f"Quickstart {key}"

    await page.goto("/console#/meters")
    await page.get_by_label("Slug", exact=True).fill(slug)
    await page.get_by_label("Event type", exact=True).fill(event_type)
    await page.get_by_label("Aggregation", exact=True).select_option("SUM")
    await page.get_by_label("Value (JSONPath)", exact=True).fill("$.tokens")
    await page.get_by_label("Group by (key=JSONPath, ...)", exact=True).fill("model=$.model")
    await page.get_by_role("button", name="Create meter").click()
    await page.locator(f'tr[data-meter="{slug}"]').wait_for()

    await open_page(page, "Features")
    await page.get_by_label("Key", exact=True).fill(feature_key)
    await page.get_by_label("Meter (slug; empty for a boolean or static feature)", exact=True).fill(slug)
    await page.get_by_role("button", name="Create feature").click()
    await page.locator(f'tr[data-feature="{feature_key}"]').wait_for()

    await open_page(page, "Customers")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Key", exact=True).fill(key)
    await page.get_by_role("button", name="Create customer").click()
    await page.get_by_role("link", name=name).click()
    await page.get_by_role("heading", name=name).wait_for()

    # The entitlement: first a feature that does not exist (the server's refusal, as worded), then
    # the README's one.
    await page.get_by_label("Type", exact=True).select_option("metered")
    await page.get_by_label("Feature key", exact=True).fill(unique("no_such_feature"))
    await page.get_by_role("button", name="Create entitlement").click()
    refusal = page.get_by_role("alert")
    await refusal.wait_for()
    assert (await refusal.inner_text()).split(":")[0] in {"NotFound", "InvalidArgument", "FailedPrecondition"}
    await page.get_by_label("Feature key", exact=True).fill(feature_key)
    await page.get_by_label("Usage period", exact=True).select_option("MONTH")
    await page.get_by_label("Issue after reset (amount)", exact=True).fill("1000")
    await page.get_by_role("button", name="Create entitlement").click()
    row = page.locator(f'tr[data-feature="{feature_key}"]')
    await row.wait_for()
    entitlement = (await http.get(f"/api/v2/customers/{key}/entitlements/{feature_key}")).json()
    assert entitlement["usagePeriod"]["interval"] == "MONTH" and entitlement["issue"]["amount"] == 1000

    # Events, sent from the Events page with the time left at "now"; data that is no JSON object is
    # refused by the server, in its words.
    await open_page(page, "Events")
    await page.get_by_label("Subject contains", exact=True).fill(key)
    await page.get_by_label("Type", exact=True).fill(event_type)
    await page.get_by_label("Subject", exact=True).fill(key)
    await page.get_by_label("Data (JSON object)", exact=True).fill("{tokens: 42")
    await page.get_by_role("button", name="Send event").click()
    refusal = page.get_by_role("alert")
    await refusal.wait_for()
    assert (await refusal.inner_text()).startswith("InvalidArgument: ")
    event_id = "none yet"
    for tokens, model in ((42, "gpt-4o"), (8, "claude")):
        await page.get_by_label("Data (JSON object)", exact=True).fill(f'{{"tokens": {tokens}, "model": "{model}"}}')
        await page.get_by_role("button", name="Send event").click()
        # The answer to this send, not the one before it.
        sent = page.get_by_role("status").filter(has_text="Sent ").filter(has_not_text=event_id)
        await sent.wait_for()
        event_id = (await sent.inner_text()).removeprefix("Sent ").removesuffix(".")
        # The tail shows it, counted.
        tail_row = page.locator(f'tr[data-event-id="{event_id}"]')
        await tail_row.wait_for()
        assert (await tail_row.locator("td").nth(5).inner_text()).strip() == "yes"
    await screenshot(page, "quickstart-events")

    value_path = f"/api/v2/customers/{key}/entitlements/{feature_key}/value"

    async def counted() -> dict[str, Any] | None:
        value: dict[str, Any] = (await http.get(value_path)).json()
        return value if value.get("usage") == 50 else None

    api = await wait_for(counted, timeout=30)
    assert api["balance"] == 950 and api["hasAccess"] is True
    await page.goto(f"/console#/customers/{key}")
    for column in ("usage", "balance"):
        await page.locator(
            f'tr[data-feature="{feature_key}"] td[data-column="{column}"][data-value="{api[column]}"]'
        ).wait_for()
        assert number(await row.locator(f'td[data-column="{column}"]').inner_text()) == api[column]
    await screenshot(page, "quickstart-customer")

    # The usage explorer, by model, over the hours around now (a range that ends in the future, so
    # the current minute counts): the meter query's rows, 50 tokens in all.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - timedelta(hours=1), hour + timedelta(hours=2)
    await open_page(page, "Usage")
    await page.get_by_label("Meter", exact=True).select_option(slug)
    await page.get_by_label("Time range", exact=True).select_option("custom")
    await page.get_by_label("Time zone", exact=True).fill("UTC")
    await page.get_by_label("From", exact=True).fill(start.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("To", exact=True).fill(end.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("Window size", exact=True).select_option("HOUR")
    await page.get_by_role("checkbox", name="model", exact=True).check()
    wanted = " ".join([slug, rfc3339(start), rfc3339(end), "HOUR", "UTC", "model"])
    await page.locator(f'section[data-state="done"][data-query="{wanted}"]').wait_for()
    rows = await query(
        http,
        slug,
        **{"from": rfc3339(start), "to": rfc3339(end)},
        windowSize="HOUR",
        windowTimeZone="UTC",
        groupBy="model",
    )
    assert sum(r["value"] for r in rows) == 50
    shown = sorted((model, number(value)) for *_, model, value in await table_rows(page))
    assert shown == sorted((r["groupBy"]["model"], r["value"]) for r in rows)
    footer = await page.locator('table[aria-label="Usage rows"] tfoot td.num').inner_text()
    assert number(footer) == 50


def test_console_is_served_on_the_rest_port_with_no_outside_sources(tally: TallyProcess) -> None:
    with httpx.Client(base_url=tally.rest_url, timeout=10) as client:
        for path in ("/console", "/console/", "/console/customers/anything"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-cache"
            policy = page.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert '<script type="module" crossorigin src="/console/assets/console.js">' in page.text
        script = client.get("/console/assets/console.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        # The built bundle (make console), not the page that says how to build it.
        assert len(script.content) > 100_000


@pytest.fixture(scope="module")
def secured(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    """A Tally that requires API keys (on loopback, where the default would be keyless)."""
    stack = TallyProcess(
        data_dir=tmp_path_factory.mktemp("tally-console-auth"),
        postgres_url=asyncio.run(create_database()),
        extra_env={"TALLY_AUTH__REQUIRED": "true"},
    )
    stack.start()
    yield stack
    stack.stop()


async def sign_in(page: Page, key: str) -> None:
    await page.get_by_label("API key", exact=True).fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_sign_in_with_keys_of_each_scope(browser: Browser, secured: TallyProcess) -> None:
    namespace = unique("console")
    reader = cli_key(secured, namespace, "read")["key"]
    writer = cli_key(secured, namespace, "read", "write")["key"]
    async with console_page(browser, secured.rest_url) as page:
        await page.goto("/console#/customers")
        # No key: the console asks for one (the API answers 401 without it).
        await page.get_by_role("heading", name="Sign in to Tally").wait_for()
        await sign_in(page, "tly_nothing_like_a_key")
        alert = page.get_by_role("alert")
        await alert.wait_for()
        assert (await alert.inner_text()).startswith("Unauthenticated: ")

        # A read-only key: its namespace and scopes are shown, and no write is offered.
        await sign_in(page, reader)
        await page.get_by_role("heading", name="Customers").wait_for()
        assert await page.get_by_test_id("namespace").inner_text() == namespace
        assert await page.get_by_test_id("scopes").inner_text() == "read"
        await page.locator('section[aria-label="Customer list"][data-state="done"]').wait_for()
        assert await page.get_by_role("button", name="Create customer").count() == 0
        # The key is in the tab's session storage, never in the URL.
        assert await page.evaluate("sessionStorage.getItem('tally.console.apiKey')") == reader
        assert reader not in page.url
        await screenshot(page, "customers-read-only")
        # Kept across a reload of the tab.
        await page.reload()
        await page.get_by_test_id("namespace").wait_for()

        await page.get_by_role("button", name="Sign out").click()
        assert await page.evaluate("sessionStorage.getItem('tally.console.apiKey')") is None
        await sign_in(page, writer)
        assert await page.get_by_test_id("scopes").inner_text() == "read, write"
        name = f"Console {unique('c')}"
        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_role("button", name="Create customer").click()
        # Refused with the server's own reason: a customer needs a key or a subject.
        refusal = page.get_by_role("alert")
        await refusal.wait_for()
        assert (await refusal.inner_text()).startswith("InvalidArgument: ")
        assert "usageAttribution.subjectKeys" in await refusal.inner_text()
        await page.get_by_label("Key", exact=True).fill(unique("c"))
        await page.get_by_role("button", name="Create customer").click()
        await page.get_by_role("link", name=name).wait_for()
        await screenshot(page, "customers")
        # Sending events takes the ingest scope, which write does not imply: no form for this key.
        await open_page(page, "Events")
        await page.locator('section[aria-label="Event list"][data-state="done"]').wait_for()
        assert await page.get_by_role("button", name="Send event").count() == 0
    # Created in the key's namespace, through the API.
    with httpx.Client(base_url=secured.rest_url, headers={"authorization": f"Bearer {writer}"}) as client:
        listed = client.get("/api/v1/customers", params={"name": name})
        assert [customer["name"] for customer in listed.json()["items"]] == [name]


async def preview_shown(page: Page, sample: dict[str, Any]) -> dict[str, Any]:
    """Pastes the sample event into the create form and reads the preview once it answers for it."""
    await page.get_by_label("Sample event (CloudEvent JSON, for the preview)", exact=True).fill(
        orjson.dumps(sample).decode()
    )
    preview = page.locator('section[aria-label="Meter preview"][data-state="done"]')
    await preview.wait_for()
    shown: dict[str, Any] = {"errors": await preview.get_by_role("listitem").all_inner_texts()}
    if not shown["errors"]:
        shown["value"] = await preview.locator('dd[data-preview="value"]').inner_text()
        shown["kind"] = await preview.locator('dd[data-preview-group="kind"]').inner_text()
        shown["counted"] = await preview.locator('dd[data-preview="skipReason"]').inner_text()
    return shown


async def preview_answer(
    http: httpx.AsyncClient, event_type: str, value_property: str, sample: dict[str, Any]
) -> dict[str, Any]:
    """What PreviewMeter answers over REST for the definition the meters test types into the form."""
    response = await http.post(
        "/api/v1/tally/meters/preview",
        json={
            "eventType": event_type,
            "aggregation": "SUM",
            "valueProperty": value_property,
            "groupBy": {"kind": "$.kind"},
            "sampleEvent": orjson.dumps(sample).decode(),
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.full_suite
async def test_events_tail_and_meters_pages(page: Page, tally: TallyProcess, http: httpx.AsyncClient) -> None:
    slug = unique("console_bytes")
    event_type = unique("upload")
    await create_meter(http, slug=slug, aggregation="SUM", eventType=event_type, valueProperty="$.bytes")
    subject = unique("tail")
    await page.goto("/console#/events")
    await page.get_by_label("Subject contains", exact=True).fill(subject)
    await page.locator('section[aria-label="Event list"][data-state="done"]').wait_for()

    # Sent while the page is open: the live tail shows them without a reload.
    sent = {
        "counted": cloudevent(event_type, subject, {"bytes": 512}),
        "bad value": cloudevent(event_type, subject, {"bytes": {"not": "a number"}}),
        "no meter": cloudevent(unique("nobody_meters"), subject, {"bytes": 1}),
    }
    await ingest(http, list(sent.values()))
    rows = page.locator('table[aria-label="Events"] tbody tr')
    for event in sent.values():
        await page.locator(f'tr[data-event-id="{event["id"]}"]').wait_for()
    assert await rows.count() == 3
    listed = {
        item["event"]["id"]: item for item in (await http.get("/api/v1/events", params={"subject": subject})).json()
    }
    for name, event in sent.items():
        counted = (await page.locator(f'tr[data-event-id="{event["id"]}"] td').nth(5).inner_text()).strip()
        if name == "counted":
            assert counted == "yes" and listed[event["id"]].get("validationError") is None
        elif name == "bad value":
            assert counted == listed[event["id"]]["validationError"] != ""
        else:
            assert (
                counted == listed[event["id"]]["validationError"] == f"no meter found for event type: {event['type']}"
            )
    await screenshot(page, "events")

    # The navigation works from the keyboard.
    await page.get_by_role("link", name="Events").focus()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console#/meters")
    meter_row = page.locator(f'tr[data-meter="{slug}"]')
    await meter_row.wait_for()
    cells = [cell.strip() for cell in await meter_row.locator("td").all_inner_texts()]
    assert cells[:5] == [slug, slug, "SUM", event_type, "$.bytes"]

    # Create: a path outside the grammar is refused with the server's reason, naming the field.
    created = unique("console_made")
    await page.get_by_label("Slug", exact=True).fill(created)
    await page.get_by_label("Event type", exact=True).fill(event_type)
    await page.get_by_label("Value (JSONPath)", exact=True).fill("$..bytes")
    await page.get_by_role("button", name="Create meter").click()
    refusal = page.get_by_role("alert")
    await refusal.wait_for()
    assert (await refusal.inner_text()).startswith(
        "InvalidArgument: "
    ) and "valueProperty" in await refusal.inner_text()

    # The live preview, as the server answers it (PreviewMeter), for a pasted sample event: first the
    # refused path, then the value and group value, then a value that is no number.
    sample = cloudevent(event_type, subject, {"bytes": 512, "kind": "upload"})
    await page.get_by_label("Group by (key=JSONPath, ...)", exact=True).fill("kind=$.kind")
    shown = await preview_shown(page, sample)
    answer = await preview_answer(http, event_type, "$..bytes", sample)
    assert answer["meterErrors"] and shown["errors"] == [f"{e['field']}: {e['message']}" for e in answer["meterErrors"]]
    await page.get_by_label("Value (JSONPath)", exact=True).fill("$.bytes")
    shown = await preview_shown(page, sample)
    answer = await preview_answer(http, event_type, "$.bytes", sample)
    assert shown == {"errors": [], "value": str(answer["value"]), "kind": answer["groupBy"]["kind"], "counted": "yes"}
    assert answer["value"] == 512 and answer["groupBy"]["kind"] == "upload"
    sample = cloudevent(event_type, subject, {"bytes": "lots", "kind": "upload"})
    shown = await preview_shown(page, sample)
    answer = await preview_answer(http, event_type, "$.bytes", sample)
    assert answer["value"] == "NaN"
    assert shown == {"errors": [], "value": "NaN", "kind": "upload", "counted": answer["skipReason"]}
    await screenshot(page, "meter-preview")

    await page.get_by_role("button", name="Create meter").click()
    await page.locator(f'tr[data-meter="{created}"]').wait_for()
    assert (await http.get(f"/api/v1/meters/{created}")).json()["valueProperty"] == "$.bytes"
    await screenshot(page, "meters")

    # Archive, after a confirmation.
    page.once("dialog", lambda dialog: dialog.accept())
    await page.locator(f'tr[data-meter="{created}"]').get_by_role("button", name="Archive…").click()
    await page.locator(f'tr[data-meter="{created}"]').wait_for(state="detached")
    assert created not in [meter["slug"] for meter in (await http.get("/api/v1/meters")).json()]

    # Features: create one on the meter, then archive it.
    await open_page(page, "Features")
    feature = unique("console_feature")
    await page.get_by_label("Key", exact=True).fill(feature)
    await page.get_by_label("Meter (slug; empty for a boolean or static feature)", exact=True).fill(slug)
    await page.get_by_role("button", name="Create feature").click()
    feature_row = page.locator(f'tr[data-feature="{feature}"]')
    await feature_row.wait_for()
    assert [c.strip() for c in await feature_row.locator("td").all_inner_texts()][:3] == [feature, feature, slug]
    await screenshot(page, "features")
    page.once("dialog", lambda dialog: dialog.accept())
    await feature_row.get_by_role("button", name="Archive…").click()
    await feature_row.wait_for(state="detached")
    assert feature not in [f["key"] for f in (await http.get("/api/v1/features")).json()]


@pytest.mark.full_suite
async def test_notifications_test_event_is_delivered_and_resent(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    receiver = await WebhookReceiver().start()
    try:
        path = f"/{unique('hook')}"
        channel_name = unique("hook")
        rule_name = unique("rule")
        # The channel and the rule, made in the console; a secret the server refuses first.
        await page.goto("/console#/notifications")
        await page.get_by_label("Channel name", exact=True).fill(channel_name)
        await page.get_by_label("Webhook URL", exact=True).fill(receiver.url(path))
        await page.get_by_label("Signing secret (empty: generated)", exact=True).fill("short")
        await page.get_by_role("button", name="Create channel").click()
        refusal = page.get_by_role("alert")
        await refusal.wait_for()
        assert (await refusal.inner_text()).startswith("InvalidArgument: ")
        assert "signingSecret" in await refusal.inner_text()
        secret = "whsec_" + "A" * 43 + "="
        await page.get_by_label("Signing secret (empty: generated)", exact=True).fill(secret)
        await page.get_by_role("button", name="Create channel").click()
        await page.locator(f'tr[data-channel="{channel_name}"]').wait_for()
        [channel] = [
            c for c in (await http.get("/api/v1/notification/channels")).json()["items"] if c["name"] == channel_name
        ]
        assert channel["url"] == receiver.url(path) and channel["signingSecret"] == secret
        receiver.secrets[path] = secret

        await page.get_by_label("Rule name", exact=True).fill(rule_name)
        await page.get_by_label("Threshold 1", exact=True).fill("90")
        await page.get_by_label("Threshold 1 type", exact=True).select_option("usage_percentage")
        await page.get_by_role("button", name="Add threshold").click()
        await page.get_by_label("Threshold 2", exact=True).fill("1000")
        await page.get_by_label("Threshold 2 type", exact=True).select_option("usage_value")
        await page.get_by_role("checkbox", name=channel_name, exact=True).check()
        await page.get_by_role("button", name="Create rule").click()
        await page.get_by_role("status").filter(has_text=f"Created rule {rule_name}.").wait_for()
        [rule] = [r for r in (await http.get("/api/v1/notification/rules")).json()["items"] if r["name"] == rule_name]
        assert rule["type"] == "entitlements.balance.threshold"
        assert [c["id"] for c in rule["channels"]] == [channel["id"]]
        assert sorted((t["value"], t["type"]) for t in rule["thresholds"]) == [
            (90, "usage_percentage"),
            (1000, "usage_value"),
        ]

        await page.locator(f'tr[data-rule="{rule["id"]}"]').get_by_role("button", name="Send test").click()
        [delivery] = await receiver.wait_for(path, 1)
        assert delivery.verified
        # The delivery log (polled) shows it delivered, as the API does.
        state = page.locator(f'tr[data-event="{delivery.webhook_id}"] td[data-column="state"]')
        await state.filter(has_text="SUCCESS").wait_for()
        event = (await http.get(f"/api/v1/notification/events/{delivery.webhook_id}")).json()
        [status] = event["deliveryStatus"]
        assert status["state"] == "SUCCESS"
        attempts = page.locator(f'tr[data-event="{delivery.webhook_id}"] td.num')
        assert int(await attempts.inner_text()) == len(status["attempts"])
        await screenshot(page, "notifications")

        await page.locator(f'tr[data-event="{delivery.webhook_id}"]').get_by_role("button", name="Resend").click()
        again = await receiver.wait_for(path, 2)
        assert {d.webhook_id for d in again} == {delivery.webhook_id}
    finally:
        await receiver.stop()


@pytest.mark.full_suite
async def test_invoice_page_shows_totals_and_approves_as_the_api_allows(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    customer, feature = await metered_customer(http, 4, 6)  # 10 tokens in the billing period
    override = await http.put(
        f"/api/v1/billing/customers/{customer}", json={"workflow": {"invoicing": {"autoAdvance": False}}}
    )
    assert override.status_code == 200, override.text
    await add_lines(
        http,
        customer,
        line("Seats", {"type": "flat", "amount": "49"}),
        line("Usage", {"type": "unit", "amount": "0.5"}, feature),
    )
    (draft,) = await invoice_now(http, customer)
    assert draft["statusDetails"]["extendedStatus"] == "draft.manual_approval_needed"
    assert draft["totals"]["total"] == "54"  # 49 + 10 x 0.5

    await page.goto(f"/console#/invoices/{draft['id']}")
    total = page.get_by_test_id("invoice-total")
    await total.wait_for()
    assert await total.inner_text() == "$54.00"
    assert await page.get_by_test_id("invoice-status").inner_text() == "draft (draft.manual_approval_needed)"
    lines = {
        name: await page.locator(f'tr[data-line="{name}"] td[data-column="total"]').inner_text()
        for name in ("Seats", "Usage")
    }
    assert lines == {"Seats": "$49.00", "Usage": "$5.00"}
    # Exactly the actions the API offers for this draft.
    offered = set(draft["statusDetails"]["availableActions"])
    buttons = page.get_by_label("Invoice actions").get_by_role("button")
    assert {(await b.inner_text()).rstrip("…").lower() for b in await buttons.all()} == offered
    await screenshot(page, "invoice-draft")

    await page.get_by_role("button", name="Approve").click()
    await page.locator('section[aria-label="Invoice"][data-status="paid"]').wait_for()
    approved = (await http.get(f"/api/v1/billing/invoices/{draft['id']}")).json()
    assert approved["status"] == "paid" and approved["totals"]["total"] == "54"
    assert await page.get_by_label("Invoice actions").count() == (
        1 if approved["statusDetails"]["availableActions"] else 0
    )

    await page.get_by_role("link", name="← Invoices").click()
    row = page.locator(f'tr[data-invoice="{draft["id"]}"]')
    await row.wait_for()
    assert await row.locator('td[data-column="total"]').inner_text() == "$54.00"
    await screenshot(page, "invoices")


@pytest.mark.full_suite
async def test_plans_in_words_and_a_customers_subscription(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    feature = unique("console_plan_tokens")
    await create_meter(http, slug=feature, eventType=feature, aggregation="SUM", valueProperty="$.tokens")
    made = await http.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": feature})
    assert made.status_code == 201, made.text
    key = unique("console_pro")
    made = await http.post("/api/v1/plans", json=plan_body(key, feature))
    assert made.status_code == 201, made.text
    plan = (await http.post(f"/api/v1/plans/{made.json()['id']}/publish")).json()
    customer_key = unique("console_sub")
    made = await http.post(
        "/api/v1/customers",
        json={"name": f"Sub {customer_key}", "key": customer_key, "usageAttribution": {"subjectKeys": [customer_key]}},
    )
    assert made.status_code == 201, made.text
    customer = made.json()
    made = await http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert made.status_code == 201, made.text
    subscription = made.json()

    await page.goto("/console#/plans")
    details = page.locator(f'details[data-plan="{key}@{plan["version"]}"]')
    await details.locator("summary").click()
    prices = {
        card: await details.get_by_role("table", name=f"Rate cards of {key} default")
        .locator(f'tr[data-rate-card="{card}"] td[data-column="price"]')
        .inner_text()
        for card in ("base", feature)
    }
    assert prices == {"base": "$49.00 flat, in advance", feature: "$0.001 per unit"}
    await screenshot(page, "plans")

    await page.goto(f"/console#/customers/{customer['id']}")
    row = page.locator(f'tr[data-subscription="{subscription["id"]}"]')
    await row.wait_for()
    cells = [cell.strip() for cell in await row.locator("td").all_inner_texts()]
    assert cells[1:3] == [f"{key} v{plan['version']}", subscription["status"]]
    assert cells[4] == "monthly in USD"


@pytest.mark.full_suite
async def test_boolean_and_static_entitlements_created_on_a_customers_page(
    page: Page, tally: TallyProcess, http: httpx.AsyncClient
) -> None:
    key = unique("cust")
    created = await http.post("/api/v1/customers", json={"name": f"Console {key}", "key": key})
    assert created.status_code == 201, created.text
    flag, seats = unique("flag"), unique("seats")
    for feature in (flag, seats):
        assert (await http.post("/api/v1/features", json={"key": feature, "name": feature})).status_code == 201

    await page.goto(f"/console#/customers/{key}")
    await page.get_by_role("heading", name=f"Console {key}").wait_for()
    await page.get_by_label("Type", exact=True).select_option("boolean")
    await page.get_by_label("Feature key", exact=True).fill(flag)
    await page.get_by_role("button", name="Create entitlement").click()
    await page.locator(f'tr[data-feature="{flag}"]').wait_for()

    # A static config that is no JSON object: the server's refusal, naming the field.
    await page.get_by_label("Type", exact=True).select_option("static")
    await page.get_by_label("Feature key", exact=True).fill(seats)
    await page.get_by_label("Config (JSON object)", exact=True).fill("seats: 5")
    await page.get_by_role("button", name="Create entitlement").click()
    refusal = page.get_by_role("alert")
    await refusal.wait_for()
    assert (await refusal.inner_text()).startswith("InvalidArgument: ") and "config" in await refusal.inner_text()
    await page.get_by_label("Config (JSON object)", exact=True).fill('{"seats": 5}')
    await page.get_by_role("button", name="Create entitlement").click()
    await page.locator(f'tr[data-feature="{seats}"]').wait_for()

    listed = (await http.get(f"/api/v2/customers/{key}/entitlements")).json()["items"]
    by_feature = {item["featureKey"]: item for item in listed}
    assert by_feature[flag]["type"] == "boolean"
    assert by_feature[seats]["type"] == "static" and orjson.loads(by_feature[seats]["config"]) == {"seats": 5}
    for feature, kind in ((flag, "boolean"), (seats, "static")):
        cells = [c.strip() for c in await page.locator(f'tr[data-feature="{feature}"] td').all_inner_texts()]
        assert cells[:3] == [feature, kind, "yes"]
    await screenshot(page, "customer-boolean-static")
