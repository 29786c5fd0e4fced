"""Limits on connections and on what one connection may send. Pure: counts and a clock in.

- :class:`ConnectionCounts`: how many connections are open in all, on each
  document and from each client IP, against ``max_connections``,
  ``max_connections_per_doc`` and ``max_connections_per_ip``. :meth:`~ConnectionCounts.open`
  either refuses (:class:`~collab.errors.ServerBusy` for the first two,
  :class:`~collab.errors.TooManyConnections` for the last) or hands out a
  :class:`Slot`, which counts until it is released, once.
- :class:`TokenBucket`: a rate with bursts, on clock readings the caller passes.
- :class:`TrustedProxies`: the client IP of a connection, read from
  ``X-Forwarded-For`` only when the peer is a trusted proxy
  (``forwarded_allow_ips``).

Nothing here reads a clock, a socket or the environment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from collab.errors import ServerBusy, TooManyConnections

__all__ = ["ConnectionCounts", "Slot", "TokenBucket", "TrustedProxies", "peer_host"]


class TokenBucket:
    """At most ``burst`` messages at once, refilled at ``rate`` messages per second.

    ``now`` is a reading of a monotonic clock in seconds; the bucket never reads
    a clock itself, so tests can drive it.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        elapsed = now - self._stamp
        self._stamp = now
        if elapsed > 0.0:  # a clock that stepped back refills nothing
            tokens = self._tokens + elapsed * self.rate
            self._tokens = tokens if tokens < self.burst else self.burst
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Slot:
    """One admitted connection's place in the counts. :meth:`release` it once it ends.

    Releasing twice is harmless (the second does nothing), so every path that
    ends a connection may release without knowing whether another already did.
    """

    __slots__ = ("_counts", "doc", "ip")

    def __init__(self, counts: ConnectionCounts, doc: str | None, ip: str) -> None:
        self._counts: ConnectionCounts | None = counts
        self.doc = doc
        self.ip = ip

    @property
    def held(self) -> bool:
        """True until :meth:`release`."""
        return self._counts is not None

    def release(self) -> None:
        """Give the place back. Idempotent."""
        counts, self._counts = self._counts, None
        if counts is not None:
            counts._release(self)


class ConnectionCounts:
    """Open connections in all, per document and per client IP, and their caps.

    A cap of ``None`` is no cap. A connection with no document (a signaling peer)
    counts only in all and per IP; one whose IP is unknown (``""``) only in all and
    per document.
    """

    def __init__(
        self, max_total: int | None, max_per_doc: int | None, max_per_ip: int | None
    ) -> None:
        self.max_total = max_total
        self.max_per_doc = max_per_doc
        self.max_per_ip = max_per_ip
        self.total = 0
        self._docs: dict[str, int] = {}
        self._ips: dict[str, int] = {}

    def on_doc(self, doc: str) -> int:
        """Connections open on ``doc`` now."""
        return self._docs.get(doc, 0)

    def from_ip(self, ip: str) -> int:
        """Connections open from ``ip`` now."""
        return self._ips.get(ip, 0)

    def open(self, doc: str | None, ip: str) -> Slot:
        """Count a new connection on ``doc`` from ``ip``; release the slot when it ends.

        The error's reason names the setting and its value (safe to send: it says
        nothing of the other connections).

        Raises:
            ServerBusy: ``max_connections`` or ``max_connections_per_doc`` is reached.
            TooManyConnections: ``max_connections_per_ip`` is reached for ``ip``.
        """
        if self.max_total is not None and self.total >= self.max_total:
            raise ServerBusy(f"too many connections (max_connections={self.max_total})")
        if doc is not None and self.max_per_doc is not None:
            if self._docs.get(doc, 0) >= self.max_per_doc:
                raise ServerBusy(
                    f"too many connections to this document "
                    f"(max_connections_per_doc={self.max_per_doc})"
                )
        if ip and self.max_per_ip is not None and self._ips.get(ip, 0) >= self.max_per_ip:
            raise TooManyConnections(
                f"too many connections from this address (max_connections_per_ip={self.max_per_ip})"
            )
        self.total += 1
        if doc is not None:
            self._docs[doc] = self._docs.get(doc, 0) + 1
        if ip:
            self._ips[ip] = self._ips.get(ip, 0) + 1
        return Slot(self, doc, ip)

    def _release(self, slot: Slot) -> None:
        self.total -= 1
        _decrement(self._docs, slot.doc)
        _decrement(self._ips, slot.ip)


def _decrement(counts: dict[str, int], key: str | None) -> None:
    if not key:
        return
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]  # no entry per IP or document that ever connected


def peer_host(peer: str) -> str:
    """The host of a transport's ``"host:port"`` peer address (``""`` stays ``""``).

    IPv6 addresses come as ``"::1:5000"`` or ``"[::1]:5000"``; both give ``"::1"``.
    """
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        host = peer
    return host.removeprefix("[").removesuffix("]")


class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-For`` header is believed.

    ``allow`` lists addresses (``127.0.0.1``), networks (``10.0.0.0/8``) or ``*``
    (any peer: only when nothing but the proxy can reach the port), like uvicorn's
    ``--forwarded-allow-ips``. Empty trusts nobody: the client IP is the peer's.

    Raises:
        ValueError: an entry is neither ``*`` nor an IP address or network.
    """

    def __init__(self, allow: Iterable[str]) -> None:
        self.any = False
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            if item == "*":
                self.any = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {item!r} is not an IP address, a network or *"
                ) from None

    def __bool__(self) -> bool:
        return self.any or bool(self._networks)

    def trusts(self, host: str) -> bool:
        """True if ``host`` (an IP address as text) is a trusted proxy."""
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The IP a connection from ``peer`` (``"host:port"``) stands for.

        When the peer is trusted and sent ``X-Forwarded-For`` (``forwarded_for``),
        its entries are read from the right (the one the nearest proxy added) and
        the first that is not itself a trusted proxy is the client; if every entry
        is trusted, the leftmost. Otherwise, and for an untrusted peer (whose header
        anyone could have written), it is the peer's own address.
        """
        host = peer_host(peer)
        if not forwarded_for or not self or not self.trusts(host):
            return host
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else host
