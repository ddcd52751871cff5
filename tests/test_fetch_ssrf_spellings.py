"""The SSRF guard against every spelling of a private address that we know of (issue #23).

Each URL is fetched for real, by the fetch stage, against a loopback server that must see **no
request**: in the first hop (a strict policy, the server on 127.0.0.1) and in a redirect hop (the
redirector on 127.0.0.1 is an allowed "local mirror", the target server listens on 127.0.0.2, which is
not allowed). The spellings come from the attacks a hostile user tried: Unicode dots and digits that
IDNA folds into an ASCII address, the legacy numeric forms the C resolver accepts, percent-escapes,
names of the local host, the unspecified address, and IPv6 forms that carry an IPv4 address.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from photocorpus import reasons
from photocorpus.config import FetchSettings
from photocorpus.corpus import Corpus
from photocorpus.fetch import http as fetch_http
from photocorpus.fetch.stage import fetch_photos
from photocorpus.netguard import AddressPolicy, BlockedURLError, check_url, embedded_ipv4, is_public_address
from photocorpus.records import ImageURL, PhotoRecord
from tests.fixtures.image_server import ImageServer, Route, real_jpeg

pytestmark = pytest.mark.reliability

UNICODE_DOTS = ["\u3002", "\uff0e", "\uff61", "\u2024", "\ufe52"]  # 。 ． ｡ ․ ﹒


def _digits(text: str, zero: int) -> str:
    """``text`` with its ASCII digits replaced by the run of digits that starts at code point ``zero``."""
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


def _circled(text: str) -> str:
    return "".join(("\u24ea" if c == "0" else chr(0x2460 + int(c) - 1)) if c.isdigit() else c for c in text)


def _superscript(text: str) -> str:
    table = str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
    return text.translate(table)


def spellings_of_loopback(last: int) -> dict[str, str]:
    """Host parts (``host`` or ``[v6]``) that reach, or claim to reach, 127.0.0.<last>."""
    dotted = f"127.0.0.{last}"
    as_int = int(ipaddress.IPv4Address(dotted))
    hosts = {f"dot-{ord(d):04x}": dotted.replace(".", d) for d in UNICODE_DOTS}
    hosts |= {
        "one-unicode-dot": f"127\u30020.0.{last}",
        "trailing-unicode-dot": f"{dotted}\u3002",
        "fullwidth-digits": _digits(dotted, 0xFF10),
        "fullwidth-digits-and-dots": _digits(dotted, 0xFF10).replace(".", "\uff0e"),
        "circled-digits": _circled(dotted),
        "circled-127-only": _circled("127") + f".0.0.{last}",
        "math-bold-digits": _digits(dotted, 0x1D7CE),
        "math-double-struck-digits": _digits(dotted, 0x1D7D8),
        "math-sans-digits": _digits(dotted, 0x1D7E2),
        "superscript-digits": _superscript(dotted),
        "fullwidth-decimal": _digits(str(as_int), 0xFF10),
        "decimal": str(as_int),
        "hex": hex(as_int),
        "hex-upper": hex(as_int).upper().replace("0X", "0x"),
        "dotted-hex": f"0x7f.0x0.0x0.0x{last:x}",
        "octal": f"0177.0.0.{last}",
        "padded-octal": f"0177.0000.0000.000{last}",
        "leading-zeros": f"127.000.000.00{last}",
        "short-2": f"127.{last}",
        "short-3": f"127.0.{last}",
        "hex-short": f"0x7f.{last}",
        "trailing-dot": f"{dotted}.",
        "percent-digits": f"%31%32%37.0.0.{last}",
        "percent-dots": f"127%2E0%2E0%2E{last}",
        "v4-mapped": f"[::ffff:{dotted}]",
        "v4-mapped-hex": f"[::ffff:7f00:{last:x}]",
        "v4-mapped-long": f"[0:0:0:0:0:ffff:{dotted}]",
        "v4-compatible": f"[::{dotted}]",
        "v4-compatible-hex": f"[::7f00:{last:x}]",
        "v4-translated": f"[::ffff:0:{dotted}]",
        "v4-translated-hex": f"[::ffff:0:7f00:{last:x}]",
        "nat64": f"[64:ff9b::{dotted}]",
        "nat64-hex": f"[64:ff9b::7f00:{last:x}]",
        "nat64-local-use": f"[64:ff9b:1::{dotted}]",
        "6to4": f"[2002:7f00:{last:x}::]",
        "unspecified": "0.0.0.0",
        "unspecified-short": "0",
        "unspecified-hex": "0x0",
        "unspecified-unicode": "\uff10\u3002\uff10\u3002\uff10\u3002\uff10",
        "unspecified-v6": "[::]",
        "unspecified-v4-mapped": "[::ffff:0.0.0.0]",
        "v6-loopback": "[::1]",
        "v6-loopback-long": "[0:0:0:0:0:0:0:1]",
    }
    return hosts


OTHER_PRIVATE_HOSTS = {
    "metadata": "169.254.169.254",
    "metadata-fullwidth": _digits("169.254.169.254", 0xFF10),
    "metadata-unicode-dots": "169\u3002254\u3002169\u3002254",
    "metadata-decimal": str(int(ipaddress.IPv4Address("169.254.169.254"))),
    "metadata-v4-mapped": "[::ffff:169.254.169.254]",
    "metadata-nat64": "[64:ff9b::a9fe:a9fe]",
    "private-10": "10.0.0.1",
    "private-10-octal": "012.0.0.1",
    "private-192": "192.168.0.1",
    "private-172-nat64": "[64:ff9b::172.16.0.1]",
    "shared-100-64": "100.64.0.1",
    "link-local-v6": "[fe80::1]",
    "site-local-v6": "[fec0::1]",
    "unique-local-v6": "[fc00::1]",
    "teredo-to-loopback": "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # client 127.0.0.1, obfuscated
}

NAMES_OF_THE_LOCAL_HOST = {
    "localhost": "localhost",
    "localhost-upper": "LOCALHOST",
    "localhost-dot": "localhost.",
    "localhost-fullwidth": "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
    "localhost-circled": "".join(chr(0x24D0 + ord(c) - ord("a")) for c in "localhost"),
    "localhost-subdomain": "photos.localhost",
}


def _run(tmp_path: Path, urls: dict[str, str], **settings: object) -> dict[str, tuple[str | None, str]]:
    corpus = Corpus.create(tmp_path / "c")
    ids = corpus.add_photos(
        [PhotoRecord("t", sid, ["x"], urls=[ImageURL("url_l", u)]) for sid, u in urls.items()]
    )
    fetch_photos(
        corpus,
        FetchSettings.model_validate(
            {"host_rate_per_s": 0, "workers": 1, "max_retries": 0, "connect_timeout_s": 3, **settings}
        ),
    )
    out = {}
    for sid, pid in zip(urls, ids, strict=True):
        stage = corpus.photo(pid)["stages"]["fetch"]
        out[sid] = (stage["reason"], stage["detail"] or "")
    return out


def _assert_all_refused_by_us(result: dict[str, tuple[str | None, str]]) -> None:
    wrong = {k: v for k, v in result.items() if v[0] != reasons.BLOCKED_URL}
    assert not wrong, f"not refused as blocked_url: {wrong}"
    # our own wording, never the HTTP client's ("is not a canonical IPv4 address", "Cannot connect")
    foreign = {k: v[1] for k, v in result.items() if "refused" not in v[1] or "canonical" in v[1]}
    assert not foreign, f"refusals without our wording: {foreign}"


def test_the_table_has_at_least_60_spellings() -> None:
    first = len(spellings_of_loopback(1)) + len(OTHER_PRIVATE_HOSTS) + len(NAMES_OF_THE_LOCAL_HOST)
    assert first >= 60
    assert len(spellings_of_loopback(2)) + len(OTHER_PRIVATE_HOSTS) >= 60


def test_first_hop_spellings_never_reach_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instany_images: Path
) -> None:
    monkeypatch.delenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", raising=False)
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        server.add("/a.jpg", Route(body))
        hosts = spellings_of_loopback(1) | OTHER_PRIVATE_HOSTS | NAMES_OF_THE_LOCAL_HOST
        urls = {name: f"http://{host}:{server.port}/a.jpg" for name, host in hosts.items()}
        result = _run(tmp_path, urls)
        assert server.hits == [], [h.path for h in server.hits]
    _assert_all_refused_by_us(result)


def test_redirect_hop_spellings_never_reach_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instany_images: Path
) -> None:
    """The redirector is an allowed mirror (127.0.0.1/32); its redirects must not open the rest."""
    monkeypatch.delenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", raising=False)
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as redirector, ImageServer(host="127.0.0.2") as target:
        target.add("/a.jpg", Route(body))
        redirector.add("/a.jpg", Route(body))  # what a spelling that folds into 127.0.0.1 would reach
        hosts = spellings_of_loopback(2) | OTHER_PRIVATE_HOSTS
        urls = {}
        for name, host in hosts.items():
            location = f"http://{host}:{target.port}/a.jpg"
            # the header goes out as the UTF-8 bytes a hostile server would send
            wire = location.encode("utf-8").decode("latin-1")
            urls[name] = redirector.add(f"/r/{name}", Route(status=302, location=wire))
        urls["control"] = redirector.add("/r/control", Route(status=302, location="/a.jpg"))
        result = _run(tmp_path, urls, allowed_networks=["127.0.0.1/32"], max_redirects=2)
        assert target.hits == [], [h.path for h in target.hits]
        assert redirector.requests_to("/a.jpg") == 1  # the control alone
        assert all(redirector.requests_to(f"/r/{name}") == 1 for name in hosts)
    assert result.pop("control")[0] is None  # the allowed mirror itself still works
    _assert_all_refused_by_us(result)


def test_ip_literals_are_checked_at_connect_time_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instany_images: Path
) -> None:
    """aiohttp skips the resolver for an IP host; the socket factory must still refuse it.

    The URL check is switched off here to stand for a spelling it does not know yet.
    """
    monkeypatch.delenv("PHOTOCORPUS_ALLOW_PRIVATE_URLS", raising=False)
    monkeypatch.setattr(fetch_http, "check_url", lambda url, policy: check_url(url, AddressPolicy(True)))
    body = real_jpeg(sorted(instany_images.glob("*.jpg"))[0], (600, 600))
    with ImageServer() as server:
        urls = {"literal": server.add("/a.jpg", Route(body)), "v4-mapped": f"http://[::1]:{server.port}/a"}
        result = _run(tmp_path, urls)
        assert server.hits == []
    assert {k: v[0] for k, v in result.items()} == dict.fromkeys(urls, reasons.BLOCKED_URL)
    assert "127.0.0.1 is a private, loopback or link-local address; refused" in result["literal"][1]


@pytest.mark.parametrize(
    "address",
    ["::7f00:1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::10.0.0.1", "64:ff9b:1::808:808",
     "::ffff:0:7f00:1", "fec0::1", "fd12:3456::1", "2002:a00:1::1", "2002:c0a8:1::1", "::ffff:0:0"],
)  # fmt: skip
def test_ipv6_forms_of_private_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    ("address", "inner"),
    [("::ffff:8.8.8.8", "8.8.8.8"), ("::808:808", "8.8.8.8"), ("::ffff:0:808:808", "8.8.8.8"),
     ("64:ff9b::808:808", "8.8.8.8"), ("2002:808:808::1", "8.8.8.8"), ("2001:4860:4860::8888", None)],
)  # fmt: skip
def test_embedded_ipv4_and_public_forms(address: str, inner: str | None) -> None:
    ip = ipaddress.IPv6Address(address)
    assert embedded_ipv4(ip) == (ipaddress.IPv4Address(inner) if inner else None)
    assert is_public_address(ip)  # a public IPv4 inside, or a plain public IPv6


@pytest.mark.parametrize(
    "host",
    ["８.８.８.８", "8\u30028\u30028\u30028", "134744072", "0x8080808", "010.010.010.010", "8.8.2056"],
)  # fmt: skip
def test_public_addresses_in_odd_spellings_are_refused_too(host: str) -> None:
    """No person types a public address that way: the spelling itself is refused, whatever it names."""
    with pytest.raises(BlockedURLError, match=r"non-ASCII|legacy numeric"):
        check_url(f"http://{host}/a.jpg", AddressPolicy(allow_private=True))


@pytest.mark.parametrize(
    ("url", "host"),
    [("http://EXAMPLE.com/a.jpg", "example.com"), ("https://bücher.example/a.jpg", "xn--bcher-kva.example"),
     ("http://93.184.216.34:8080/a", "93.184.216.34"),
     ("http://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
     ("http://１２３.example.com/a", "123.example.com")],
)  # fmt: skip
def test_ordinary_hosts_pass_in_their_normalised_form(url: str, host: str) -> None:
    assert check_url(url, AddressPolicy()).raw_host == host
