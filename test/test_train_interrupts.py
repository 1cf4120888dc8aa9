"""A SIGINT during a guarded write is delivered after the write, never in the middle of it.

SIGTERM acts as SIGINT.
"""

import os
import signal

import pytest
from m2vae_training.interrupts import default_sigterm, deferred_sigint, sigterm_as_sigint


def test_sigint_inside_the_block_is_raised_after_it():
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append(True)  # still runs: the signal was only recorded
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_nested_block_leaves_the_sigint_to_the_outer_one():
    """Two writes that belong together: the inner one's end must not let the signal through."""
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)
        finished.append("between")
        with deferred_sigint():
            finished.append("second write")
    assert finished == ["between", "second write"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_block_without_signal_leaves_nothing_pending():
    with deferred_sigint():
        value = 1
    assert value == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored_inside_the_block():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def restore_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_interrupts_like_ctrl_c_and_waits_for_a_guarded_write(restore_sigterm):
    sigterm_as_sigint()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # not reached past the signal: cleanup code sees a KeyboardInterrupt
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append(True)
    assert finished == [True]


def test_a_background_job_ignores_ctrl_c_but_sigterm_interrupts_it_after_a_guarded_write(restore_sigterm):
    """A job a script started with `&` ignores SIGINT; `kill` must still reach its clean-up."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sigterm_as_sigint()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
        finished = []
        with pytest.raises(KeyboardInterrupt), deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)  # meant for the foreground: still ignored
            with deferred_sigint():
                os.kill(os.getpid(), signal.SIGTERM)
            finished.append("between")
        assert finished == ["between"]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_ends_the_process_at_once_inside_a_blocking_wait(restore_sigterm):
    # A Python handler would run only after the blocking C call (a torchrun barrier) returns.
    sigterm_as_sigint()
    routed = signal.getsignal(signal.SIGTERM)
    with default_sigterm():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is routed
