"""`make demo` reuses a finished step unless a step it reads from ran or its output is unusable."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from m2vae_training.demo import _Steps


def make_file(path: Path) -> list[object]:
    """A step command: the venv's python writes `path`."""
    code = f"import pathlib; p = pathlib.Path({str(path)!r}); p.parent.mkdir(parents=True); p.write_text('x')"
    return ["python", "-c", code]


def run_demo(out: Path, capsys, usable_b: bool = True) -> str:
    """Three steps: `second` reads what `first` wrote, `third` reads neither."""
    steps = _Steps(out)
    steps("first", out / "a", "done", make_file(out / "a" / "done"))
    steps("third", out / "c", "done", make_file(out / "c" / "done"))
    steps("second", out / "b", "done", make_file(out / "b" / "done"), after=["first"],
          usable=lambda _: usable_b)
    return capsys.readouterr().out


def test_finished_steps_are_reused_and_a_rerun_step_reruns_the_ones_reading_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert ": reused" not in run_demo(out, capsys)
    assert run_demo(out, capsys).count(": reused") == 3
    assert "=== second: reused" not in run_demo(out, capsys, usable_b=False)
    (out / ".steps" / "third.json").write_text('["an older command"]')
    printed = run_demo(out, capsys)  # third reruns; second does not read it
    assert "=== third\n" in printed and "=== second: reused" in printed
    (out / ".steps" / "first.json").write_text('["an older command"]')
    printed = run_demo(out, capsys)
    assert "=== first\n" in printed and "=== second\n" in printed and "=== third: reused" in printed
    assert (out / "b" / "done").exists()


def test_a_step_that_fails_on_a_rerun_is_not_reused_next_time(tmp_path, capsys):
    """A rerun interrupted after writing its done file (as Ctrl-C leaves a model) must run again."""
    out = tmp_path / "demo"
    run_demo(out, capsys)
    write_then_fail = make_file(out / "b" / "done")
    write_then_fail[-1] += "; raise SystemExit(130)"
    with pytest.raises(SystemExit, match="exit code 130"):
        _Steps(out)("second", out / "b", "done", write_then_fail, usable=lambda _: False)
    assert (out / "b" / "done").exists()
    capsys.readouterr()
    printed = run_demo(out, capsys)
    assert "=== first: reused" in printed and "=== second\n" in printed


def test_a_step_may_read_only_from_earlier_steps(tmp_path):
    steps = _Steps(tmp_path)
    steps("first", tmp_path / "a", "done", make_file(tmp_path / "a" / "done"))
    with pytest.raises(ValueError, match=r"step 'second' reads from \['frist'\], which are no earlier step"):
        steps("second", tmp_path / "b", "done", make_file(tmp_path / "b" / "done"), after=["frist"])
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("stop, background", [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                              (signal.SIGTERM, True)],
                         ids=["kill", "closed_terminal", "kill_of_a_background_job"])
def test_a_sigterm_to_the_demo_lets_the_running_step_clean_up_and_end(tmp_path, stop, background):
    """`kill <demo>` or a closed terminal ends a running step's tool too, as Ctrl-C does (the default
    SIGTERM would orphan it, and the hangup does not reach the step's own session), through the
    tool's own interrupt handling: the recorder removes its unfinished bag. Also for a demo a
    script started with `&`, which ignores SIGINT and would pass that on to its steps."""
    command = [sys.executable, "-m", "m2vae_training.demo", "--out", str(tmp_path / "demo"),
               "--train-seconds", "3000"]
    dispositions = {signal.SIGINT: signal.SIG_IGN if background else signal.SIG_DFL,
                    signal.SIGHUP: signal.SIG_DFL}  # as in a terminal, not as in this test's runner
    demo = subprocess.Popen(
        command, preexec_fn=lambda: [signal.signal(s, d) for s, d in dispositions.items()],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    child = None
    deadline = time.monotonic() + 60
    while child is None and time.monotonic() < deadline:  # the first step: m2vae-sim recording
        found = subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True, text=True).stdout.split()
        child = int(found[0]) if found else time.sleep(0.1)
    assert child is not None, "the demo started no step"
    unfinished = tmp_path / "demo" / "bags" / "train.partial"
    while not unfinished.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unfinished.exists(), "the recorder started no bag"
    demo.send_signal(stop)
    assert demo.wait(timeout=30) != 0
    assert not _running(child), "the step's tool outlived the demo"
    assert not unfinished.exists(), "the tool was killed before it could clean up"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent has not collected it
