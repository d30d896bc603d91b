"""TLS on the planner's RPC port and HTTP API, bind addresses, and the warning without TLS.

Real `granny planner`/`granny worker` processes on 127.0.0.1 with a certificate made in the test.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

import granny
from granny.errors import AuthError, ConnectionLostError

from .netprocs import ENV_TLS_CA, PlannerProc, WorkerProc, make_ca, make_server_cert

WARNING = "without TLS"


def array_sum(a: np.ndarray) -> float:  # type: ignore[type-arg]
    return float(a.sum())


def peer_ports(pid: int, port: int) -> list[psutil._common.pconn]:
    return [c for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == port]


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    ca = make_ca(tmp_path, "granny-test-ca")
    cert, key = make_server_cert(tmp_path, ca)
    other, _ = make_ca(tmp_path, "another-ca")
    return {"ca": ca[0], "cert": cert, "key": key, "other_ca": other}


@pytest.fixture
def tls_planner(tmp_path: Path, certs: dict[str, Path]) -> Iterator[PlannerProc]:
    # A data directory whose socket path is too long for a Unix socket: the planner then listens on
    # TCP only, so every process here (granules included) really talks to it over TLS.
    data = tmp_path / ("d" * 100)
    p = PlannerProc(data, "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
                    "--handshake-timeout", "2", http=True)
    try:
        yield p
    finally:
        p.stop()


def test_a_call_end_to_end_over_tls(tls_planner: PlannerProc, certs: dict[str, Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert not (tls_planner.data_dir / "planner.sock").exists()
    worker = WorkerProc(tls_planner, "--tls-ca", str(certs["ca"]))
    monkeypatch.setenv(ENV_TLS_CA, str(certs["ca"]))
    client = granny.connect(tls_planner.address, tls_planner.token)
    try:
        assert client.submit(pow, 2, 10).result(timeout=60) == 1024
        # 24 MiB each way through TLS: the planner's large-body path and the TLS send path.
        big = np.arange(3 << 20, dtype=np.float64)
        assert client.submit(array_sum, big).result(timeout=120) == float(big.sum())
        assert client.submit(np.negative, big).result(timeout=120)[-1] == -big[-1]
        port = tls_planner.addr[1]
        assert peer_ports(worker.proc.pid, port), "the worker is not connected over TCP"
        granules = [c for c in psutil.Process(worker.proc.pid).children(recursive=True) if peer_ports(c.pid, port)]
        assert granules, "no granule is connected to the planner over TCP"
    finally:
        client.close()
        worker.stop()
    assert WARNING not in tls_planner.log()


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_planner: PlannerProc, certs: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TLS_CA, str(certs["other_ca"]))
    with pytest.raises(AuthError, match="certificate"):
        granny.connect(tls_planner.address, tls_planner.token)


def test_a_plaintext_client_gets_a_clear_error(tls_planner: PlannerProc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TLS_CA, raising=False)
    with pytest.raises(ConnectionLostError, match=ENV_TLS_CA):  # after the client's 10 s of retries
        granny.connect(tls_planner.address, tls_planner.token)


def test_the_http_api_over_https(tls_planner: PlannerProc, certs: dict[str, Path]) -> None:
    headers = {"Authorization": f"Bearer {tls_planner.token}"}
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    with httpx.Client(base_url=f"https://{tls_planner.http}", headers=headers, verify=ctx, timeout=30) as http:
        assert http.get("/v1/hosts").status_code == 200
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
        httpx.get(f"http://{tls_planner.http}/v1/hosts", headers=headers, timeout=30)
    untrusted = ssl.create_default_context(cafile=str(certs["other_ca"]))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{tls_planner.http}/v1/hosts", headers=headers, verify=untrusted, timeout=30)


def test_unreadable_tls_files_are_a_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    for argv in (["planner", "--port", "0", "--no-http", "--data-dir", str(tmp_path / "d"), "--tls-cert", missing,
                  "--tls-key", missing],
                 ["worker", "--planner", "127.0.0.1:1", "--secret-file", missing, "--tls-ca", missing]):
        done = subprocess.run([sys.executable, "-m", "granny", *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "is not a readable file" in " ".join(done.stderr.split()), done.stderr


def _listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_the_planner_binds_loopback_by_default(tmp_path: Path) -> None:
    planner = PlannerProc(tmp_path / "data", http=True)
    try:
        assert planner.address.startswith("127.0.0.1:")
        assert _listening(planner.pid) == {"127.0.0.1"}  # RPC and HTTP
        assert WARNING not in planner.log()
    finally:
        planner.stop()


def test_binding_beyond_loopback_without_tls_warns(tmp_path: Path, certs: dict[str, Path]) -> None:
    planner = PlannerProc(tmp_path / "plain", "--bind", "0.0.0.0")
    try:
        assert _listening(planner.pid) == {"0.0.0.0"}
        assert WARNING in planner.log()
    finally:
        planner.stop()
    secured = PlannerProc(tmp_path / "tls", "--bind", "0.0.0.0", "--tls-cert", str(certs["cert"]), "--tls-key",
                          str(certs["key"]))
    try:
        assert WARNING not in secured.log()
    finally:
        secured.stop()
