"""The README and docs/ code blocks run here, so they cannot drift from the code.

Blocks fenced as ```python run in order, one namespace per file, against a private Redis
(REDIS_URL points at it); blocks fenced as ```python skip are shown, not run (they need a
server of the reader's own).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_docs_have_code():
    assert any(BLOCK.search(path.read_text()) for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(path, redis_server, r, monkeypatch):
    blocks = BLOCK.findall(path.read_text())
    if not blocks:
        pytest.skip(f"{path.name} has no runnable code")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    namespace: dict[str, object] = {"__name__": f"docs.{path.stem}"}
    for number, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{path.name} block {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{path.name}, code block {number} failed: {exc!r}\n{code}")
