"""Fetching for IIIF ingest that does not trust the manifest: address policy, redirects, deadline, byte limit.

A manifest names the URLs that are fetched, so whoever wrote it chooses where this machine connects. The
default fetch, :func:`safe_fetch`, therefore

- allows only ``http`` and ``https``, on the first request and on every redirect (at most ``max_redirects``);
- resolves the host name itself, refuses the whole host if *any* address it resolves to is loopback, private,
  link-local, multicast, reserved, unspecified or otherwise not globally routable (IPv4, IPv6, and IPv4
  embedded in IPv6), and then connects to an address it checked, so a second DNS answer (DNS rebinding) cannot
  swap in another one; the TLS certificate is still verified against the host name;
- stops the whole response, redirects included, at a wall-clock deadline (a server that sends one byte at a
  time is cut there, not after one socket timeout per read);
- stops reading at a byte limit.

``allow_private=True`` lifts only the address rule, for an image server on this machine or the local network.
Environment proxy settings are not used: a proxy would connect to addresses this module never sees.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

__all__ = ["DEFAULT_MAX_REDIRECTS", "DEFAULT_TIMEOUT", "FetchDeadline", "FetchRefused", "FetchTooLarge",
           "Resolver", "address_refusal", "check_url", "safe_fetch"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_REDIRECTS = 5
ALLOWED_SCHEMES = ("http", "https")
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "sphaera-similarity-explorer/0.1"
CHUNK = 64 * 1024
# resolver(host, port) -> the IP address strings the host resolves to
Resolver = Callable[[str, int], list[str]]


class FetchRefused(ValueError):
    """A URL the fetch policy does not allow (scheme, address, too many redirects)."""


class FetchTooLarge(ValueError):
    """A response larger than the byte limit."""


class FetchDeadline(TimeoutError):
    """A fetch that did not finish before its deadline."""


def address_refusal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` may not be fetched from by default (e.g. ``"private"``), or ``None`` if it may.

    Addresses that carry an IPv4 address inside IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo) are judged
    by the IPv4 address too, because that is where the packets end up.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.__class__(ip.compressed.split("%")[0])  # a zone id does not change the address' kind
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None and (reason := address_refusal(embedded)):
                return f"{reason} (IPv4 {embedded} inside IPv6)"
    for attribute in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{attribute}"):
            return attribute.replace("_", "-")
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT)
        return "not globally routable"
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]  # a literal address needs no lookup
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))  # unique, in the resolver's order


def _resolve(resolver: Resolver, host: str, port: int, deadline: float, url: str, timeout: float) -> list[str]:
    """``resolver(host, port)`` within the deadline (name lookups can hang too; a daemon thread waits)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(resolver(host, port))
        except Exception as error:
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True, name="iiif-resolve")
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise FetchDeadline(f"{url}: fetch deadline of {timeout:g} s exceeded (resolving {host})")
    if isinstance(outcome[0], Exception):
        raise FetchRefused(f"{url}: host {host!r} not resolved: {outcome[0]}") from outcome[0]
    return outcome[0]


