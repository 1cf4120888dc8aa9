"""A SIGINT during a guarded write is delivered after the write, never in the middle of it."""

import os
import signal

import pytest
from m2vae_training.interrupts import deferred_sigint


def test_sigint_inside_the_block_is_raised_after_it():
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append(True)  # still runs: the signal was only recorded
    assert finished == [True]
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
