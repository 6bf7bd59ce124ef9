"""run_notebook: parameters injected as papermill does, variables brought back, and a failing
cell named with its source and error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest

import auditkit as ak
from auditkit.testing import NotebookFailed, run_notebook, seed

ROOT = Path(__file__).resolve().parent.parent.parent
FLAT = {"event_type": "kind", "aggregate_id": "job", "payload": None, "decoder": "flat"}


def _notebook(path: Path, *sources: str, tagged: int | None = 0) -> Path:
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    if tagged is not None:
        cells[tagged].metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_parameters_override_the_defaults_after_the_parameters_cell(tmp_path):
    path = _notebook(
        tmp_path / "n.ipynb",
        "X = 1\nNAME = 'default'",
        "Y = X * 2\nprint(NAME, Y)\nframe = __import__('pandas').DataFrame({'y': [Y]})",
    )
    result = run_notebook(path, parameters={"X": 5, "NAME": "given", "OPTS": {"a": [1, None]}})
    assert result["Y"] == 10 and result["OPTS"] == {"a": [1, None]}
    assert result["frame"]["y"].tolist() == [10]
    assert "given 10" in result.text
    tags = [c.metadata.get("tags", []) for c in result.notebook.cells]
    assert tags[:2] == [["parameters"], ["injected-parameters"]]
    assert nbformat.read(path, as_version=4).cells[0].source == "X = 1\nNAME = 'default'"
    with pytest.raises(KeyError, match="no variable `missing`"):
        result["missing"]


def test_without_a_parameters_cell_the_values_go_first(tmp_path):
    path = _notebook(tmp_path / "n.ipynb", "Z = X + 1", tagged=None)
    result = run_notebook(path, parameters={"X": 41})
    assert result["Z"] == 42
    assert result.notebook.cells[0].metadata["tags"] == ["injected-parameters"]


def test_a_failing_cell_is_named_with_its_source_and_error(tmp_path):
    path = _notebook(
        tmp_path / "broken.ipynb",
        "LIMIT = 3",
        "total = 7",
        "if total > LIMIT:\n    raise ValueError(f'total {total} over {LIMIT}')",
        "never = True",
    )
    with pytest.raises(NotebookFailed) as failed:
        run_notebook(path, parameters={"LIMIT": 4})
    error = failed.value
    assert isinstance(error, AssertionError) and isinstance(error, ak.AuditKitError)
    # Cell 2 of the file (the injected cell is not counted).
    assert (error.cell, error.ename, error.evalue) == (2, "ValueError", "total 7 over 4")
    message = str(error)
    assert message.startswith("Notebook `broken.ipynb` failed at cell 2: ValueError: total 7")
    assert "    if total > LIMIT:" in message and "raise ValueError" in message
    assert "\x1b[" not in message


def test_parameters_must_be_simple_values(tmp_path):
    path = _notebook(tmp_path / "n.ipynb", "X = 1")
    with pytest.raises(TypeError, match="parameter `X` is `DataFrame`"):
        run_notebook(path, parameters={"X": pd.DataFrame()})
    with pytest.raises(ValueError, match="not a Python name"):
        run_notebook(path, parameters={"not a name": 1})


def test_a_shipped_notebook_runs_on_a_seeded_stream(auditkit_redis, auditkit_redis_url):
    frame = pd.DataFrame(
        {
            "id": [f"{1_780_000_000_000 + n}-0" for n in range(1, 21)],
            "kind": ["resize"] * 20,
            "job": [f"job-{n % 4}" for n in range(1, 21)],
        }
    )
    seed(auditkit_redis, "jobs", frame)
    auditkit_redis.xgroup_create("jobs", "workers", id="0")
    auditkit_redis.xreadgroup("workers", "w1", {"jobs": ">"}, count=12)
    for _ in range(6):
        auditkit_redis.xclaim("jobs", "workers", "w2", 0, [frame["id"][3]])
    result = run_notebook(
        ROOT / "notebooks" / "05_consumer_groups.ipynb",
        parameters={"REDIS_URL": auditkit_redis_url, "STREAM": "jobs", "ENVELOPE": FLAT},
    )
    expected = ak.check_groups(auditkit_redis, "jobs", envelope=ak.Envelope.of(FLAT))
    assert {"poison-message", "group-lag"} <= set(expected["check"])
    pd.testing.assert_frame_equal(
        result["findings"][["check", "severity", "id"]].reset_index(drop=True),
        expected[["check", "severity", "id"]],
    )
    assert result["groups"]["group"].tolist() == ["workers"]
