"""Refusing URLs that point inside the network we run in (SSRF guard).

URLs come from sources we do not control: a harvested record, a URL list, a redirect. Fetching them
blindly would let anyone who can put a URL in front of us make this machine talk to its own services
(``http://127.0.0.1:6379/``, the cloud metadata service at ``169.254.169.254``, a router at
``192.168.0.1``...). So every URL is checked twice:

* before DNS (:func:`check_url`): only ``http``/``https``, a host is required, and an IP literal must
  be a public address;
* after DNS (:func:`check_resolved`): every address the name resolves to must be public, and the
  connection is then made to exactly those checked addresses (the HTTP client's resolver calls this),
  so a name cannot resolve to a public address for the check and a private one for the connection.

Redirects go through both checks again, hop by hop. ``--allow-private-urls`` or
``PHOTOCORPUS_ALLOW_PRIVATE_URLS=1`` lifts the address rules (tests, local mirrors); single networks
can be allowed with :class:`AddressPolicy`'s ``allowed_networks``. The scheme rule always holds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from photocorpus.errors import PhotocorpusError

ALLOWED_SCHEMES = frozenset({"http", "https"})
ENV_ALLOW_PRIVATE = "PHOTOCORPUS_ALLOW_PRIVATE_URLS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedURLError(PhotocorpusError):
    """A URL was refused: not http(s), no host, or a private/loopback/link-local destination."""


def env_allows_private() -> bool:
    """Whether ``PHOTOCORPUS_ALLOW_PRIVATE_URLS`` is set to a true value."""
    return os.environ.get(ENV_ALLOW_PRIVATE, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AddressPolicy:
    """Which destination addresses may be contacted.

    ``allow_private`` lifts the rule entirely; ``allowed_networks`` lets specific non-public networks
    through (a local mirror at ``10.1.2.3/32``) while everything else private stays refused.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, allow_private: bool | None = None, allowed_networks: Iterable[str] = ()) -> AddressPolicy:
        """A policy from a command-line flag (``None``: not given) plus the environment variable."""
        allowed = bool(allow_private) or env_allows_private()
        networks = []
        for net in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(net, strict=False))
            except ValueError as exc:
                raise BlockedURLError(
                    f"{net!r} is not a network; write allowed networks like 10.1.2.3/32"
                ) from exc
        return cls(allowed, tuple(networks))

    def permits(self, address: str | IPAddress) -> bool:
        """True if connecting to ``address`` is allowed under this policy."""
        ip = _as_ip(address)
        if ip is None:
            return False
        if self.allow_private or is_public_address(ip):
            return True
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)


def _as_ip(address: str | IPAddress) -> IPAddress | None:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def is_public_address(address: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    ``is_global`` excludes private, loopback, link-local, shared (100.64/10), documentation, reserved
    and unspecified ranges. IPv4 addresses wrapped in IPv6 (``::ffff:127.0.0.1``, 6to4) are unwrapped
    first, since a stack may route them to the IPv4 address they contain.
    """
    ip = _as_ip(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return is_public_address(inner)
        if ip.teredo is not None:
            return is_public_address(ip.teredo[1])
    return bool(ip.is_global) and not ip.is_multicast


def check_url(url: str, policy: AddressPolicy) -> str:
    """Check a URL before any DNS lookup; return its host. Raises :class:`BlockedURLError`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise BlockedURLError(f"malformed URL {url[:200]!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedURLError(
            f"only http(s) URLs are fetched, not {scheme or 'scheme-less'!r}: {url[:200]!r}"
        )
    host = (parts.hostname or "").strip()
    if not host:
        raise BlockedURLError(f"URL has no host: {url[:200]!r}")
    if parts.username or parts.password:
        raise BlockedURLError(f"URL carries credentials, refused: {scheme}://…@{host}")
    if port == 0:
        raise BlockedURLError(f"URL has port 0: {url[:200]!r}")
    ip = _as_ip(host)
    if ip is not None and not policy.permits(ip):
        raise BlockedURLError(_private_message(host, str(ip)))
    return host


def check_resolved(host: str, addresses: Sequence[str], policy: AddressPolicy) -> None:
    """Check every address ``host`` resolved to; refuse the host if any one is not permitted.

    All of them, not just one: a name that resolves to a mix of public and private addresses is either
    misconfigured or an attack, and the client may pick any of them.
    """
    if not addresses:
        raise BlockedURLError(f"{host} did not resolve to any address")
    for address in addresses:
        if not policy.permits(address):
            raise BlockedURLError(_private_message(host, address))


def _private_message(host: str, address: str) -> str:
    where = host if host == address else f"{host} ({address})"
    return (
        f"{where} is a private, loopback or link-local address; refused. Pass --allow-private-urls "
        f"or set {ENV_ALLOW_PRIVATE}=1 to fetch from local servers and mirrors"
    )
