"""Fetching media URLs safely: public addresses only (unless allowed), pinned connections, bounded downloads.

Owns `FetchPolicy` and `fetch`. Every hop (the URL and each redirect) is resolved, and every address it resolves
to must be public (`ipaddress.is_global`: no loopback, private, link-local / cloud metadata, carrier-grade NAT,
multicast or reserved ranges, IPv4-mapped forms included) unless the operator allows private targets; the
connection then goes to the checked address (the host name is kept for TLS and the Host header), so a DNS answer
that changes between check and connect (rebinding) cannot redirect it. Downloads are capped while streaming
(Content-Length is not trusted), with a socket timeout and an overall deadline. Stdlib only (http.client).
Invariant: no byte is sent to an address that failed the check; every failure is a `MediaError` whose message
names the URL's host at most, never a resolved private address.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from qwen35.processor.media_errors import MediaError

Resolver = Callable[[str, int], list[str]]
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    allow_private: bool = False  # loopback / private / link-local targets (tests, trusted networks)
    timeout_s: float = 10.0  # per socket operation and for the whole download
    max_redirects: int = 3
    user_agent: str = "qwen35-media-fetch"


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MediaError(f"cannot resolve the media URL's host {host!r}", code="media_fetch_failed") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_allowed_address(address: str, allow_private: bool) -> bool:
    """True when `address` may be contacted: a global unicast address, or any unicast one when allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return False
    return allow_private or ip.is_global


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def fetch(url: str, max_bytes: int, policy: FetchPolicy, resolver: Resolver = system_resolver) -> bytes:
    """GET `url` (http or https), following at most `policy.max_redirects` redirects; at most `max_bytes`."""
    deadline = time.monotonic() + policy.timeout_s
    for _ in range(policy.max_redirects + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaError("media URLs must be http(s) or data: URLs", code="invalid_media_url")
        if parts.username or parts.password:
            raise MediaError("media URLs must not carry credentials", code="invalid_media_url")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise MediaError("the media URL has an invalid port", code="invalid_media_url") from exc
        addresses = resolver(host, port)
        if not addresses or not all(is_allowed_address(a, policy.allow_private) for a in addresses):
            raise MediaError(f"the media URL's host {host!r} is not a public address; the server does not fetch "
                             "from private, loopback or link-local networks", code="media_url_not_allowed")
        location = _get(parts, host, port, addresses[0], max_bytes, policy, deadline)
        if isinstance(location, bytes):
            return location
        url = urllib.parse.urljoin(url, location)
    raise MediaError(f"the media URL redirected more than {policy.max_redirects} times", code="media_fetch_failed")


def _get(parts: urllib.parse.SplitResult, host: str, port: int, address: str, max_bytes: int,
         policy: FetchPolicy, deadline: float) -> bytes | str:
    """One GET: the body, or the Location of a redirect."""
    timeout = max(0.1, deadline - time.monotonic())
    conn: http.client.HTTPConnection = (_PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP)(
        host, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": policy.user_agent, "Accept": "image/*, video/*, */*"})
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            if not location:
                raise MediaError("the media URL redirected without a Location", code="media_fetch_failed")
            return location
        if response.status != 200:
            raise MediaError(f"fetching the media URL returned HTTP {response.status}", code="media_fetch_failed")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise MediaError(f"the media is {declared} bytes; the limit is {max_bytes}", code="media_too_large")
        body = bytearray()
        while chunk := response.read(_CHUNK):
            body.extend(chunk)
            if len(body) > max_bytes:
                raise MediaError(f"the media is larger than the limit of {max_bytes} bytes", code="media_too_large")
            if time.monotonic() > deadline:
                raise MediaError("fetching the media URL timed out", code="media_fetch_failed")
        return bytes(body)
    except (OSError, http.client.HTTPException) as exc:
        raise MediaError(f"fetching the media URL failed ({type(exc).__name__})", code="media_fetch_failed") from exc
    finally:
        conn.close()
