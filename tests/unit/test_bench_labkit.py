"""The arithmetic the lab benchmarks record their results with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from labkit import Request, failure_runs, longest_failure, longest_silence, percentile


def requests(pattern: str, start: float = 100.0, step: float = 0.01) -> list[Request]:
    """'.' a success (answered in 1 ms), 'x' a failure (a 1 s timeout), one every `step` seconds."""
    return [
        Request(
            start + i * step,
            c == ".",
            "" if c == "." else "TimeoutError",
            start + i * step + (0.001 if c == "." else 1),
        )
        for i, c in enumerate(pattern)
    ]


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


def test_failure_runs_say_when_how_many_and_why() -> None:
    runs = failure_runs(requests("..xx...x."), since=100.0)
    assert runs == [
        {"at_s": 0.02, "failed": 2, "errors": {"TimeoutError": 2}},
        {"at_s": 0.07, "failed": 1, "errors": {"TimeoutError": 1}},
    ]


def test_longest_silence_counts_late_answers_as_silence() -> None:
    reqs = requests("..xxxx....", step=0.1)  # answers at 100.101, 100.201 ... then from 100.601
    assert longest_silence(reqs, since=100.15) == pytest.approx(0.451)
    # a request sent during the outage that succeeds only late: the silence before it counts
    late = [*reqs[:3], Request(100.3, True, "", 100.55), *reqs[4:]]
    assert longest_silence(late, since=100.15) == pytest.approx(0.4)


def test_longest_silence_runs_to_the_end_when_no_answer_comes_back() -> None:
    reqs = requests("..xxxx", step=0.1)  # the last request is sent at 100.5
    assert longest_silence(reqs, since=100.15) == pytest.approx(0.35)
