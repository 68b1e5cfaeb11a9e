"""The SSRF guard: which addresses a user-given URL may reach, and fetching through it
(pinned address, redirects vetted hop by hop, size cap) against a local HTTP server."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterator

import pytest

from adapters.http.ssrf_guard import (
    MAX_REDIRECTS,
    AllowList,
    UrlRefused,
    guarded_request,
    is_public,
    vet_url,
)
from tests.local_http import QuietHandler, serving

NOTHING = AllowList()


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.254",
    "192.168.1.1", "169.254.169.254", "169.254.1.1", "fd00:ec2::254", "fe80::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
    "240.0.0.1", "255.255.255.255", "100.64.0.1", "fc00::1",
    "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
])
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "172.32.0.1",
                                     "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png", "http://[::1]:8080/a.png", "https://10.0.0.5/a.png",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]/a.png", "http://0.0.0.0:5001/", "http://localhost/a.png",
    "http://LOCALHOST./a.png",
])
async def test_urls_reaching_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused, match="not a public address"):
        await vet_url(url, NOTHING)


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///etc/passwd", "http or https"), ("gopher://8.8.8.8/", "http or https"),
    ("ftp://8.8.8.8/a.png", "http or https"), ("http://user:pw@8.8.8.8/", "credentials"),
    ("http:///a.png", "no host"), ("http://8.8.8.8:99999/", "malformed"),
])
async def test_other_schemes_credentials_and_malformed_urls_are_refused(url: str,
                                                                        reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        await vet_url(url, NOTHING)


async def test_a_public_ip_literal_passes_and_is_pinned() -> None:
    vetted = await vet_url("https://8.8.8.8/cat.png", NOTHING)
    assert vetted.addresses == (ipaddress.ip_address("8.8.8.8"),)


async def test_the_allow_list_admits_hosts_ips_and_networks() -> None:
    allow = AllowList.parse(" localhost , 10.0.0.0/8,::1 ")
    assert all(a.is_loopback for a in (await vet_url("http://localhost:9/a.png", allow)).addresses)
    assert [str(a) for a in (await vet_url("http://10.9.8.7/a.png", allow)).addresses] == [
        "10.9.8.7"]
    assert [str(a) for a in (await vet_url("http://[::1]/a.png", allow)).addresses] == ["::1"]
    with pytest.raises(UrlRefused):
        await vet_url("http://192.168.0.1/a.png", allow)
    with pytest.raises(UrlRefused):  # only 127.0.0.1 itself, not the whole loopback network
        await vet_url("http://127.0.0.2/a.png", AllowList.parse("127.0.0.1"))


class _Handler(QuietHandler):
    """/img: a 2 KB PNG; /hop/N: N redirects then /img; /away: a redirect to 127.0.0.2;
    /drip: 2 KB a byte at a time."""

    hosts: list[str] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers["Host"])
        port = self.server.server_address[1]
        if self.path.startswith("/hop/"):
            left = int(self.path.rsplit("/", 1)[1])
            self._redirect(f"/hop/{left - 1}" if left > 1 else "/img")
        elif self.path == "/away":
            self._redirect(f"http://127.0.0.2:{port}/img")
        elif self.path == "/drip":  # a byte at a time, each well within the read timeout
            self.send_response(200)
            self.send_header("Content-Length", "2048")
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # the client gave up: expected
                for _ in range(2048):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
        else:
            self.reply(200, {"Content-Type": "image/png", "Content-Length": "2048"},
                       b"\x89PNG" + b"\0" * 2044)

    def _redirect(self, location: str) -> None:
        self.reply(302, {"Location": location, "Content-Length": "0"})


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hosts.clear()
    with serving(_Handler) as port:
        yield f"127.0.0.1:{port}"


async def test_fetching_goes_to_the_vetted_address_with_the_host_name_kept(server: str) -> None:
    port = server.split(":")[1]
    fetched = await guarded_request("GET", f"http://localhost:{port}/img",
                                    AllowList.parse("localhost"), max_bytes=4096)
    assert (fetched.status, fetched.headers["content-type"]) == (200, "image/png")
    assert fetched.body.startswith(b"\x89PNG") and len(fetched.body) == 2048
    assert _Handler.hosts == [f"localhost:{port}"]


async def test_every_redirect_hop_is_vetted_and_counted(server: str) -> None:
    allow = AllowList.parse("127.0.0.1")
    fetched = await guarded_request("GET", f"http://{server}/hop/{MAX_REDIRECTS}", allow,
                                    max_bytes=4096)
    assert (fetched.status, fetched.url) == (200, f"http://{server}/img")
    with pytest.raises(UrlRefused, match="redirects more than"):
        await guarded_request("GET", f"http://{server}/hop/{MAX_REDIRECTS + 1}", allow,
                              max_bytes=4096)
    _Handler.hosts.clear()
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.2 is not a public address"):
        await guarded_request("GET", f"http://{server}/away", allow, max_bytes=4096)
    assert len(_Handler.hosts) == 1  # the redirect target was never contacted


async def test_a_body_over_the_cap_is_refused_and_a_closed_port_is_a_refusal(
        server: str) -> None:
    allow = AllowList.parse("127.0.0.1")
    with pytest.raises(UrlRefused, match="larger than 1000 bytes"):
        await guarded_request("GET", f"http://{server}/img", allow, max_bytes=1000)
    with pytest.raises(UrlRefused, match="could not be fetched"):
        await guarded_request("GET", "http://127.0.0.1:9/img", allow, max_bytes=1000)


async def test_a_server_dripping_its_answer_is_cut_off_at_the_deadline(server: str) -> None:
    with pytest.raises(UrlRefused, match=r"did not answer within 0\.5 s"):
        await guarded_request("GET", f"http://{server}/drip", AllowList.parse("127.0.0.1"),
                              max_bytes=4096, timeout=1.0, deadline=0.5)
