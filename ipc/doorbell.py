"""Eventfd doorbells: wake a process sleeping on a ring, blocking or from asyncio.

A doorbell is one Linux ``eventfd`` (non-blocking, close-on-exec). :meth:`Doorbell.ring`
adds 1 to its counter; a sleeper waits until the counter is non-zero and resets it with one
read, so any number of rings while it was busy cost it one wake-up. The fd is an ordinary
descriptor: it can be inherited (``pass_fds``) or sent over a Unix socket with SCM_RIGHTS
(:func:`socket.send_fds`) and adopted on the other side with :meth:`Doorbell.from_fd`.

A doorbell alone can lose nothing but can wake for nothing; the no-lost-wake-up guarantee
comes from the handshake with the ring's asleep flags (see :mod:`stratabatch.ipc.ring`): the
sleeper sets its flag, fences and re-checks before it calls :meth:`Doorbell.wait`, the
publisher publishes, fences and rings only if the flag was set.

The waits that sleep on a doorbell, :func:`wait_any_readable` (blocking) and
:func:`wait_any_readable_async` (asyncio, uvloop), live in :mod:`stratabatch.ipc.wait` with
the spin that runs before them; they stay importable from here.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import time

from stratabatch.ipc.wait import (  # the waits stay importable from here
    AsyncWaitable,
    wait_any_readable,
    wait_any_readable_async,
)

_EVENTFD_LINK = "anon_inode:[eventfd]"


class Doorbell:
    """One eventfd to wake one sleeper.

    Args:
        fd: An existing eventfd to adopt (see :meth:`from_fd`); None creates a new one.

    The instance owns its fd and closes it in :meth:`close` (also as a context manager).
    """

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            _check_eventfd(fd)
            os.set_blocking(fd, False)
        self._fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @classmethod
    def create(cls) -> Doorbell:
        """Make a new eventfd doorbell (the owner's side; :meth:`attach` is the other)."""
        return cls()

    @classmethod
    def attach(cls, fd: int, *, dup: bool = False) -> Doorbell:
        """Adopt a doorbell received from another process; same as :meth:`from_fd`."""
        return cls.from_fd(fd, dup=dup)

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = False) -> Doorbell:
        """Adopt an eventfd received from another process (SCM_RIGHTS or inheritance).

        Args:
            fd: The descriptor; it is switched to non-blocking mode.
            dup: Duplicate it first and own the copy (the caller keeps ``fd``).

        Raises:
            ValueError: ``fd`` is not an eventfd.
        """
        _check_eventfd(fd)
        if dup:
            fd = os.dup(fd)
        return cls(fd)

    @property
    def fd(self) -> int:
        """The eventfd descriptor (-1 once closed)."""
        return self._fd

    def fileno(self) -> int:
        """The eventfd descriptor, for ``select``/``loop.add_reader``."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._fd < 0

    def ring(self) -> None:
        """Wake the sleeper (or make its next wait return at once)."""
        try:
            os.eventfd_write(self._fd, 1)
        except BlockingIOError:
            pass  # the counter is at its maximum: the sleeper will wake anyway

    def clear(self) -> bool:
        """Consume pending rings without blocking; True if there were any."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the doorbell rings, then consume the rings.

        Args:
            timeout: Seconds to wait at most; None waits forever.

        Returns:
            True if it rang (possibly before the call), False if ``timeout`` passed.
        """
        # No read first: poll() returns at once when rings are pending, so the sleep path
        # costs poll + read, and an already-rung bell the same.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                ms = -1
            else:
                left = deadline - time.monotonic()
                ms = max(0, math.ceil(left * 1000))
            self._poll.poll(ms)
            if self.clear():
                return True
            if ms == 0:
                return False

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Await the doorbell from asyncio or uvloop (via ``loop.add_reader``).

        For a long-lived consumer, registering ``loop.add_reader(bell.fileno(), callback)``
        once and calling :meth:`clear` in the callback saves two epoll calls per wait.

        Returns:
            True if it rang, False if ``timeout`` seconds passed.
        """
        if self.clear():
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            fut: asyncio.Future[None] = loop.create_future()

            def readable(fut: asyncio.Future[None] = fut) -> None:
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(self._fd, readable)
            try:
                if deadline is None:
                    await fut
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        return self.clear()
                    try:
                        await asyncio.wait_for(fut, left)
                    except asyncio.TimeoutError:
                        return self.clear()
            finally:
                loop.remove_reader(self._fd)
            if self.clear():
                return True

    def close(self) -> None:
        """Close the eventfd. Idempotent."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._poll.unregister(fd)
            os.close(fd)

    def __enter__(self) -> Doorbell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Doorbell fd={self._fd}>"


def _check_eventfd(fd: int) -> None:
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"doorbell fd must be a non-negative int, got {fd!r}")
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        raise ValueError(f"fd {fd} is not open") from None
    except OSError:  # no /proc: trust the caller
        return
    if target != _EVENTFD_LINK:
        raise ValueError(f"fd {fd} is not an eventfd (it is {target!r})")


__all__ = ["AsyncWaitable", "Doorbell", "wait_any_readable", "wait_any_readable_async"]
