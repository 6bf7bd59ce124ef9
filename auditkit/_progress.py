"""Progress bars on long work: on a terminal by default, never in logs or CI output."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(
    *, total: int | None, desc: str, unit: str = "event", enabled: bool | None = None
) -> tqdm[Any]:
    """A tqdm bar; `enabled=None` shows it only when stderr is a terminal."""
    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not show,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
    )
