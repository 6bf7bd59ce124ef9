"""The auditor ACL of docs/operations.md, applied as written: every read-only job works."""

import re
from pathlib import Path

import pytest

import auditkit as ak

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _documented_acl() -> list[str]:
    lines = DOC.read_text().splitlines()
    line = next(text for text in lines if text.startswith("ACL SETUSER auditor"))
    return line.split()[2:]  # after "ACL SETUSER"


@pytest.mark.parametrize("which", ["7", "6.2"])
def test_the_documented_auditor_can_do_every_read_only_job(
    which, redis_server, redis62_server, tmp_path
):
    server = redis_server if which == "7" else redis62_server
    admin = server.client()
    admin.flushall()
    ak.seed_demo(admin)
    rules = _documented_acl()
    rules = [rule.replace(">CHANGE-ME", ">s3cret-pass") for rule in rules]
    admin.execute_command("ACL", "SETUSER", *rules)
    try:
        auditor = ak.connect(f"redis://auditor:s3cret-pass@127.0.0.1:{server.port}/0")
        assert ak.read_arrow(auditor, "demo:*").num_rows > 16_000
        assert not ak.streams(auditor, "demo:*").empty
        findings = ak.audit(auditor, "demo:accounts")
        assert "poison-message" in set(findings["check"])
        assert "durability-unknown" in set(findings["check"])  # no CONFIG GET, said so
        assert len(ak.schema_drift((auditor, "demo:accounts")).timeline)
        arc = ak.Archive(tmp_path)
        arc.export(auditor, "demo:accounts")
        assert arc.verify(auditor, "demo:accounts").ok
        with pytest.raises(ak.PermissionDenied, match="XTRIM"):
            arc.trim(auditor, "demo:accounts", allow_pending=True)
        assert re.search(r"s3cret-pass", repr(auditor)) is None
    finally:
        admin.acl_deluser("auditor")
        admin.flushall()