def check_url(url: str, *, allow_private: bool = False, resolver: Resolver | None = None,
              deadline: float | None = None, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Check ``url`` against the fetch policy; return the addresses it may be fetched from.

    Parameters
    ----------
    url : str
    allow_private : bool
        Skip the address rule (scheme and resolution are still checked).
    resolver : callable, optional
        ``resolver(host, port) -> [address, ...]``; the system resolver by default. Tests pass a stub.
    deadline : float, optional
        ``time.monotonic()`` value by which the name must be resolved.
    timeout : float
        Only for the message when the deadline passes.

    Raises
    ------
    FetchRefused
        For another scheme, a URL without host, a host that does not resolve, or (unless ``allow_private``)
        a host with any refused address; the message names the URL and the reason.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise FetchRefused(f"refusing to fetch {url!r}: only http and https URLs are allowed")
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as error:  # a port that is not a number
        raise FetchRefused(f"refusing to fetch {url!r}: {error}") from None
    if not host:
        raise FetchRefused(f"refusing to fetch {url!r}: no host")
    deadline = time.monotonic() + timeout if deadline is None else deadline
    addresses = _resolve(resolver or _system_resolver, host, port, deadline, url, timeout)
    if not addresses:
        raise FetchRefused(f"{url}: host {host!r} resolved to no address")
    if not allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                raise FetchRefused(f"refusing to fetch {url}: {host} resolves to {address}, a {reason} address "
                                   "(allow local/private image servers to fetch from it)")
    return addresses


class _Pinned(http.client.HTTPConnection):
    """An HTTP(S) connection to one checked address; Host header, SNI and certificate use the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, tls: bool):
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.context = ssl.create_default_context() if tls else None  # verifies the certificate and name
        self.default_port = 443 if tls else 80  # the Host header leaves out only the scheme's default port

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        if self.context is None:
            self.sock = sock
            return
        # The handshake runs after self.sock is set, so the deadline watchdog can cut a slow handshake too.
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self.sock.do_handshake()

    def cut(self) -> None:
        """Called by the watchdog at the deadline: unblock any read or write in progress."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _open(url: str, addresses: list[str], deadline: float, watchdog: list) -> tuple:
    """(connection, response) of a GET of ``url`` from the first of ``addresses`` that answers."""
    parts = urlsplit(url)
    tls = parts.scheme.lower() == "https"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    errors = []
    for address in addresses:
        connection = _Pinned(parts.hostname, port, address, max(0.001, deadline - time.monotonic()), tls)
        watchdog[:] = [connection]
        try:
            connection.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as error:  # ssl and timeouts too: try the next address
            connection.close()
            errors.append(f"{address}: {error}")
            if time.monotonic() >= deadline:
                break
    raise ConnectionError(f"{url}: no address answered ({'; '.join(errors)})")


def _read_body(url: str, response, max_bytes: int, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise FetchTooLarge(f"{url}: response of {int(declared)} bytes exceeds the limit of {max_bytes} bytes")
    chunks, size = [], 0
    while True:
        # read1 returns after one receive, so the deadline is checked between the drops of a slow drip.
        chunk = response.read1(CHUNK)
        if not chunk or time.monotonic() >= deadline:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FetchTooLarge(f"{url}: response exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def safe_fetch(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = 50 * 1024 * 1024, *,
               allow_private: bool = False, max_redirects: int = DEFAULT_MAX_REDIRECTS,
               resolver: Resolver | None = None) -> bytes:
    """GET ``url`` under the fetch policy of this module and return the body.

    Parameters
    ----------
    url : str
        An http or https URL.
    timeout : float
        Wall-clock seconds for the whole fetch: name lookups, connections, redirects, headers and body.
    max_bytes : int
        Largest accepted body; reading stops as soon as it is passed.
    allow_private : bool
        Also fetch from loopback, private, link-local and other non-global addresses.
    max_redirects : int
        Redirects followed at most; each target is checked like the first URL.
    resolver : callable, optional
        ``resolver(host, port) -> [address, ...]`` instead of the system resolver.

    Raises
    ------
    FetchRefused
        A URL or redirect the policy refuses, or too many redirects.
    FetchDeadline
        The deadline passed.
    FetchTooLarge
        The body is larger than ``max_bytes``.
    OSError, http.client.HTTPException
        Connection failures and HTTP error statuses (the message names the URL).
    """
    hops = [url]  # the URL, then each redirect target
    with _Deadline(timeout) as clock:
        try:
            data = _follow(hops, clock, timeout, max_bytes, allow_private, max_redirects, resolver)
            if data is not None:
                return data
        except (OSError, http.client.HTTPException):
            if not clock.passed():
                raise
    # A cut socket reads as a normal end of data; only the deadline tells it apart from a complete body.
    where = url if hops[-1] == url else f"{url} (redirected to {hops[-1]})"
    raise FetchDeadline(f"{where}: fetch deadline of {timeout:g} s exceeded")


class _Deadline:
    """The wall-clock guarantee of one fetch: a timer that cuts every connection opened so far when ``timeout``
    passes, wherever the fetch is blocked (a slow TLS handshake, headers sent a byte at a time), where per-read
    socket timeouts would each start afresh. ``at`` is the deadline on :func:`time.monotonic`'s clock."""

    def __init__(self, timeout: float):
        self.at = time.monotonic() + timeout
        self.connections: list = []  # filled by _open
        self.expired = threading.Event()
        self.timer = threading.Timer(timeout, self.cut)
        self.timer.daemon = True

    def cut(self) -> None:
        self.expired.set()
        for connection in list(self.connections):
            connection.cut()

    def passed(self) -> bool:
        return self.expired.is_set() or time.monotonic() >= self.at

    def __enter__(self) -> _Deadline:
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()


def _follow(hops: list[str], clock: _Deadline, timeout: float, max_bytes: int, allow_private: bool,
            max_redirects: int, resolver: Resolver | None) -> bytes | None:
    """GET ``hops[-1]``, following redirects (appended to ``hops``): the body, or ``None`` if the deadline passed
    while it was read (a cut socket looks like the end of the body)."""
    for _ in range(max_redirects + 1):
        current = hops[-1]
        addresses = check_url(current, allow_private=allow_private, resolver=resolver, deadline=clock.at,
                              timeout=timeout)
        connection, response = _open(current, addresses, clock.at, clock.connections)
        try:
            location = response.getheader("Location")
            if response.status in REDIRECTS and location:
                hops.append(urljoin(current, location.strip()))
                continue
            if response.status != 200:
                raise ConnectionError(f"{current}: HTTP {response.status} {response.reason}")
            data = _read_body(current, response, max_bytes, clock.at)
        finally:
            connection.close()
        return None if clock.passed() else data
    raise FetchRefused(f"{hops[0]}: more than {max_redirects} redirects")
