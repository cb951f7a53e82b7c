"""Project-level views: the /healthz endpoint and the token panel of the admin."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dealsite import health
from dealsite.token_panel import token_panel_context


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Return every health check as JSON, with HTTP 200 unless a check fails (then 503).

    Open to anyone, so that load balancers and monitors can poll it; it contains
    statuses and figures only, never the Keepa key or deal data.
    """
    results = health.run_checks()
    status = 503 if health.overall_status(results) == health.FAIL else 200
    return JsonResponse(health.report_document(results), status=status)


def token_panel(request: HttpRequest) -> HttpResponse:
    """Show the token ledger's state and the balance over the last 24 hours. Staff only, through admin_view."""
    context = {
        **admin.site.each_context(request),
        "title": "Keepa token ledger",
        **token_panel_context(),
    }
    return TemplateResponse(request, "admin/token_panel.html", context)
