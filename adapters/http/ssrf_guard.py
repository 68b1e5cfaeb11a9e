"""Fetching a URL a user gave us without letting them reach our own network (SSRF).

A URL is vetted before every request: http(s) only, no credentials, and every address its
host resolves to must be public (not loopback, private, link-local, cloud metadata,
multicast, reserved or unspecified) unless `SSRF_ALLOWED_HOSTS` allows it. The request then
goes to the vetted address itself (the Host header and TLS server name keep the host name),
so a second DNS answer cannot swap in an internal address (DNS rebinding). Redirects are
followed by hand, each hop vetted again, at most `MAX_REDIRECTS`, as httpx follows them: a
303 or 302 (or a 301 of a POST) goes on as a GET without the body, and the Authorization
header does not go to another origin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 3
TIMEOUT_SECONDS = 10.0  # each connect and read
DEADLINE_SECONDS = 30.0  # a whole fetch with its redirects: a server dripping bytes ends too
_REDIRECTS = {301, 302, 303, 307, 308}
# Cloud metadata services (AWS/GCP/Azure/OpenStack; AWS's IPv6 one). The IPv4 one is
# link-local, the IPv6 one unique-local, so both are refused as such too: named for clarity.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UrlRefused(Exception):
    """The URL may not be fetched, or fetching it failed; the message says why."""


class BodyTooLarge(UrlRefused):
    """The answer's body is longer than the caller's cap: refused rather than read on. The
    status and headers are known (a caller may word the refusal by the content's type)."""

    def __init__(self, max_bytes: int, headers: httpx.Headers) -> None:
        super().__init__(f"The file is larger than {max_bytes} bytes.")
        self.max_bytes = max_bytes
        self.headers = headers


@dataclass(frozen=True)
class AllowList:
    """`SSRF_ALLOWED_HOSTS`: host names, IP addresses and CIDR networks that may be
    fetched even though they are not public (tests, images on a self-hosted LAN)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        hosts, networks = set(), []
        for item in filter(None, (part.strip().lower() for part in value.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host in self.hosts or any(address in n for n in self.networks
                                         if n.version == address.version)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: IPv4 in the last 32 bits


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None or address.sixtofour is not None:
        return address.ipv4_mapped or address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public internet (an IPv6 address carrying an IPv4 one
    is judged as that IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return not (address in _METADATA or address.is_loopback or address.is_private
                or address.is_link_local or address.is_multicast or address.is_reserved
                or address.is_unspecified or not address.is_global)


@dataclass(frozen=True)
class VettedUrl:
    url: str
    host: str  # as in the URL, lower case, IPv6 without brackets
    addresses: tuple[IPAddress, ...]  # where the request may go (pinned), in order


async def vet_url(url: str, allow: AllowList) -> VettedUrl:
    """The URL with the address to fetch it from, or UrlRefused."""
    # urlsplit drops tabs and newlines and keeps other control characters, which the HTTP
    # client then refuses with an error of its own: refused here, like any malformed URL.
    if any(not c.isprintable() or c.isspace() for c in url):
        raise UrlRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("The URL is malformed.") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("The URL must be http or https.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The URL must not contain credentials.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("The URL has no host.")
    addresses = await _resolve(host, port or (443 if parts.scheme == "https" else 80))
    for address in addresses:
        if not (is_public(address) or allow.allows(host, address)):
            raise UrlRefused(f"The URL's host {host} is not a public address.")
    return VettedUrl(url, host, tuple(addresses))


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UrlRefused(f"The URL's host {host} could not be resolved.") from None
    # getaddrinfo may add a scope to link-local IPv6 ("fe80::1%eth0"): drop it to parse
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


@dataclass(frozen=True)
class FetchedHead:
    """A response's status and headers, and at most `max_bytes` of its body."""

    url: str  # after redirects
    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True)
class Outgoing:
    """What is sent on every hop (the body only while the method keeps it)."""

    method: str
    headers: dict[str, str]
    content: bytes | None = None

    def redirected(self, status: int, same_origin: bool) -> Outgoing:
        headers = self.headers if same_origin else {
            k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        if self.method != "HEAD" and (status in (302, 303)
                                      or (status == 301 and self.method == "POST")):
            kept = {k: v for k, v in headers.items()
                    if k.lower() not in ("content-type", "content-length")}
            return Outgoing("GET", kept)
        return Outgoing(self.method, headers, self.content)


async def guarded_request(method: str, url: str, allow: AllowList, *, max_bytes: int,
                          headers: dict[str, str] | None = None,
                          content: bytes | None = None,
                          timeout: float | httpx.Timeout = TIMEOUT_SECONDS,
                          deadline: float = DEADLINE_SECONDS,
                          verify: bool = True) -> FetchedHead:
    """`method` on a vetted URL (redirects vetted hop by hop), within `deadline`. A body
    longer than `max_bytes` is refused (BodyTooLarge) rather than read on."""
    outgoing = Outgoing(method.upper(), dict(headers or {}), content)
    try:
        async with asyncio.timeout(deadline):
            return await _following(outgoing, url, allow, max_bytes, timeout, verify)
    except TimeoutError:
        pass  # refused below, outside the handler: the refusal wraps no timeout
    raise UrlRefused(f"The URL did not answer within {deadline:g} s.")


async def _following(outgoing: Outgoing, url: str, allow: AllowList, max_bytes: int,
                     timeout: float | httpx.Timeout, verify: bool) -> FetchedHead:
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                 timeout=timeout, verify=verify) as client:
        for _ in range(MAX_REDIRECTS + 1):
            vetted = await vet_url(url, allow)
            fetched = await _pinned(client, outgoing, vetted, max_bytes)
            location = fetched.headers.get("location")
            if fetched.status not in _REDIRECTS or not location:
                return fetched
            target = urljoin(url, location)
            outgoing = outgoing.redirected(fetched.status, _origin(target) == _origin(url))
            url = target
    raise UrlRefused(f"The URL redirects more than {MAX_REDIRECTS} times.")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


async def _pinned(client: httpx.AsyncClient, outgoing: Outgoing, vetted: VettedUrl,
                  max_bytes: int) -> FetchedHead:
    """The request sent to the vetted addresses in turn until one connects."""
    failure: httpx.HTTPError | None = None
    for address in vetted.addresses:
        try:
            return await _send(client, outgoing, vetted, address, max_bytes)
        except httpx.HTTPError as exc:
            failure = exc
            if not isinstance(exc, httpx.ConnectError):  # only an unreachable address
                break                                     # is worth trying the next one
    raise UrlRefused(f"The URL could not be fetched ({type(failure).__name__}).")


async def _send(client: httpx.AsyncClient, outgoing: Outgoing, vetted: VettedUrl,
                ip: IPAddress, max_bytes: int) -> FetchedHead:
    """The request sent to one vetted address, with the original Host header and (https)
    TLS server name, so the certificate is still checked against the host name."""
    original = httpx.URL(vetted.url)
    pinned = original.copy_with(host=str(ip))
    extensions = {"sni_hostname": vetted.host} if original.scheme == "https" else {}
    request = client.build_request(outgoing.method, pinned, extensions=extensions,
                                   content=outgoing.content,
                                   headers={**outgoing.headers,
                                            "Host": original.netloc.decode()})
    response = await client.send(request, stream=True)
    try:
        body = bytearray()
        if outgoing.method != "HEAD":
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise BodyTooLarge(max_bytes, response.headers)
        return FetchedHead(vetted.url, response.status_code, response.headers, bytes(body))
    finally:
        await response.aclose()
