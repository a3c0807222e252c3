"""Progress bars on stderr: one place decides how they show.

A bar is shown unless the caller turned progress off or ``TQDM_DISABLE`` is set (tqdm's own switch, which
explicit arguments would otherwise override). On a terminal it redraws as tqdm does; into a log file (a
cluster job) it writes one line every 30 seconds instead of hundreds of carriage returns.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


def disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", *, enabled: bool = True,
                 iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled or disabled_by_env(),
                leave=kwargs.pop("leave", False), dynamic_ncols=interactive,
                mininterval=kwargs.pop("mininterval", 0.1 if interactive else 30.0), **kwargs)
