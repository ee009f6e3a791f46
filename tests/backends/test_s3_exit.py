"""A process that used obstore waits, at exit, for threads that Python's `threading` does not
know (obstore's runtime threads) to finish handing a result to an event loop, so that none is
ended half-way by the interpreter's finalization, which aborts the process."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time

import pytest

from openai_files.storage._s3_exit import threads_handing_over, wait_for_foreign_threads


def start_foreign_thread(seconds: float, *, handing_over: bool = True) -> threading.Event:
    """A thread started without `threading` that runs Python code for ``seconds``, inside a
    function named as an event loop's ``call_soon_threadsafe`` unless not ``handing_over``;
    the event is set as it leaves."""
    left = threading.Event()

    def call_soon_threadsafe() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.001)

    def other_work() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.001)

    def run() -> None:
        (call_soon_threadsafe if handing_over else other_work)()
        left.set()

    _thread.start_new_thread(run, ())
    return left


def test_the_wait_lasts_until_a_foreign_thread_has_handed_its_result_over() -> None:
    left = start_foreign_thread(0.3)
    time.sleep(0.05)
    assert threads_handing_over()
    assert wait_for_foreign_threads(grace=10)
    assert left.is_set()
    assert not threads_handing_over()


def test_the_wait_gives_up_after_its_grace() -> None:
    left = start_foreign_thread(3)
    time.sleep(0.05)
    started = time.monotonic()
    assert not wait_for_foreign_threads(grace=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert not left.is_set()
    left.wait(10)


def test_foreign_threads_doing_other_work_are_not_waited_for() -> None:
    left = start_foreign_thread(3, handing_over=False)
    time.sleep(0.05)
    started = time.monotonic()
    assert wait_for_foreign_threads(grace=5)
    assert time.monotonic() - started < 1
    assert not left.is_set()
    left.wait(10)


def test_threads_of_threading_are_not_waited_for() -> None:
    stop = threading.Event()

    def call_soon_threadsafe() -> None:
        stop.wait()

    thread = threading.Thread(target=call_soon_threadsafe, daemon=True)
    thread.start()
    try:
        time.sleep(0.05)
        assert thread.ident not in threads_handing_over()
        started = time.monotonic()
        assert wait_for_foreign_threads(grace=5)
        assert time.monotonic() - started < 1
    finally:
        stop.set()
        thread.join()


EXIT_WITH_A_FOREIGN_THREAD = """
import _thread, sys, time
from openai_files.storage._s3_exit import register_exit_wait
{register}
def call_soon_threadsafe():
    time.sleep(0.3)  # handing a result over when the main thread exits
    sys.stdout.write("foreign thread done\\n")
    sys.stdout.flush()
_thread.start_new_thread(call_soon_threadsafe, ())
time.sleep(0.05)
"""


def exit_with_a_foreign_thread(register: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_FOREIGN_THREAD.format(register=register)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("register", [True, False], ids=["registered", "not-registered"])
def test_an_exit_waits_for_the_foreign_thread_only_when_registered(register: bool) -> None:
    done = exit_with_a_foreign_thread("register_exit_wait()" if register else "")
    assert done.returncode == 0, done.stderr
    assert ("foreign thread done" in done.stdout) is register


def test_a_process_that_made_an_s3_storage_waits_at_exit() -> None:
    done = exit_with_a_foreign_thread(
        "from openai_files.storage.s3 import S3Storage\n"
        "for bucket in ('one', 'two'):\n"
        "    S3Storage(bucket, endpoint='http://127.0.0.1:9', region='us-east-1',"
        " access_key_id='a', secret_access_key='b', allow_http=True)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("foreign thread done") == 1
