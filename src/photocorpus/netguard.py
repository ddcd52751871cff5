"""Refusing URLs that point inside the network we run in (SSRF guard).

URLs come from sources we do not control: a harvested record, a URL list, a redirect. Fetching them
blindly would let anyone who can put a URL in front of us make this machine talk to its own services
(``http://127.0.0.1:6379/``, the cloud metadata service at ``169.254.169.254``, a router at
``192.168.0.1``...). So every URL is checked three times, each on what the HTTP client really uses:

* before DNS (:func:`check_url`): the URL is parsed by the client's own URL parser (yarl), which applies
  IDNA/UTS-46 mapping to the host. What is checked is that normalised host, and the caller requests the
  very :class:`yarl.URL` object that was checked, so no second parse can disagree with the check. Only
  ``http``/``https``, a host is required, an IP literal must be a public address, and three spellings
  are refused outright whatever the policy: an IP address written with any non-ASCII character
  (``127。0。0。1``, ``１２７.０.０.１``, ``①②⑦.0.0.1``: IDNA folds them into an address that no person
  typed), a legacy numeric IPv4 form (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``: the C
  resolver reads them as addresses) and a host with percent-escapes (no DNS name has one);
* after DNS (:func:`check_resolved`): every address the name resolves to must be public, and the
  connection is then made to exactly those checked addresses (the HTTP client's resolver calls this),
  so a name cannot resolve to a public address for the check and a private one for the connection;
* at connect time (:func:`check_connect_address`): the socket factory checks the address each socket
  is about to connect to. aiohttp skips the resolver for a host that is already an IP address; this
  last check has no such shortcut, so even a host that got past the first check in a form we did not
  foresee cannot reach a private address.

Redirects go through all three again, hop by hop. IPv6 addresses that carry an IPv4 address (mapped,
compatible, translated, NAT64, 6to4, Teredo) are judged by the IPv4 address inside, since a stack or a
translator on the path may deliver them there. ``--allow-private-urls`` or
``PHOTOCORPUS_ALLOW_PRIVATE_URLS=1`` lifts the address rules (tests, local mirrors); single networks
can be allowed with :class:`AddressPolicy`'s ``allowed_networks``. The scheme rule and the spelling
rules always hold. The rules follow OWASP's SSRF prevention cheat sheet: normalise, then allow-list
the scheme and check the destination address, re-checked on every redirect and at connect time.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yarl import URL

from photocorpus.errors import PhotocorpusError

ALLOWED_SCHEMES = frozenset({"http", "https"})
ENV_ALLOW_PRIVATE = "PHOTOCORPUS_ALLOW_PRIVATE_URLS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges whose last 32 bits are an IPv4 address that the packet may end up at.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated "IPv4-compatible" (RFC 4291 2.5.5.1)
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT "IPv4-translated" (RFC 2765)
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the translator is on our path
# RFC 8215 local-use NAT64: the IPv4 address may sit at any of six positions, depending on a prefix
# length we cannot know, and the translator is by definition a local one: never public.
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside some sites

# A host the C resolver (inet_aton) would read as an IPv4 address: one to four dot-separated parts,
# each decimal, octal (leading 0) or hex (0x), optionally with a trailing dot.
_NUMERIC_HOST = re.compile(r"(?:(?:0x[0-9a-f]*|[0-9]+)\.){0,3}(?:0x[0-9a-f]*|[0-9]+)\.?", re.IGNORECASE)


class BlockedURLError(PhotocorpusError):
    """A URL was refused: not http(s), no host, or a private/loopback/link-local destination."""


class BlockedAddressError(ConnectionRefusedError):
    """A socket was about to connect to an address the policy forbids (raised by the socket factory).

    An ``OSError``, because that is what the HTTP client's connection code expects from a socket that
    cannot connect: it then fails the request cleanly, and the downloader maps this class to
    ``blocked_url``.
    """


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
        ip = as_ip(address)
        if ip is None:
            return False
        if self.allow_private or is_public_address(ip):
            return True
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)


def as_ip(address: str | IPAddress) -> IPAddress | None:
    """``address`` as an IP address object, or None when it is not one (an IPv6 zone id is dropped)."""
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address carries and may be delivered to, if it carries one.

    Mapped (``::ffff:a.b.c.d``), compatible (``::a.b.c.d``), translated (``::ffff:0:a.b.c.d``) and
    well-known NAT64 (``64:ff9b::a.b.c.d``) keep it in the last 32 bits; 6to4 (``2002:AABB:CCDD::``)
    after the prefix; Teredo holds the client's address obfuscated, which :mod:`ipaddress` decodes.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _V4_COMPATIBLE or ip in _V4_TRANSLATED or ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    ``is_global`` excludes private, loopback, link-local, shared (100.64/10), documentation, reserved
    and unspecified ranges. An IPv6 address that carries an IPv4 address is judged by that address
    (see :func:`embedded_ipv4`); site-local (``fec0::/10``), unique-local (``fc00::/7``) and local-use
    NAT64 (``64:ff9b:1::/48``) are private.
    """
    ip = as_ip(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _SITE_LOCAL or ip in _NAT64_LOCAL_USE or ip.is_private:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_public_address(inner)
    return bool(ip.is_global) and not ip.is_multicast


def check_url(url: str | URL, policy: AddressPolicy) -> URL:
    """Check a URL before any DNS lookup, as the HTTP client will see it; return the checked URL.

    The caller must request the returned :class:`yarl.URL` itself (not the string again), so that what
    was checked is what is fetched. Raises :class:`BlockedURLError` with a message of ours.
    """
    text = str(url).strip()
    shown = text[:200]
    try:
        parsed = url if isinstance(url, URL) else URL(text)
        port = parsed.explicit_port
    except (ValueError, TypeError, UnicodeError) as exc:
        raise BlockedURLError(f"malformed URL {shown!r}: {exc}") from exc
    scheme = (parsed.scheme or "").lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedURLError(f"only http(s) URLs are fetched, not {scheme or 'scheme-less'!r}: {shown!r}")
    host = parsed.raw_host or ""  # the ASCII host the client connects to, after IDNA/UTS-46
    if not host:
        raise BlockedURLError(f"URL has no host: {shown!r}")
    if parsed.raw_user or parsed.raw_password:
        raise BlockedURLError(f"URL carries credentials, refused: {scheme}://…@{host}")
    if port == 0:
        raise BlockedURLError(f"URL has port 0: {shown!r}")
    if "%" in host:
        raise BlockedURLError(f"URL host has percent-escapes, refused: {shown!r}")
    ip = as_ip(host)
    typed = _typed_host(text)
    if (ip is not None or _NUMERIC_HOST.fullmatch(host)) and not typed.isascii():
        raise BlockedURLError(
            f"URL host {typed!r} is an IP address written with non-ASCII characters ({host}); refused"
        )
    if ip is None and _NUMERIC_HOST.fullmatch(host):
        raise BlockedURLError(
            f"URL host {host!r} is a legacy numeric IPv4 form (decimal, octal, hex or shortened); refused: "
            f"write the address as four decimal numbers"
        )
    if ip is None and _is_localhost_name(host):
        ip = ipaddress.IPv4Address("127.0.0.1")
    if ip is not None and not policy.permits(ip):
        raise BlockedURLError(_private_message(host, str(ip)))
    return parsed


def _is_localhost_name(host: str) -> bool:
    """``localhost`` and its subdomains, which always name the loopback interface (RFC 6761 6.3).

    Judged before DNS, so that the answer does not depend on what this machine's resolver makes of
    ``localhost.`` or ``a.localhost``.
    """
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _typed_host(text: str) -> str:
    """The host as written in the URL text, before any IDNA mapping (best effort, for the checks)."""
    try:
        netloc = urlsplit(text).netloc
    except ValueError:
        return ""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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


def check_connect_address(address: str, policy: AddressPolicy) -> None:
    """The last check, on the address a socket is about to connect to: raise
    :class:`BlockedAddressError` when the policy forbids it (see the module docstring)."""
    if not policy.permits(address):
        raise BlockedAddressError(_private_message(address, address))


def _private_message(host: str, address: str) -> str:
    where = host if host == address else f"{host} ({address})"
    return (
        f"{where} is a private, loopback or link-local address; refused. Set allow_private_urls "
        f"(--allow-private-urls) or {ENV_ALLOW_PRIVATE}=1 to fetch from local servers and mirrors"
    )
