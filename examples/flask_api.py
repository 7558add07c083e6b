"""Meter a Flask service: one run per request, a streamed response metered when it has been sent.

Run: DRIP_BASE_URL=local python examples/flask_api.py   (needs drip-sdk[server,flask])
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from drip.integrations.flask import DripFlask
from flask import Flask, Request, Response, stream_with_context

import drip

API_KEYS = {"key-acme": "acme", "key-globex": "globex"}  # the app's own API keys -> customers


@drip.metered(meter="rows_scanned", quantity=lambda rows: len(rows))
def scan(table: str) -> list[int]:
    return list(range(100 if table == "orders" else 10))


def customer(request: Request) -> dict[str, str] | None:
    """Your own customer id (``external_customer_id``): no lookup of Drip's ids on the way."""
    name = API_KEYS.get(request.headers.get("x-api-key", ""))
    return None if name is None else {"external_customer_id": name}


def make_app() -> Flask:
    app = Flask(__name__)

    @app.get("/tables/<name>")
    def table(name: str) -> dict[str, int]:
        return {"rows": len(scan(name))}

    @app.get("/export/<name>")
    def export(name: str) -> Response:
        def lines() -> Iterator[str]:
            for part in ("orders", "refunds", "orders"):
                time.sleep(0.01)
                yield f"{part}: {len(scan(part))}\n"

        return Response(stream_with_context(lines()), mimetype="text/plain")

    @app.get("/health")
    def health() -> str:
        return "ok"

    DripFlask(app, customer=customer, exclude=["/health"])
    return app


def main() -> None:
    # what this execution records, read back below: the local database keeps earlier runs
    since = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    http = make_app().test_client()
    for i in range(4):
        http.get("/tables/orders", headers={"x-api-key": "key-acme", "x-request-id": f"req-{i}"})
    body = http.get("/export/all", headers={"x-api-key": "key-globex"}).get_data(as_text=True)
    print(f"export sent: {body.split()}")
    http.get("/health", headers={"x-api-key": "key-acme"})  # excluded: not metered
    http.get("/health")  # no API key: served, not metered
    print(drip.flush(timeout=10))
    for name in ("acme", "globex"):
        # your own id works for reads too
        summary = drip.drip.get_usage_summary(customer_id=name, since=since)
        usage = {m.meter: m.quantity for m in summary.meters}
        print(f"{name}: {usage['api_calls']:g} requests, {usage['rows_scanned']:g} rows")
    [streamed] = drip.drip.list_runs(customer_id="globex", since=since).data
    timeline = drip.drip.get_run_timeline(streamed.id)
    print(f"streamed request run {timeline.workflow_name!r}: {timeline.status.value}")
    for event in timeline.events:
        print(f"  {event.meter:<13} {event.quantity:g}  {event.metadata or ''}")


if __name__ == "__main__":
    main()
