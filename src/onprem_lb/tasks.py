"""Waiting on the daemons' tasks, and the stop signal every daemon listens for."""

from __future__ import annotations

import asyncio
import signal
from typing import Any


async def first(main: asyncio.Future[Any], *background: asyncio.Future[Any], stop: asyncio.Event | None = None) -> bool:
    """Wait for ``main`` (its exception is raised) or ``stop``; True when ``main`` finished.

    A background task that ends first is an error worth raising: its exception, or a
    RuntimeError naming it. ``main`` is cancelled when it did not finish.
    """
    waiting: list[asyncio.Future[Any]] = [main, *background]
    stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if stopping is not None:
        waiting.append(stopping)
    try:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopping is not None:
            stopping.cancel()
    if main in done:
        main.result()
        return True
    main.cancel()
    for task in done:
        if task in background:
            task.result()
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            raise RuntimeError(f"background task {name} ended")
    return False


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set: how every daemon learns to stop (handlers on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
