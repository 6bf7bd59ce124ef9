"""Progress bars on long work: widgets in notebooks, text on a terminal, none when piped.

In a Jupyter kernel the bar is `tqdm.auto`'s widget. Without ipywidgets it is a text bar
chosen here: `tqdm.auto` would print an "IProgress not found" warning into every cell.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from tqdm.std import tqdm as text_tqdm

__all__ = ["in_notebook", "progress_bar", "shows_progress"]


def progress_bar(
    *, total: int | None, desc: str, unit: str = "event", enabled: bool | None = None
) -> Any:
    """A tqdm bar; `enabled=None` shows it in a Jupyter kernel and on a terminal only."""
    show = shows_progress(enabled)
    options: dict[str, Any] = {
        "total": total,
        "desc": desc,
        "unit": unit,
        "unit_scale": True,
        "disable": not show,
        "leave": False,
    }
    if show and in_notebook():
        bar = _notebook_bar()
        if bar is not None:
            return bar(**options)
        # A text bar in a notebook: carriage returns redraw it in the cell's output.
        return text_tqdm(**options, file=sys.stderr, ncols=100)
    return text_tqdm(**options, dynamic_ncols=True, file=sys.stderr)


def shows_progress(enabled: bool | None) -> bool:
    """Whether a bar shows: as told, else in a notebook or when stderr is a terminal."""
    if enabled is not None:
        return enabled
    if in_notebook():
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (not IPython in a terminal)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    # Colab's and other front ends' shells subclass the kernel's; a terminal IPython does not.
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _notebook_bar() -> Any:
    """`tqdm.auto`'s widget bar, or None without ipywidgets."""
    try:
        importlib.import_module("ipywidgets")
        from tqdm.auto import tqdm as auto_tqdm
    except ImportError:
        return None
    return auto_tqdm
