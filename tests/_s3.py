"""A local S3-compatible server for the object storage tests: moto's standalone server.

It runs as its own process and speaks the S3 REST protocol over HTTP on a loopback port;
pyarrow's S3 client talks to it exactly as to AWS (signing, multipart uploads, listing).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import pyarrow.fs as pafs

ACCESS_KEY = "auditkit-test-key"
SECRET_KEY = "auditkit-test-secret-do-not-log"


class S3Server:
    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        # The server logs every request: to a file, since a pipe nobody reads fills up
        # and then blocks the server mid-request.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"moto server exited: {self._log.read()[-2000:]!r}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not answer within 30 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._log.close()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.endpoint}"

    def filesystem(self, **options: Any) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.endpoint,
            scheme="http",
            region="us-east-1",
            **options,
        )

    def client(self) -> Any:
        """A boto3 client of the server: another S3 implementation than pyarrow's, to see
        the bucket as other tools do (boto3 comes with moto)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def url(self, bucket: str, prefix: str) -> str:
        """An `s3://` URL that carries the endpoint and credentials (for subprocesses)."""
        return (
            f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/{prefix}?endpoint_override="
            f"{self.endpoint}&scheme=http&region=us-east-1"
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem(allow_bucket_creation=True).create_dir(name)
