"""Where webhooks may go: URL rules and the guard against server-side request
forgery (SSRF).

An organization's admin chooses the URL, and Cost Guardian's server makes the
request, so a URL must never reach the server's own network: loopback, private
ranges, link-local (cloud metadata at 169.254.169.254), multicast, reserved
and unspecified addresses, in IPv4 and IPv6 (IPv4-mapped IPv6 included), are
refused unless CG_ALLOW_PRIVATE_WEBHOOKS is set.

The check runs three times: when the endpoint is saved (every address the host
resolves to), again before each send (DNS may have changed), and on the
socket itself right after it connects (the address actually connected to, so a
name that resolves to a public address for the check and to a private one for
the connection still cannot get through). Redirects are never followed, and
proxies from the environment are ignored, so nothing else chooses the peer.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from urllib.parse import urlsplit

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_URL_LENGTH = 2000


class ForbiddenAddress(Exception):
    """The URL's host is (or resolved to, or connected to) an address webhooks may not reach."""


class HostNotFound(Exception):
    """The URL's host does not resolve (now: DNS may answer later)."""


def private_allowed() -> bool:
    return bool(current_app.config.get("CG_ALLOW_PRIVATE_WEBHOOKS"))


def forbidden_reason(address: str) -> str | None:
    """Why this IP address is off limits, or None when it is a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour  # ::ffff:10.0.0.1, 2002:0a00:0001::
        if embedded is not None:
            return forbidden_reason(str(embedded))
    for attribute, reason in _REASONS:
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:  # shared address space (100.64/10), NAT64 and the like
        return "not a public address"
    return None


_REASONS = (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
            ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
            ("is_private", "a private address"), ("is_reserved", "a reserved address"))


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str) -> str:
    """The URL, stripped, if a webhook may be sent to it; else a ValueError,
    ForbiddenAddress or HostNotFound whose text tells the user why."""
    url = (url or "").strip()
    if not url:
        raise ValueError("Enter the URL that receives the webhooks.")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"Use at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("This is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use an http:// or https:// URL.")
    if not parts.hostname:
        raise ValueError("The URL needs a host name, e.g. https://hooks.example.com/cost-guardian.")
    if parts.username is not None or parts.password is not None:
        raise ValueError("Leave credentials out of the URL; every request is signed instead.")
    if any(c.isspace() for c in url):
        raise ValueError("The URL may not contain spaces.")
    if not private_allowed():
        check_host(parts.hostname, port)
    return url


def check_host(host: str, port: int) -> None:
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise HostNotFound(f"The host {host} could not be resolved.") from None
    for address in addresses:
        reason = forbidden_reason(address)
        if reason:
            raise ForbiddenAddress(f"{host} resolves to {address}, {reason}; webhooks only go to public "
                                   "addresses.")


# --- the guarded HTTP session -------------------------------------------------------

class Deadline:
    """A limit on one attempt as a whole. The socket timeouts apply to each
    read, so a receiver dripping a byte at a time could hold an attempt
    indefinitely; when `seconds` have passed, every connection the attempt
    opened is shut down, which ends any read or write blocked on it.

    Each socket is watched through a duplicate of its descriptor (shutdown
    acts on the socket, whichever descriptor names it), so it can be ended
    even after TLS has wrapped the original; the duplicates are closed when
    the attempt is over.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def watch(self, sock: socket.socket) -> None:
        copy = sock.dup()
        with self._lock:
            self._sockets.append(copy)
            if self.expired:
                _shut(copy)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the other side
        pass


def _check_peer(sock: socket.socket, host: str) -> None:
    address = sock.getpeername()[0]
    reason = forbidden_reason(address)
    if reason:
        sock.close()
        raise ForbiddenAddress(f"{host} connected to {address}, {reason}; the request was not sent.")


class _WatchedHTTPConnection(HTTPConnection):
    guard = False  # check the connected peer's address
    deadline: Deadline | None = None

    def _new_conn(self):
        sock = super()._new_conn()
        if self.deadline is not None:
            self.deadline.watch(sock)
        if self.guard:
            _check_peer(sock, self.host)
        return sock


class _WatchedHTTPSConnection(HTTPSConnection):
    guard = False
    deadline: Deadline | None = None

    def _new_conn(self):  # before the TLS handshake: not a byte goes to a forbidden peer
        sock = super()._new_conn()
        if self.deadline is not None:
            self.deadline.watch(sock)
        if self.guard:
            _check_peer(sock, self.host)
        return sock


POOL_HOSTS = 64  # hosts whose connections are kept (the gateway's session serves every organization's)


class _Adapter(HTTPAdapter):
    def __init__(self, guard: bool, deadline: Deadline | None, pool_maxsize: int = 10):
        settings = {"guard": guard, "deadline": deadline}
        http = type("_HTTPConnection", (_WatchedHTTPConnection,), settings)
        https = type("_HTTPSConnection", (_WatchedHTTPSConnection,), settings)
        self._pools = {"http": type("_HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
                       "https": type("_HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}
        super().__init__(max_retries=0, pool_connections=POOL_HOSTS, pool_maxsize=pool_maxsize)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)


def session(deadline: Deadline | None = None, pool_maxsize: int = 10) -> requests.Session:
    """A requests session for one webhook send: no proxies from the
    environment, (unless private addresses are allowed) a socket-level check
    of the peer address, and the attempt's `deadline` on every connection.
    `pool_maxsize`: connections kept open per host (the gateway shares one
    session between all its threads)."""
    http = requests.Session()
    http.trust_env = False
    guard = not private_allowed()
    adapter = (_Adapter(guard, deadline, pool_maxsize) if guard or deadline is not None
               else HTTPAdapter(max_retries=0, pool_connections=POOL_HOSTS, pool_maxsize=pool_maxsize))
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http
