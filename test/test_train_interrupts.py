"""A SIGINT during a guarded write is delivered after the write, never in the middle of it.

SIGTERM acts as SIGINT, but the process still ends with a SIGTERM's exit status (143, not 130).
"""

import os
import signal
import sys
from pathlib import Path

import pytest
from m2vae_training.checkpoint import load_checkpoint
from m2vae_training.interrupts import (
    default_sigterm,
    deferred_sigint,
    interrupted_exit_status,
    sigterm_as_sigint,
)
from trainutils import signal_when, tiny_bag, tiny_config

from m2vae_ros.artifact import load_model


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
    assert interrupted_exit_status() == 130  # Ctrl-C, unless a SIGTERM came
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # not reached past the signal: cleanup code sees a KeyboardInterrupt
    finished = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGTERM)
        finished.append(True)
    assert finished == [True]
    assert interrupted_exit_status() == 143  # 128 + SIGTERM, as a shell reports `kill`


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
        assert interrupted_exit_status() == 143  # the SIGTERM the guarded write held
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_ends_the_process_at_once_inside_a_blocking_wait(restore_sigterm):
    # A Python handler would run only after the blocking C call (a torchrun barrier) returns.
    sigterm_as_sigint()
    routed = signal.getsignal(signal.SIGTERM)
    with default_sigterm():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is routed


def test_a_sigterm_ends_m2vae_train_with_143_and_a_checkpoint_to_resume(tmp_path):
    """`kill` and `timeout` stop a run as Ctrl-C does (checkpoint, model, message), but the exit
    status says SIGTERM, as the shell convention has it: a script tells them apart (Ctrl-C: 130)."""
    out, bag = tmp_path / "run", tiny_bag(tmp_path / "bag", seed=1)
    command = [str(Path(sys.executable).parent / "m2vae-train"), "--bag", str(bag), "--out", str(out),
               "--config", str(tiny_config(tmp_path / "train.yaml")), "--device", "cpu", "--epochs", "200"]
    returncode, stdout, stderr = signal_when(command, (out / "checkpoints" / "checkpoint.json").exists,
                                             signal.SIGTERM)
    assert returncode == 143, stderr
    assert stdout.startswith("interrupted:") and "--resume continues after epoch" in stderr
    epoch, _ = load_checkpoint(out / "checkpoints")
    assert 1 <= epoch < 200 and load_model(out / "model").spec.names == ("camera", "lidar")


def test_an_interrupt_while_a_command_imports_is_one_line_and_its_exit_status(tmp_path):
    """m2vae-train imports torch, scikit-learn and matplotlib for seconds before its main runs: a
    SIGTERM (or Ctrl-C) then must end it as one later would, not silently or with a traceback."""
    started = tmp_path / "started"
    (tmp_path / "slow_to_import.py").write_text(
        f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)\ndef main():\n    return 0\n")
    command = [sys.executable, "-c", "import sys; from m2vae_training.entry_points import _run; "
               "sys.exit(_run('slow_to_import', 'm2vae-x'))"]
    for stop, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        started.unlink(missing_ok=True)
        returncode, _, stderr = signal_when(command, started.exists, stop, cwd=tmp_path)
        assert (returncode, stderr) == (status, "m2vae-x: interrupted while starting; nothing was done\n")
