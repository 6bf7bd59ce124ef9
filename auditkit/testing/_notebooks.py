"""`run_notebook`: execute a notebook with parameters injected, as papermill does, in a test."""

from __future__ import annotations

import base64
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import auditkit as ak

__all__ = ["NotebookFailed", "NotebookResult", "run_notebook"]

_MIME = "application/x-auditkit-namespace"
"""The output type the probe below displays the notebook's variables as."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SIMPLE = (str, int, float, bool, type(None))
# Run in the kernel after the notebook: its variables, each pickled on its own so one that
# cannot be (a client, a connection) is left out rather than losing the rest.
_PROBE = """
def _auditkit_namespace():
    import base64, pickle, types
    from IPython.display import display
    skip = {"In", "Out", "exit", "quit", "get_ipython", "open"}
    found = {}
    for name, value in list(globals().items()):
        if name.startswith("_") or name in skip:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        try:
            found[name] = pickle.dumps(value)
        except Exception:
            continue
    packed = base64.b64encode(pickle.dumps(found)).decode()
    display({"application/x-auditkit-namespace": packed}, raw=True)
_auditkit_namespace()
del _auditkit_namespace
"""


class NotebookFailed(ak.AuditKitError, AssertionError):
    """A cell of a notebook run by `run_notebook` raised; names the cell, its source and error.

    Attributes: `path`, `cell` (its index in the notebook file), `source`, `ename`,
    `evalue`, `traceback` (the kernel's, without colours).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        cell: int,
        source: str,
        ename: str,
        evalue: str,
        traceback: str,
    ) -> None:
        self.path = path
        self.cell = cell
        self.source = source
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        super().__init__(message)


@dataclass
class NotebookResult:
    """What a notebook run left: its variables, and the executed notebook with outputs.

    `result["findings"]` is `result.namespace["findings"]`. Only variables that can be
    pickled come back (DataFrames, tables, numbers, text: not clients or connections).
    """

    path: Path
    notebook: Any
    namespace: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.namespace[name]
        except KeyError:
            raise KeyError(
                f"The notebook `{self.path.name}` left no variable `{name}` that could be "
                f"brought back; it has {sorted(self.namespace)}."
            ) from None

    @property
    def outputs(self) -> list[list[dict[str, Any]]]:
        """Each code cell's outputs (nbformat dicts), in cell order."""
        return [list(c.get("outputs", [])) for c in self.notebook.cells if c.cell_type == "code"]

    @property
    def text(self) -> str:
        """Everything the cells printed (streams and plain-text results), joined."""
        parts = []
        for outputs in self.outputs:
            for output in outputs:
                if output.get("output_type") == "stream":
                    parts.append(output.get("text", ""))
                elif "data" in output and "text/plain" in output["data"]:
                    parts.append(output["data"]["text/plain"] + "\n")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"<NotebookResult {self.path.name}: {len(self.namespace)} variable(s)>"


def run_notebook(
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    timeout: int = 600,
    kernel_name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> NotebookResult:
    """Execute a notebook with parameters injected after its `parameters` cell.

    As papermill does: a cell tagged `injected-parameters` assigning each value (as its
    `repr`) goes after the cell tagged `parameters` (first, when none is tagged), so the
    notebook's defaults are overridden. The file itself is not changed.

    Args:
        path: the `.ipynb` file.
        parameters: names and simple values (text, numbers, booleans, None, and lists,
            tuples and dicts of them).
        timeout: seconds a cell may run.
        kernel_name: the Jupyter kernel (default: the notebook's, else `python3`).
        cwd: the folder the kernel runs in (default: the notebook's own).

    Returns:
        A NotebookResult: `.namespace` (the variables left, those that pickle),
        `.notebook` (executed, with outputs), `.outputs`, `.text`.

    Raises:
        NotebookFailed: a cell raised; the message names the cell's index in the file,
            its source and the error.
    """
    __tracebackhide__ = True  # pytest shows the message, not this function's insides
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:
        raise ImportError(
            f"run_notebook needs nbclient and nbformat ({exc}): pip install 'auditkit[testing]'"
        ) from None
    source = Path(path)
    notebook = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    given = dict(parameters or {})
    for name, value in given.items():
        if not name.isidentifier():
            raise ValueError(f"parameter `{name}` is not a Python name.")
        if not _simple(value):
            raise TypeError(
                f"parameter `{name}` is `{type(value).__name__}`; pass text, numbers, "
                "booleans, None, or lists and dicts of them (the notebook builds the rest)."
            )
    # Cell indexes in messages are the file's: the injected cell is not counted.
    positions = list(range(len(notebook.cells)))
    if given:
        tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in _tags(c)]
        at = tagged[0] + 1 if tagged else 0
        injected = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            "# Parameters\n" + "".join(f"{n} = {v!r}\n" for n, v in given.items()),
            metadata={"tags": ["injected-parameters"]},
        )
        notebook.cells.insert(at, injected)
        positions.insert(at, -1)
    folder = Path(cwd) if cwd is not None else source.resolve().parent
    kernel = kernel_name or notebook.metadata.get("kernelspec", {}).get("name") or "python3"
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(folder)}},
    )
    namespace: dict[str, Any] = {}
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                raise _failure(source, positions[index], cell, exc) from None
        probe = nbformat.v4.new_code_cell(_PROBE)  # type: ignore[no-untyped-call]
        # nbclient writes each executed cell back into the notebook: the probe goes at the
        # end for its run, and out again.
        notebook.cells.append(probe)
        try:
            client.execute_cell(probe, len(notebook.cells) - 1)
        finally:
            notebook.cells.pop()
        for output in probe.get("outputs", []):
            if _MIME in output.get("data", {}):
                packed = pickle.loads(base64.b64decode(output["data"][_MIME]))
                for name, data in packed.items():
                    try:
                        namespace[name] = pickle.loads(data)
                    except Exception:  # a class only the notebook defined, say
                        continue
    return NotebookResult(source, notebook, namespace)


def _failure(source: Path, position: int, cell: Any, exc: Any) -> NotebookFailed:
    where = "the injected parameters cell" if position < 0 else f"cell {position}"
    ename = str(getattr(exc, "ename", type(exc).__name__))
    evalue = _ANSI.sub("", str(getattr(exc, "evalue", exc)))
    traceback = _ANSI.sub("", str(getattr(exc, "traceback", "")))
    lines = "\n".join(f"    {line}" for line in cell.source.splitlines())
    tail = "\n".join(f"    {line}" for line in traceback.strip().splitlines()[-6:])
    message = (
        f"Notebook `{source.name}` failed at {where}: {ename}: {evalue}\n"
        f"  {where} source:\n{lines}\n  error:\n{tail}"
    )
    return NotebookFailed(
        message,
        path=str(source),
        cell=position,
        source=cell.source,
        ename=ename,
        evalue=evalue,
        traceback=traceback,
    )


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (list, tuple)):
        return all(_simple(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, _SIMPLE) and _simple(v) for k, v in value.items())
    return False
