"""Where outbound webhooks may be sent: to public addresses only, so a workspace cannot point
the server at its own network (the database, the metadata service, a neighbour's admin port).

A URL is checked twice: at registration (a literal private address or `localhost` is refused
at once) and before every delivery, on the addresses its name resolves to then (a name may
resolve elsewhere later). What is left: a name that resolves to a public address for the check
and to a private one for the connection a moment later (DNS rebinding) is not caught here;
deployments that need that closed send webhooks through an egress proxy. Development allows
private addresses (`LIPIKA_WEBHOOK_ALLOW_PRIVATE_URLS`), so a receiver on localhost works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from lipika.errors import BadRequest

LOCAL_NAMES = ("localhost", "localhost.localdomain")


class WebhookUrlNotPublic(BadRequest):
    code = "webhook_url_not_public"


def public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not an address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Refuses a URL whose host is a private address or a local name (names are checked again,
    resolved, before each delivery)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host or host in LOCAL_NAMES or host.endswith(".localhost"):
        raise WebhookUrlNotPublic("webhook URLs must reach a public host", param="url")
    try:
        literal = public(host)
    except ValueError:
        return  # a name
    if not literal:
        raise WebhookUrlNotPublic("webhook URLs must reach a public address", param="url")


async def resolves_public(url: str) -> bool:
    """Whether every address the URL's host resolves to now is public (False if none)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        check_url(url)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (WebhookUrlNotPublic, OSError):
        return False
    return bool(infos) and all(public(str(info[4][0])) for info in infos)
