"""Run a callback as soon as the hub process is told to exit (SIGINT, SIGTERM).

uvicorn waits for running responses before it shuts the app down (up to its graceful timeout,
then cancels them with a traceback), and a live-update stream or a long poll does not end by
itself. So features that hold responses open chain onto the exit signals' handlers (uvicorn's)
and end them first.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` on the running loop when SIGINT or SIGTERM arrives; returns `restore`.

    A no-op off the main thread: signals only reach the main thread, and an embedded hub is
    stopped otherwise.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}

    def make(prev: Any) -> Callable[[int, Any], None]:
        def handler(sig: int, frame: Any) -> None:
            loop.call_soon_threadsafe(callback)
            if callable(prev):
                prev(sig, frame)
            elif prev == signal.SIG_DFL:
                signal.default_int_handler(sig, frame) if sig == signal.SIGINT else signal.raise_signal(sig)
        return handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        prev = signal.getsignal(sig)
        h = make(prev)
        signal.signal(sig, h)
        installed[sig] = (prev, h)

    def restore() -> None:
        for sig, (prev, h) in installed.items():
            if signal.getsignal(sig) is h:  # unless someone else has replaced it since
                signal.signal(sig, prev)
    return restore
