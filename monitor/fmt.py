"""Number formatting shared by the dashboard and ``--once``: short, fixed rules, no Textual."""

from __future__ import annotations

import math


def count(n: float) -> str:
    """An integer count with thousands separators: ``1,234,567``; ``-`` for NaN or infinity."""
    if isinstance(n, float) and not math.isfinite(n):
        return "-"
    return f"{int(n):,}"


def short(n: float) -> str:
    """A compact number: ``950``, ``12.3k``, ``4.56M``."""
    if n != n:
        return "-"
    a = abs(n)
    if a < 1000:
        return f"{n:.0f}" if float(n).is_integer() or a >= 100 else f"{n:.1f}"
    for unit, div in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        v = n / div
        text = f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        if abs(float(text)) < 1000:  # (999,999 is 1.00M, not 1000.0k)
            return text + unit
    return f"{n / 1e12:.1f}T"


def size(n: float) -> str:
    """Bytes, compact, binary units: ``512B``, ``3.5K``, ``64M``, ``1.0T`` (K = 1,024 bytes);
    ``-`` for NaN or infinity."""
    if not math.isfinite(n):
        return "-"
    if abs(n) < 1024:
        return f"{n:.0f}B"
    for unit in ("K", "M", "G"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.0f}{unit}" if float(n).is_integer() or abs(n) >= 100 else f"{n:.1f}{unit}"
    return f"{n / 1024:.1f}T"


def seconds(x: float) -> str:
    """A short duration: ``45s``, ``2.5s`` under 100 s, else as :func:`duration`."""
    if math.isfinite(x) and 0 <= x < 100:
        return f"{x:.0f}s" if float(x).is_integer() else f"{x:.1f}s"
    return duration(x)


def rate(r: float | None) -> str:
    """A per-second rate: ``812.4``, ``12.3k``; ``-`` when unknown."""
    if r is None or r != r:
        return "-"
    return f"{r:.1f}" if abs(r) < 1000 else short(r)


def ms(v: float) -> str:
    """A duration in ms with about three significant digits: ``0.42``, ``12.3``, ``1,234``."""
    if v != v or math.isinf(v):
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def pct(x: float) -> str:
    """A fraction as a percentage: ``42.1%``."""
    return f"{100.0 * x:.1f}%"


def usd(x: float) -> str:
    """Dollars: ``$12.34``, ``$1,234``, ``$0.0012``."""
    if x == 0:
        return "$0.00"
    if abs(x) < 0.01:
        return f"${x:.4f}"
    if abs(x) < 1000:
        return f"${x:,.2f}"
    return f"${x:,.0f}"


def duration(seconds: float) -> str:
    """An uptime: ``42s``, ``12m05s``, ``3h02m``, ``2d04h``; ``-`` for NaN or infinity."""
    if not math.isfinite(seconds):
        return "-"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
