"""`make demo`: the whole product on simulated data, end to end, on 2 CPU cores.

1. record a training bag in the simulated arena, with a LiDAR dropout (`m2vae-sim`);
2. record a second bag with another seed, never used for training (`m2vae-sim`);
3. train a model on the first (`m2vae-train`) and evaluate it on the second (`m2vae-eval`);
4. run the fusion node live against a replay of the second bag with the LiDAR
   suppressed for a window (`m2vae-fusion` + `m2vae-play`), recording its outputs;
5. write `demo_out/report.md` with its figures.

Each step prints the command a user would type. A step whose command is unchanged and
whose output exists is reused, so a second `make demo` only repeats the live run; a step
runs again when a step it reads from ran (training after a new training bag, not after a
new live bag). A trained model this release cannot load (another artifact format) is
trained again. A SIGTERM or a closed terminal (SIGHUP) ends the demo like Ctrl-C, so no
child process outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from m2vae_training.demo_live import run_live
from m2vae_training.demo_report import write_report
from m2vae_training.interrupts import deferred_sigint, sigterm_as_sigint

from m2vae_ros.artifact import ArtifactError, load_model
from m2vae_ros.cli_args import positive_float, positive_int

TRAIN_SECONDS = 600
LIVE_SECONDS = 60
LIVE_DROP = (20.0, 35.0)  # LiDAR dead from 20 s to 35 s of the live replay
EPOCHS = 12


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="m2vae-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="default demo_out/")
    parser.add_argument("--train-seconds", type=positive_float, default=TRAIN_SECONDS)
    parser.add_argument("--live-seconds", type=positive_float, default=LIVE_SECONDS)
    parser.add_argument("--epochs", type=positive_int, default=EPOCHS)
    args = parser.parse_args(argv)
    if args.live_seconds < LIVE_DROP[1] + 5:
        parser.error(f"--live-seconds must be at least {LIVE_DROP[1] + 5:g}: the LiDAR is dead from "
                     f"{LIVE_DROP[0]:g} s to {LIVE_DROP[1]:g} s of the live replay, and comes back after")
    sigterm_as_sigint(hangup=True)  # `kill` runs the clean-up that stops the node, the player, a step
    out: Path = args.out
    started = time.monotonic()
    bags = out / "bags"
    drop_t0, drop_t1 = LIVE_DROP
    train_drop = f"scan@{args.train_seconds * 0.4:g}:{args.train_seconds * 0.45:g}"

    step = _Steps(out)
    step("record training bag", bags / "train", "metadata.yaml", [
        "m2vae-sim", "--out", bags / "train", "--duration", args.train_seconds, "--seed", 1,
        "--no-points", "--drop", train_drop])
    step("record unseen live bag", bags / "live", "metadata.yaml", [
        "m2vae-sim", "--out", bags / "live", "--duration", args.live_seconds, "--seed", 7, "--no-points"])
    step("train", out / "run", "model/model.yaml", [
        "m2vae-train", "--bag", bags / "train", "--out", out / "run", "--epochs", args.epochs, "--seed", 0],
        after=["record training bag"], usable=_loadable_model)
    step("evaluate on the unseen bag", out / "eval", "metrics.json", [
        "m2vae-eval", "--model", out / "run" / "model", "--bag", bags / "live", "--out", out / "eval"],
        after=["record unseen live bag", "train"])

    _banner(f"live: fusion node + replay, LiDAR dead from {drop_t0:g} s to {drop_t1:g} s "
            "(run every time: it measures this machine now)")
    record = run_live(out / "run" / "model", bags / "live", f"/scan@{drop_t0:g}:{drop_t1:g}", out / "live")
    report = write_report(out, record, bags / "live", (drop_t0, drop_t1))
    print(f"\ndemo done in {time.monotonic() - started:.0f} s: report at {report}")
    return 0


class _Steps:
    """The demo's steps, in order; a step is reused only while none of the steps it reads from ran."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.declared: set[str] = set()
        self.ran: set[str] = set()

    def __call__(self, title: str, output: Path, done_file: str, command: list[object],
                 after: Sequence[str] = (), usable: Callable[[Path], bool] = lambda output: True) -> None:
        """Run `command` unless the same command already completed `output` (it wrote `done_file`)
        and no step named in `after` (the steps whose outputs it reads) ran in this demo.

        Reuse also needs `usable(output)`. Otherwise the old output goes first: the tools
        refuse to overwrite a bag or a run.
        """
        unknown = sorted(set(after) - self.declared)
        if unknown:  # a misspelt name would make the step reused after its input was redone
            raise ValueError(f"step {title!r} reads from {unknown}, which are no earlier step")
        self.declared.add(title)
        argv = [str(part) for part in command]
        stamp = self.out / ".steps" / (title.replace(" ", "_") + ".json")
        done = (output / done_file).exists() and stamp.is_file() and json.loads(stamp.read_text()) == argv
        if done and not self.ran.intersection(after) and usable(output):
            _banner(f"{title}: reused {output}")
            return
        self.ran.add(title)
        _run(title, output, argv, stamp)


def _run(title: str, output: Path, argv: list[str], stamp: Path) -> None:
    _banner(title)
    print("$ " + shlex.join(argv), flush=True)
    stamp.unlink(missing_ok=True)  # a step that fails or is interrupted now has not completed
    for stale in (output, output.with_name(output.name + ".partial")):
        if stale.exists():
            shutil.rmtree(stale)
    executable = Path(sys.executable).parent / argv[0]
    returncode = _run_interruptibly([str(executable), *argv[1:]])
    if returncode != 0:
        raise SystemExit(f"demo: step '{title}' failed with exit code {returncode}")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(argv))


def _run_interruptibly(argv: list[str]) -> int:
    """Run a step's tool; an interrupt of the demo (Ctrl-C, or a SIGTERM or SIGHUP turned into
    one) reaches it as one SIGINT, and the demo waits while it exits cleanly (the recorder
    removes its unfinished bag; the next `make demo` reruns the step).

    The tool runs in its own session, so a terminal's Ctrl-C or hangup reaches it only
    through here: once, as the tools expect. `subprocess.run` would kill it after a quarter
    second. A second interrupt during the wait kills the tool and whatever it started.
    """
    process = None
    # A demo a script started in the background ignores SIGINT, and its steps would inherit that
    # and never hear the one forwarded here; in their own session no other SIGINT reaches them.
    inherited_ignore = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    try:
        with deferred_sigint():  # an interrupt as it starts must not leave it running, unreachable
            process = subprocess.Popen(argv, start_new_session=True,
                                       preexec_fn=_default_sigint if inherited_ignore else None)
        return process.wait()
    except KeyboardInterrupt:
        if process is None:
            raise
        try:  # a second interrupt from here on, even during the signal, kills the step's group
            process.send_signal(signal.SIGINT)
            process.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):  # the group may have gone meanwhile
                os.killpg(process.pid, signal.SIGKILL)  # its own session: its process group has its pid
            process.wait()
        raise


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _loadable_model(run: Path) -> bool:
    try:
        load_model(run / "model")
    except ArtifactError as exc:
        print(f"demo: retraining, the old model does not load: {exc}", flush=True)
        return False
    return True


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
