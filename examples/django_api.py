"""Meter a Django project: one run per request, sync and async views, a streamed response
metered when its content has been sent. One file here; in a project the three settings go in
``settings.py``.

Run: DRIP_BASE_URL=local python examples/django_api.py   (needs drip-sdk[server,django])
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.test import Client
from django.urls import path

import drip

API_KEYS = {"key-acme": "acme", "key-globex": "globex"}  # the app's own API keys -> customers


def customer_for(request: HttpRequest) -> dict[str, str] | None:
    """``DRIP_CUSTOMER`` names this: your own customer id, or None to leave a request unmetered."""
    name = API_KEYS.get(request.headers.get("x-api-key", ""))
    return None if name is None else {"external_customer_id": name}


@drip.metered(meter="pages_rendered", quantity=lambda pages: pages)
def render(report: str) -> int:
    return 3 if report == "summary" else 12


@drip.metered(meter="llm_tokens", units="tokens", quantity=lambda text: len(text.split()))
async def summarise(topic: str) -> str:
    await asyncio.sleep(0.01)
    return f"a short summary of {topic}"


def report(request: HttpRequest, name: str) -> JsonResponse:  # a sync view
    return JsonResponse({"pages": render(name)})


async def summary(request: HttpRequest, topic: str) -> JsonResponse:  # an async view
    return JsonResponse({"text": await summarise(topic)})


def export(request: HttpRequest) -> StreamingHttpResponse:
    def rows() -> Iterator[str]:
        for name in ("summary", "detail"):
            yield f"{name}: {render(name)} pages\n"

    return StreamingHttpResponse(rows(), content_type="text/plain")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("reports/<str:name>/", report),
    path("summaries/<str:topic>/", summary),
    path("export/", export),
    path("health/", health),
]

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
    MIDDLEWARE=["drip.integrations.django.DripMiddleware"],
    DRIP_CUSTOMER=f"{__name__}.customer_for",
    DRIP_MIDDLEWARE={"exclude": ["/health/"]},
)
django.setup()


def main() -> None:
    # what this execution records, read back below: the local database keeps earlier runs
    since = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    http = Client()
    for name in ("summary", "detail", "summary"):
        http.get(f"/reports/{name}/", headers={"x-api-key": "key-acme"})
    http.get("/summaries/tides/", headers={"x-api-key": "key-acme"})
    response = http.get("/export/", headers={"x-api-key": "key-globex"})
    print(f"export sent: {b''.join(response.streaming_content).decode().splitlines()}")
    http.get("/health/", headers={"x-api-key": "key-acme"})  # excluded: not metered
    http.get("/health/")  # no API key: served, not metered
    print(drip.flush(timeout=10))
    for name in ("acme", "globex"):
        usage = {
            m.meter: m.quantity
            for m in drip.drip.get_usage_summary(customer_id=name, since=since).meters
        }
        print(f"{name}: " + ", ".join(f"{meter} {usage[meter]:g}" for meter in sorted(usage)))
    for run in drip.drip.list_runs(customer_id="acme", since=since).data:
        print(f"  {run.workflow_name}: {run.status.value}")
    [streamed] = drip.drip.list_runs(customer_id="globex", since=since).data
    timeline = drip.drip.get_run_timeline(streamed.id)
    print(f"streamed request run {timeline.workflow_name!r}: {timeline.status.value}")
    for event in timeline.events:
        print(f"  {event.meter:<15} {event.quantity:g}")


if __name__ == "__main__":
    main()
