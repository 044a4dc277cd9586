"""Git mode over HTTPS: the server's certificate is verified, and a private CA comes from the credentials Secret.

Given the environment repository served over HTTPS with a self-signed
certificate, when the operator reads blue's directories with a credentials
Secret holding only ``username`` and ``password``, then git refuses the server
(a problem naming the repository, nothing fetched); and with the CA in the
Secret's ``ca.crt`` (Flux's key), the same read and the preflight succeed.
git runs without the system's or the user's git config, so nothing there turns
verification off; the CA variables git and OpenSSL read (``GIT_SSL_CAINFO``,
``SSL_CERT_FILE``...) are passed on from the operator's environment and would
add trust for every repository, so the tests clear them.
"""

from __future__ import annotations

import pathlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.gitops import BLUE, GREEN, SECRET, GitOpsFleet, running_gitops
from tests.fixtures.tls import self_signed  # noqa: F401
from tests.fixtures.tls_relay import tls_relay

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[GitOpsFleet]:
    async with running_gitops(tmp_path) as running:
        yield running


@pytest.fixture
async def https_url(fleet: GitOpsFleet, self_signed: ssl.SSLContext) -> AsyncIterator[str]:  # noqa: F811
    """The git server's smart HTTP behind TLS with the self-signed certificate: the repository's https URL."""
    plain = urllib.parse.urlsplit(fleet.server.http_url)
    assert plain.hostname is not None and plain.port is not None
    async with tls_relay(upstream_host=plain.hostname, upstream_port=plain.port, context=self_signed) as port:
        yield f"https://127.0.0.1:{port}{plain.path}"


def certificate(tmp_path: pathlib.Path) -> bytes:
    # Where tests.fixtures.tls.self_signed wrote it (self-signed: it is its own CA).
    return (tmp_path / "cert.pem").read_bytes()


CA_VARIABLES = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE", "SSL_CERT_DIR")


async def test_a_self_signed_server_is_refused_without_the_secret_s_ca(
        fleet: GitOpsFleet, https_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    fleet.put_secret(SECRET, fleet.http_credentials())
    workloads = fleet.workloads(https_url)

    read = await workloads.read_blue(blue_name=BLUE)
    problems = await workloads.preflight(blue_name=BLUE, green_name=GREEN)

    assert read.head is None and read.files == {}
    assert len(read.problems) == 1 and len(problems) == 1
    for problem in (read.problems[0], problems[0]):
        assert "certificate" in problem.lower() and https_url.split("://")[1].split("/")[0] in problem
        assert fleet.server.password not in problem


async def test_the_ca_in_the_credentials_secret_is_trusted_for_that_repository(
        fleet: GitOpsFleet, https_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    fleet.put_secret(SECRET, {**fleet.http_credentials(), "ca.crt": certificate(tmp_path)})
    workloads = fleet.workloads(https_url)

    read = await workloads.read_blue(blue_name=BLUE)

    assert read.problems == ()
    assert read.head == fleet.server.head()
    assert any(name.startswith(f"clusters/{BLUE}/apps/") for name in read.files)
    assert await workloads.preflight(blue_name=BLUE, green_name=GREEN) == []
