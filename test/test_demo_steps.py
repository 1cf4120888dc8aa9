"""`make demo` reuses a finished step unless an earlier step ran or its output is unusable."""

from pathlib import Path

import pytest
from m2vae_training.demo import _Steps


def make_file(path: Path) -> list[object]:
    """A step command: the venv's python writes `path`."""
    code = f"import pathlib; p = pathlib.Path({str(path)!r}); p.parent.mkdir(parents=True); p.write_text('x')"
    return ["python", "-c", code]


def run_demo(out: Path, capsys, usable_b: bool = True) -> str:
    steps = _Steps(out)
    steps("first", out / "a", "done", make_file(out / "a" / "done"))
    steps("second", out / "b", "done", make_file(out / "b" / "done"), usable=lambda _: usable_b)
    return capsys.readouterr().out


def test_finished_steps_are_reused_and_a_rerun_step_reruns_every_later_one(tmp_path, capsys):
    out = tmp_path / "demo"
    assert ": reused" not in run_demo(out, capsys)
    assert run_demo(out, capsys).count(": reused") == 2
    assert "=== second: reused" not in run_demo(out, capsys, usable_b=False)
    (out / ".steps" / "first.json").write_text('["an older command"]')
    printed = run_demo(out, capsys)
    assert ": reused" not in printed and "=== second\n" in printed and (out / "b" / "done").exists()


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
