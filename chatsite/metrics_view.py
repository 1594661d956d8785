"""`/metrics`: chatsite's metrics (chatsite/metrics.py) in Prometheus' text format.

Served to a client whose address is in METRICS_ALLOWED_CIDRS (the address as
conversations.ratelimit.client_ip sees it, so TRUSTED_PROXY_COUNT applies), or to a request
carrying `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time; no token set: no
token access). Anyone else gets a plain 404, so the endpoint is not advertised.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from chatsite import metrics
from conversations.ratelimit import client_ip


@functools.lru_cache(maxsize=8)
def networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """METRICS_ALLOWED_CIDRS parsed (settings.py has refused a malformed one at start-up)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _address_allowed(request: HttpRequest) -> bool:
    address = client_ip(request)
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:  # a forged X-Forwarded-For entry, a unix socket's "": not an address
        return False
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)  # ::ffff:127.0.0.1 from a dual-stack listener
    allowed_networks = networks(tuple(settings.METRICS_ALLOWED_CIDRS))
    return any(c in network for c in candidates for network in allowed_networks
               if c.version == network.version)


def _token_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    # Bytes: compare_digest refuses non-ASCII str, and a header is whatever the client sent.
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                               token.encode("utf-8", "replace"))


def allowed(request: HttpRequest) -> bool:
    return _address_allowed(request) or _token_allowed(request)


def render() -> bytes:
    """The exposition: every process's values in multiprocess mode, else this process's."""
    if metrics.MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@never_cache
async def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    # Off the event loop: in multiprocess mode it reads every process's files.
    body = await asyncio.to_thread(render)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
