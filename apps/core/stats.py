"""Small statistics shared by the benchmarks and the dashboard."""
from __future__ import annotations

import math
import statistics


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def latency_summary(values: list[float], *, digits: int = 2, suffix: str = "_ms") -> dict:
    """{"p50_ms", "p95_ms", "max_ms", "mean_ms"} (None each for no values), as the benchmarks print them."""
    if not values:
        return {f"{key}{suffix}": None for key in ("p50", "p95", "max", "mean")}
    return {
        f"p50{suffix}": round(statistics.median(values), digits),
        f"p95{suffix}": round(percentile(values, 0.95), digits),
        f"max{suffix}": round(max(values), digits),
        f"mean{suffix}": round(statistics.fmean(values), digits),
    }
