"""TLS against a real TLS-only redis-server, with certificates made here by openssl."""

import shutil
import subprocess

import pytest

import auditkit as ak

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder, name):
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        cwd=folder,
    )
    return folder / f"{name}.pem"


def _server_cert(folder, ca, name, san):
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        cwd=folder,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=folder,
    )
    return str(folder / f"{name}.pem"), str(folder / f"{name}.key")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca = _ca(folder, "test-ca")
    other_ca = _ca(folder, "other-ca")
    good = _server_cert(folder, "test-ca", "redis-local", "IP:127.0.0.1,DNS:localhost")
    wrong_name = _server_cert(folder, "test-ca", "redis-elsewhere", "DNS:elsewhere.example")
    return {"ca": str(ca), "other_ca": str(other_ca), "good": good, "wrong_name": wrong_name}


@pytest.fixture
def tls_server(certificates):
    cert, key = certificates["good"]
    server = ak.EmbeddedRedis(tls=(cert, key, certificates["ca"]))
    yield server.start()
    server.stop()


def test_rediss_with_the_right_ca(tls_server, certificates):
    assert tls_server.url.startswith("rediss://127.0.0.1:")
    client = ak.connect(tls_server.url, ssl_ca_certs=certificates["ca"])
    for i in range(12_000):  # enough for several pages on the TLS page connection
        client.xadd("s", {"type": "T", "n": str(i)}, id=f"{1772323200000 + i}-0")
    assert ak.read_arrow(client, "s", envelope="flat").num_rows == 12_000
    assert ak.streams(client)["key"].tolist() == ["s"]


def test_a_wrong_ca_fails_clearly(tls_server, certificates):
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect(tls_server.url, ssl_ca_certs=certificates["other_ca"])
    text = str(info.value)
    assert "\n" not in text and text.startswith("TLS with Redis at rediss://127.0.0.1:")
    assert "certificate" in text.lower() and "ssl_ca_certs" in text


def test_a_hostname_mismatch_fails_clearly(certificates):
    cert, key = certificates["wrong_name"]
    with ak.EmbeddedRedis(tls=(cert, key, certificates["ca"])) as server:
        with pytest.raises(ak.ConnectionFailed) as info:
            ak.connect(server.url, ssl_ca_certs=certificates["ca"])
        text = str(info.value)
        assert "TLS" in text and (
            "hostname" in text.lower() or "ip address mismatch" in text.lower()
        )
        assert "the URL's host" in text


def test_plain_redis_to_a_tls_port_is_not_a_silent_hang(tls_server):
    with pytest.raises(ak.ConnectionFailed):
        ak.connect(
            tls_server.url.replace("rediss://", "redis://"),
            socket_timeout=2,
            socket_connect_timeout=2,
        )
