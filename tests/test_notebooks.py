"""Pointed at a Redis without the expected stream, every notebook stops with one clear line."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_every_notebook_starts_with_tagged_parameters():
    assert len(NOTEBOOKS) >= 6
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        first_code = next(c for c in notebook.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), path.name
        assert "REDIS_URL = None" in first_code.source, path.name
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_server_without_the_stream_gets_a_clear_message(path, redis_server, r):
    r.xadd("something:else", {"a": "1"})
    notebook = nbformat.read(path, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    first_code.source = first_code.source.replace(
        "REDIS_URL = None", f"REDIS_URL = {redis_server.url!r}"
    )
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert "does not exist on this server: set STREAM to one of ['something:else']" in str(
        info.value
    )
