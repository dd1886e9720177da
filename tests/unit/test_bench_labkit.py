"""The arithmetic the lab benchmarks record their results with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from labkit import longest_failure, percentile


def requests(pattern: str, start: float = 100.0, step: float = 0.01) -> list[tuple[float, bool]]:
    """'.' a success, 'x' a failure, one request every `step` seconds."""
    return [(start + i * step, c == ".") for i, c in enumerate(pattern)]


@pytest.mark.parametrize(
    ("pattern", "count", "span"),
    [
        ("..........", 0, 0.0),
        ("...xxx....", 3, 0.03),  # first failed sent at 3, next success sent at 6
        ("..x..xxxx.", 4, 0.04),
        ("xx.xxx.", 3, 0.03),
        ("...xxxx", 4, 0.03),  # never recovered: up to the last request sent
    ],
)
def test_longest_failure(pattern: str, count: int, span: float) -> None:
    got = longest_failure(requests(pattern), after=0.0)
    assert got[0] == count
    assert got[1] == pytest.approx(span)


def test_longest_failure_ignores_requests_before_the_fault() -> None:
    assert longest_failure(requests("xxxxx.....x."), after=100.05)[0] == 1


@pytest.mark.parametrize(("q", "expected"), [(50, 10), (95, 19), (99, 20), (100, 20), (1, 1)])
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(20, 0, -1)], q) == expected
