"""tasks.py: the daemons' one wait (tasks.first)."""

from __future__ import annotations

import asyncio

import pytest

from onprem_lb.tasks import first


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
