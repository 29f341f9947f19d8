"""Outgoing webhooks over HTTP(S), standard library only: refuse addresses inside the network,
connect to exactly the address that was checked, sign the body, never follow a redirect.

Heavy modules (socket, ssl, http.client, ipaddress) are imported when a hook is sent, not when
this module is imported, so they stay off the cold start of every other handler.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.webhooks import HookResult

MAX_ADDRESSES = 4  # addresses of one name tried in turn, within the attempt's one timeout

Resolver = Callable[[str, int], list[str]]


class Refused(Exception):
    """The hook's host is one that webhooks may not reach; trying again will not change that."""


# addresses ------------------------------------------------------------------------------------


def refusal(address: str) -> str | None:
    """Why webhooks may not reach this IP address, or None for a global unicast address.
    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by it too."""
    import ipaddress

    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6:
        embedded: list[Any] = []
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.append(ip.teredo[1])
        for inner in embedded:
            reason = refusal(str(inner))
            if reason:
                return reason
        if ip.ipv4_mapped is not None:
            return None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (instance metadata)" if str(ip) == "169.254.169.254" else "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-global"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address the host name resolves to, in the resolver's order, without repeats."""
    import socket

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, allow_private: bool, resolver: Resolver = resolve) -> list[str]:
    """The addresses to connect to. Raises Refused when any of them is not a global address
    (unless private addresses are allowed): a name that resolves to both is refused."""
    addresses = resolver(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise Refused(f"{host} resolves to {address}, a {reason} address; webhooks may not reach it "
                              "(WEBHOOK_ALLOW_PRIVATE is off)")
    return addresses


# sending --------------------------------------------------------------------------------------


class _Cutoff:
    """Ends an attempt when its time is up, whatever it is waiting for: a socket timeout bounds
    each read, not their sum, so a receiver that drips its TLS handshake or its answer a byte at
    a time would hold the attempt for as long as it likes. At the deadline the attempt's current
    socket is shut down, which wakes any read or write on it."""

    def __init__(self, seconds: float) -> None:
        import threading

        self._lock = threading.Lock()
        self._socket: Any = None
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: Any) -> None:
        with self._lock:
            self._socket = sock
            if self.fired:
                self._shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._socket is not None:
                self._shut(self._socket)

    @staticmethod
    def _shut(sock: Any) -> None:
        import socket

        try:
            # The plain socket's shutdown, also for a TLS socket: its own would drop the TLS state
            # under a handshake or read that another thread is in.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _resolved_within(resolver: Resolver, seconds: float) -> Resolver:
    """`resolver`, giving up after `seconds`: getaddrinfo takes no timeout, and a name server that
    answers slowly must not hold the attempt. A lookup given up on finishes in its daemon thread,
    unheard."""
    import threading

    def resolve_in_time(host: str, port: int) -> list[str]:
        outcome: list[tuple[list[str] | None, BaseException | None]] = []

        def look_up() -> None:
            try:
                outcome.append((resolver(host, port), None))
            except BaseException as error:  # noqa: BLE001 - handed to the attempt, which describes it
                outcome.append((None, error))

        thread = threading.Thread(target=look_up, name="webhook-resolve", daemon=True)
        thread.start()
        thread.join(max(seconds, 0.0))
        if not outcome:
            raise TimeoutError(f"resolving {host} took longer than the attempt's time")
        addresses, error = outcome[0]
        if error is not None:
            raise error
        return addresses or []

    return resolve_in_time


def _connect(scheme: str, host: str, port: int, address: str, timeout: float, cutoff: _Cutoff) -> Any:
    """An HTTP connection to `address` that speaks to `host`: the Host header, TLS SNI and the
    certificate check all use the name, while the socket goes to the address that was checked."""
    import http.client
    import socket
    import ssl

    sock = socket.create_connection((address, port), timeout=timeout)
    cutoff.watch(sock)
    try:
        if scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            cutoff.watch(sock)  # the handshake, too, ends at the deadline
            sock.do_handshake()
            connection: Any = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
    except BaseException:
        sock.close()
        raise
    connection.sock = sock
    return connection


def _describe(error: BaseException, timeout: float) -> str:
    import socket
    import ssl

    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {error.verify_message or error}"
    if isinstance(error, socket.gaierror):
        return f"could not resolve the host: {error.strerror or error}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool = False,
         resolver: Resolver = resolve) -> HookResult:
    """POST `body` to `url` once, in at most `timeout` seconds all told: resolving the name,
    connecting (to each address in turn), the TLS handshake, sending, and reading the answer's
    status line and headers. Never raises for anything the receiver or the network does; the
    result says what happened. A redirect is a result (3xx), not followed."""
    import time
    from urllib.parse import urlsplit

    deadline = time.monotonic() + timeout
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as error:  # a port that is not a number, a bracketed host that is not an address
        return HookResult(error=f"malformed URL: {error}", permanent=True)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return HookResult(error="the URL must be http:// or https:// with a host", permanent=True)
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        addresses = checked_addresses(host, port, allow_private, _resolved_within(resolver, timeout))
    except Refused as refused:
        return HookResult(error=str(refused), permanent=True)
    except (OSError, UnicodeError) as error:
        return HookResult(error=_describe(error, timeout))

    cutoff = _Cutoff(deadline - time.monotonic())
    try:
        last_error: BaseException | None = None
        for address in addresses[:MAX_ADDRESSES]:
            left = deadline - time.monotonic()
            if left <= 0 or cutoff.fired:
                last_error = TimeoutError()
                break
            try:
                connection = _connect(scheme, host, port, address, left, cutoff)
            except OSError as error:
                last_error = TimeoutError() if cutoff.fired else error
                continue
            return _exchange(connection, target, body, headers, timeout, address, cutoff)
        return HookResult(error=_describe(last_error, timeout) if last_error else "could not connect")
    finally:
        cutoff.cancel()


def _exchange(connection: Any, target: str, body: bytes, headers: dict[str, str], timeout: float,
              address: str, cutoff: _Cutoff) -> HookResult:
    """Send the request and read the status line and headers, before the attempt's cutoff; the
    body of the answer is not read."""
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        error_text = None
        if 300 <= status < 400:
            from ..domain.redaction import redact_url

            # A redirect often names the hook's own URL again (http to https), credential and all.
            error_text = f"redirects are not followed (Location: {redact_url(response.getheader('Location', ''))})"
        elif not 200 <= status < 300:
            error_text = f"the receiver answered {status} {response.reason}".rstrip()
        return HookResult(status_code=status, error=error_text, address=address)
    except Exception as error:  # noqa: BLE001 - any failure of the exchange is an attempt's result
        if cutoff.fired:
            return HookResult(error=_describe(TimeoutError(), timeout), address=address)
        if isinstance(error, ValueError):  # http.client refuses a header or a URL it cannot send
            # Not its words: they quote the header's value or the URL, which are credentials.
            return HookResult(error="invalid header or URL: the request could not be sent", permanent=True,
                              address=address)
        return HookResult(error=_describe(error, timeout), address=address)
    finally:
        connection.close()
