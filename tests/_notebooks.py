"""Run a notebook as CI does, with parameters, and read back what it computed.

Parameters go into a cell of their own right after the tagged `parameters` cell, as
papermill injects them, so the notebook runs its own defaults first and the test's values
win. Values a test wants back are printed by one appended cell as a JSON line and parsed,
so assertions compare the notebook's answers, not merely its lack of errors.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

_RESULT_MARK = "notebook-results: "
# Values from pandas and numpy are given back as plain JSON: scalars by `.item()`.
_RESULT_CELL = """\
import json as _json

def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)

print({mark!r} + _json.dumps({{{items}}}, default=_plain))"""


@dataclass
class Run:
    """An executed notebook: its cells with their outputs, the error that stopped it, and
    the values asked for (empty when it stopped before the end)."""

    notebook: nbformat.NotebookNode
    error: CellExecutionError | None
    results: dict[str, Any]

    def output(self) -> str:
        """Everything the cells printed, and the errors they raised, as one text."""
        parts = []
        for cell in self.notebook.cells:
            for out in cell.get("outputs", []):
                if out["output_type"] == "stream":
                    parts.append(out["text"])
                elif out["output_type"] == "error":
                    parts.append(f"{out['ename']}: {out['evalue']}\n")
        return "".join(parts)

    def failed_cell(self) -> tuple[int, nbformat.NotebookNode] | None:
        """The index and cell of the first cell that raised, or None."""
        for index, cell in enumerate(self.notebook.cells):
            if any(o["output_type"] == "error" for o in cell.get("outputs", [])):
                return index, cell
        return None


def parameters_cell(notebook: nbformat.NotebookNode) -> int:
    """The index of the cell tagged `parameters`."""
    return next(
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])
    )


def declared_parameters(path: Path) -> list[str]:
    """The names the tagged parameters cell assigns, in order."""
    notebook = nbformat.read(path, as_version=4)
    tree = ast.parse(notebook.cells[parameters_cell(notebook)].source)
    return [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]


def run_notebook(
    path: Path,
    parameters: dict[str, Any],
    *,
    results: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: int = 120,
) -> Run:
    """Execute the notebook with `parameters` (values written with repr).

    Args:
        results: name -> a Python expression evaluated after the last cell; their values
            come back in `Run.results`.
        cwd: the kernel's working folder (default: the notebook's own, as nbmake runs it).
    """
    notebook = nbformat.read(path, as_version=4)
    index = parameters_cell(notebook)
    unknown = sorted(set(parameters) - set(declared_parameters(path)))
    if unknown:
        raise ValueError(f"{path.name} has no parameter {unknown}")
    injected = nbformat.v4.new_code_cell(
        "# Injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    )
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    if results:
        items = ", ".join(f"{name!r}: {expression}" for name, expression in results.items())
        notebook.cells.append(
            nbformat.v4.new_code_cell(_RESULT_CELL.format(mark=_RESULT_MARK, items=items))
        )
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = exc
    values: dict[str, Any] = {}
    if results and error is None:
        for out in notebook.cells[-1].outputs:
            for line in out.get("text", "").splitlines():
                if line.startswith(_RESULT_MARK):
                    values = json.loads(line.removeprefix(_RESULT_MARK))
    return Run(notebook, error, values)
