"""Password hashing: bcrypt in a small bounded pool of its own threads.

bcrypt only reads 72 bytes, so the password is first reduced to base64(SHA-256(password))
(44 bytes, no NUL) and every character of a long passphrase counts.

A hash at cost 12 takes about a quarter of a second of one core, so hashing is where a
flood of registrations or logins would starve a server. The pool runs at most
``auth.bcrypt_workers`` hashes at once (never on the event loop's default executor), and
serves login checks before registration hashes: registrations never hold more than
``workers - 1`` threads (when there are two or more), so a login always finds a thread
within one hash. Registration hashes also run on threads of lower CPU priority (nice
+10 on Linux), so on a busy machine a login check, and the rest of the server, get the
cores first. At most ``auth.bcrypt_queue`` jobs of each kind wait; beyond that the
request is refused at once with 503 ``busy`` and a Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import bcrypt

from livecast.core.errors import RateLimited

log = logging.getLogger(__name__)

SIGNUP_NICE = 10  # how much lower the registration threads' CPU priority is


class Busy(RateLimited):
    """503 ``busy`` with Retry-After (a RateLimited, so the error middleware sends the header)."""

    status = 503
    code = "busy"


class Priority(IntEnum):
    LOGIN = 0
    SIGNUP = 1


def _prehash(password: str) -> bytes:
    digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
    return base64.b64encode(digest)


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except ValueError:  # a corrupt hash in the database is a failed login, not a crash
        return False


def _lower_priority() -> None:
    """Thread initializer: on Linux, nice applies to the calling thread alone."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIGNUP_NICE)
    except (AttributeError, OSError) as err:  # not Linux, or not allowed: same priority
        log.debug("cannot lower the registration threads' priority: %s", err)


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    priority: Priority


class PasswordPool:
    """Runs at most ``workers`` bcrypt jobs at once, logins first, with bounded waiting lines."""

    def __init__(self, workers: int, queue_limit: int) -> None:
        self.workers = max(1, workers)
        self.queue_limit = max(1, queue_limit)
        self.signup_threads = max(1, self.workers - 1)
        self.hashes = 0  # bcrypt jobs started (hashes and checks), for tests and metrics
        self.refused = 0
        self._executors = {
            Priority.LOGIN: ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bcrypt-login"),
            Priority.SIGNUP: ThreadPoolExecutor(max_workers=self.signup_threads, thread_name_prefix="bcrypt-signup",
                                                initializer=_lower_priority),
        }
        self._waiting: dict[Priority, deque[_Job]] = {p: deque() for p in Priority}
        self._running: dict[Priority, int] = {p: 0 for p in Priority}
        self._seconds = 0.25  # running average of one job, for Retry-After
        self._last_warning = 0.0

    async def hash(self, password: str, rounds: int) -> str:
        result: str = await self._run(Priority.SIGNUP, hash_password, password, rounds)
        return result

    async def check(self, password: str, hashed: str) -> bool:
        result: bool = await self._run(Priority.LOGIN, check_password, password, hashed)
        return result

    def waiting(self, priority: Priority) -> int:
        return sum(1 for job in self._waiting[priority] if not job.future.done())

    def close(self) -> None:
        for line in self._waiting.values():
            for job in line:
                job.future.cancel()
            line.clear()
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, priority: Priority, fn: Callable[..., Any], *args: Any) -> Any:
        job = _Job(fn, args, asyncio.get_running_loop().create_future(), priority)
        if self._may_start(priority):
            self._start(job)
        elif self.waiting(priority) >= self.queue_limit:
            self._refuse(priority)
        else:
            self._waiting[priority].append(job)
        return await job.future

    def _may_start(self, priority: Priority) -> bool:
        if sum(self._running.values()) >= self.workers:
            return False
        if priority is Priority.SIGNUP and self._running[Priority.SIGNUP] >= self.signup_threads:
            return False
        return all(self.waiting(p) == 0 for p in Priority if p <= priority)

    def _start(self, job: _Job) -> None:
        self._running[job.priority] += 1
        self.hashes += 1
        started = time.monotonic()
        done = self._executors[job.priority].submit(job.fn, *job.args)
        loop = job.future.get_loop()

        def back_on_the_loop(f: Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._finished, job, f, started)
            except RuntimeError:  # the loop closed while the hash ran (shutdown)
                pass

        done.add_done_callback(back_on_the_loop)

    def _finished(self, job: _Job, done: Future[Any], started: float) -> None:
        self._running[job.priority] -= 1
        self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
        if not job.future.done():
            if done.cancelled():
                job.future.cancel()
            elif (err := done.exception()) is not None:
                job.future.set_exception(err)
            else:
                job.future.set_result(done.result())
        self._dispatch()

    def _dispatch(self) -> None:
        for priority in Priority:
            line = self._waiting[priority]
            while line and line[0].future.done():  # its request went away while waiting
                line.popleft()
            while line and self._may_start_next(priority):
                job = line.popleft()
                if not job.future.done():
                    self._start(job)

    def _may_start_next(self, priority: Priority) -> bool:
        if sum(self._running.values()) >= self.workers:
            return False
        return priority is Priority.LOGIN or self._running[Priority.SIGNUP] < self.signup_threads

    def _refuse(self, priority: Priority) -> None:
        self.refused += 1
        threads = self.workers if priority is Priority.LOGIN else self.signup_threads
        wait = self._seconds * (self.waiting(priority) + 1) / threads
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning("password hashing is saturated: %d waiting, refusing (%d refused so far)",
                        self.waiting(priority), self.refused)
        raise Busy("the server is busy, try again shortly", retry_after=wait)
