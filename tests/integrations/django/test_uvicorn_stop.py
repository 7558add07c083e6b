"""Django served by an ASGI server (uvicorn, hypercorn, daphne) and stopped by SIGTERM with a
request in flight: nothing is lost. Django has no lifespan; the middleware makes drip's default
client when Django loads it, on the main thread at import, so drip's SIGTERM hook is the
handler uvicorn restores and raises SIGTERM to once its graceful shutdown is over; hypercorn
and daphne end by ``atexit``, where the first batch is sent (no pydantic model was built
before it in a Django process: see ``test_the_first_send_at_exit_needs_no_import_then``).
See ``Deploy`` in the conftest."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("uvicorn")


PROJECT = textwrap.dedent(
    """
    import time
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False, SECRET_KEY="stop", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
        MIDDLEWARE=["drip.integrations.django.DripMiddleware"],
        DRIP_CUSTOMER=__name__ + ".customer_for",
    )
    django.setup()

    from django.core.asgi import get_asgi_application
    from django.http import JsonResponse
    from django.urls import path
    import drip

    def customer_for(request):
        external = request.headers.get("x-customer")
        return {"external_customer_id": external} if external else None

    @drip.metered("stop.work")
    def work(n):
        return n

    def handler(request, n):  # sync: Django runs it in a thread under ASGI
        return JsonResponse({"n": work(n)})

    def slow(request):
        print("slow started", flush=True)
        time.sleep(1.5)  # SIGTERM arrives meanwhile: uvicorn lets it finish
        return JsonResponse({"n": work(-1)})

    urlpatterns = [path("work/<int:n>", handler), path("slow", slow)]
    application = get_asgi_application()
    """
)


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "daphne"])
def test_sigterm_mid_request_under_an_asgi_server_loses_nothing(deploy: Any, server: str) -> None:
    url = deploy.serve("stopproject", PROJECT, "application", server=server)
    assert deploy.stop_mid_request(url, 50) in deploy.IN_FLIGHT[server]
    customers = deploy.CUSTOMERS
    assert deploy.counts() == {"stop-0": (11, 11), **{c: (10, 10) for c in customers[1:]}}
