"""The training command lines' entry points: quiet when interrupted while they start.

m2vae-train and m2vae-eval import torch, scikit-learn and matplotlib before their `main`
runs: seconds in which a Ctrl-C printed a traceback from deep inside SciPy and a SIGTERM
ended the process without a word. These entry points route SIGTERM first (`interrupts`
imports nothing heavy), then import the command, so an interrupt at any moment ends with
one line and the status a shell expects (130, or 143 for SIGTERM).
"""

from __future__ import annotations

import importlib
import sys

from m2vae_training.interrupts import interrupted_exit_status, sigterm_as_sigint


def _run(module: str, prog: str) -> int:
    sigterm_as_sigint()
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt:  # `main` handles its own: this is one before it could (its imports)
        print(f"{prog}: interrupted while starting; nothing was done", file=sys.stderr)
        return interrupted_exit_status()


def dataset() -> int:
    return _run("m2vae_training.dataset_cli", "m2vae-dataset")


def train() -> int:
    return _run("m2vae_training.train_cli", "m2vae-train")


def evaluate() -> int:
    return _run("m2vae_training.eval_cli", "m2vae-eval")
