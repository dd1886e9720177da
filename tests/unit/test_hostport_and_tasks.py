"""hostport (HOST:PORT read and written one way) and tasks.first (the daemons' one wait)."""

from __future__ import annotations

import asyncio

import pytest

from onprem_lb import hostport
from onprem_lb.tasks import first


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("192.0.2.1:7946", ("192.0.2.1", 7946)), ("[2001:db8::1]:80", ("2001:db8::1", 80)), ("node-1:1", ("node-1", 1))],
)
def test_parse_and_join_round_trip(text: str, parsed: tuple[str, int]) -> None:
    assert hostport.parse(text) == parsed
    assert hostport.join(*parsed) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("192.0.2.1", "is not HOST:PORT"),
        (":80", "is not HOST:PORT"),
        ("192.0.2.1:0", "the port must be a number from 1 to 65535"),
        ("192.0.2.1:x", "the port must be"),
        ("2001:db8::1:80", "write an IPv6 address in brackets, [2001:db8::1]:80"),
        ("[node]:80", "is not an IP address or host name"),
        ("bad_host:80", "is not an IP address or host name"),
    ],
)
def test_parse_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        hostport.parse(text)
    assert says in str(caught.value)


def test_first_returns_when_main_ends_and_raises_its_error() -> None:
    async def scenario() -> None:
        background = asyncio.ensure_future(asyncio.sleep(10))
        assert await first(asyncio.ensure_future(asyncio.sleep(0)), background) is True

        async def boom() -> None:
            raise KeyError("main failed")

        with pytest.raises(KeyError):
            await first(asyncio.ensure_future(boom()), background)
        background.cancel()

    asyncio.run(scenario())


def test_first_stops_on_stop_and_names_a_background_task_that_ended() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        stop.set()
        main = asyncio.ensure_future(asyncio.sleep(10))
        assert await first(main, stop=stop) is False
        await asyncio.sleep(0)
        assert main.cancelled()
        ended = asyncio.create_task(asyncio.sleep(0), name="status-writer")
        with pytest.raises(RuntimeError, match="background task status-writer ended"):
            await first(asyncio.ensure_future(asyncio.sleep(10)), ended)

    asyncio.run(scenario())
