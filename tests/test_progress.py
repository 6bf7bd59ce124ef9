"""Progress bars: every long job reports to a bar that reaches its total; none when piped.

Each bar's last count is recorded as it closes (tqdm draws at most every 0.1 s, so the
captured text need not hold the last count); the captured stderr shows it was drawn.
"""

import pytest
from tqdm.std import tqdm

import auditkit as ak
from auditkit import _progress
from auditkit._progress import in_notebook, progress_bar, shows_progress

N = 2_500
FLAT = ak.Envelope(event_type="kind", aggregate_id="host", payload=None, decoder="flat")


@pytest.fixture
def bars(monkeypatch):
    """{description: (count, total)} of every bar closed, as the text bars are made."""
    closed = {}

    class Recorded(tqdm):
        def close(self):
            if not self.disable:
                closed[self.desc] = (self.n, self.total)
            super().close()

    monkeypatch.setattr(_progress, "text_tqdm", Recorded)
    return closed


def _flat_stream(r, key="metrics", n=N):
    """An exporter's layout: flat fields, no payload, no type field."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(key, {"kind": "sample", "host": f"web-{i % 7}", "cpu": str(i % 100)})
    pipe.execute()


def test_verify_shows_files_and_live_entries_reaching_their_totals(r, tmp_path, capsys, bars):
    _flat_stream(r)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=1_000, envelope=FLAT)
    arc.export(r, "metrics", progress=False)
    report = arc.verify(r, "metrics", progress=True)
    assert report.ok
    assert bars == {"verify metrics files": (N, N), "verify metrics live": (N, N)}
    err = capsys.readouterr().err
    assert "verify metrics files:" in err and "verify metrics live:" in err


def test_export_trim_restore_and_read_show_bars(r, tmp_path, capsys, bars):
    _flat_stream(r)
    arc = ak.Archive(tmp_path / "arc", envelope=FLAT)
    arc.export(r, "metrics", progress=True)
    assert ak.read_arrow(r, "metrics", envelope=FLAT, progress=True).num_rows == N
    assert arc.trim(r, "metrics", progress=True) == N
    assert arc.restore(r, "metrics", "metrics:back", progress=True) == N
    assert bars == {
        "export metrics": (N, N),
        "metrics": (N, N),
        "check metrics files": (N, N),
        "trim metrics live": (N, N),
        "restore metrics": (N, N),
    }
    assert "restore metrics:" in capsys.readouterr().err


def test_no_bar_when_stderr_is_piped(r, tmp_path, capsys):
    _flat_stream(r, n=300)
    arc = ak.Archive(tmp_path / "arc", envelope=FLAT)
    arc.export(r, "metrics")
    arc.verify(r, "metrics")
    ak.read_pandas(r, "metrics", envelope=FLAT)
    assert capsys.readouterr().err == ""


def test_a_bar_shows_only_where_someone_watches(capsys, bars):
    assert not in_notebook()  # pytest is no Jupyter kernel
    assert shows_progress(None) is False  # stderr is captured, not a terminal
    assert shows_progress(True) and not shows_progress(False)
    with progress_bar(total=3, desc="steps", enabled=True) as bar:
        bar.update(3)
    with progress_bar(total=3, desc="hidden", enabled=None) as bar:
        bar.update(3)
    assert bars == {"steps": (3, 3)}
    assert "steps:" in capsys.readouterr().err


@pytest.mark.parametrize("widgets", [True, False], ids=["ipywidgets", "without-ipywidgets"])
def test_a_notebook_shows_a_bar_by_default_without_errors(redis_server, r, tmp_path, widgets):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    _flat_stream(r, n=20_000)
    hide = "" if widgets else "import sys\nsys.modules['ipywidgets'] = None\n"
    cells = [
        hide
        + "import auditkit as ak\n"
        + f"r = ak.connect({redis_server.url!r})\n"
        + "flat = ak.Envelope(event_type='kind', aggregate_id='host', payload=None, "
        + "decoder='flat')\n"
        + "arc = ak.Archive('arc', envelope=flat, rows_per_file=5_000)\n"
        + "arc.export(r, 'metrics')\n"
        + "print(arc.verify(r, 'metrics').ok, len(ak.read_arrow(r, 'metrics', envelope=flat)))",
        "ak.audit(r, 'metrics', envelope=flat, select='durability')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    # The findings a cell ends with show as their HTML table, by Jupyter's own display.
    (result,) = notebook.cells[1].outputs
    assert "no-persistence" in result["data"]["text/html"]
    assert "border-left:4px solid" in result["data"]["text/html"]
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if o["output_type"] == "error"]
    printed = "".join(o["text"] for o in outputs if o.get("name") == "stdout")
    assert printed.strip() == "True 20000"
    errors = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    assert "IProgress" not in errors and "Warning" not in errors
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    widget = [o for o in shown if "application/vnd.jupyter.widget-view+json" in o["data"]]
    if widgets:
        assert widget, outputs  # one widget per bar: export, verify's two, the read
        assert "export metrics:" not in errors
    else:
        assert not widget
        for desc in ("export metrics:", "verify metrics files:", "metrics:"):
            assert desc in errors
