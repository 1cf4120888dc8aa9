"""M²VAE vs JMVAE-kl vs MVAE: same recordings, same budget, scored on a held-out seed.

Simulated recordings with seeds 1 and 2 train each objective through `m2vae-train`
(one shared prepared dataset, the same epochs, batch size and training seeds); seed 7,
never seen in training, is scored with `m2vae-eval`. Each objective trains once per
`--seeds` value, and the table gives the mean and range over them: two M²VAE seeds
differ by more on camera naive Bayes (0.62 vs 0.76) than the objectives' single runs
do, so one seed cannot rank them. The table puts side by side, per objective:

- nb_accuracy per subset (the seed's protocol: one naive Bayes on training joint latents);
  targets camera ≥ 0.95 and camera+lidar ≥ 0.95, and LiDAR-only shape accuracy ≥ 0.9;
- the LiDAR RMSE imputed from the camera alone over the LiDAR RMSE reconstructed from
  camera+LiDAR (target ≤ 1.5: the camera must carry the geometry into the latent), and
  the same over the 61 beams in the camera's 60° view (`imputation_in_view.py`): the
  other 300° the camera never sees;
- training throughput with the data loader (Trainer.fit over the memory-mapped dataset)
  against the model alone (the same steps on one batch already on the device): a ratio
  near 1 means the loader does not starve the model;
- chance: the majority class's and the majority shape's share of the test labels, the
  score of a constant guess (two objects in three are cylinders, so shape chance is 2/3);
- the supervised ceiling: the same feature extractors plus a linear layer, trained
  with the labels (cross-entropy) for the same epochs on every labelled sample of the
  training recordings (the models train on the training blocks and validate on the
  rest), scored on the same test samples. It shows what the recordings let these
  extractors tell apart; the unsupervised latents' naive Bayes cannot be expected to
  beat it. Beside it, per subset, the LiDAR regressed (squared error) through a
  latent-sized linear layer and the model's own scan decoder: a supervised reference
  for imputation. The models' subset heads are an MLP, so it is not a strict bound.

    .venv/bin/python bench/train_eval.py [--minutes 40] [--episode-seconds 5] [--epochs 30]
                                         [--seeds 0 1 2]
                                         [--max-distance 2.5] [--look-away 0]
                                         [--device auto] [--config config/train.yaml]
                                         [--out bench/out/train_eval] [--fresh] [--jobs 1]

`--minutes` is the total length of the training recordings (split over the two seeds);
the test recording is a quarter of it (at least 30 s). Every episode shows one object,
so short episodes give the test score many independent objects rather than a few.

The recordings are an inspection (`m2vae-sim --max-distance 2.5 --look-away 0`): the
object stays in the camera's view and within 2.5 m. A class accuracy target only means
something where the sensor can see the class: in the default patrol the camera faces
away from the object at 15 % of keyframes and, at 4 m, a 0.5 m object is 8 pixels and
7 beams wide.

The full bench is hours on a CPU, so it continues where it stopped: rerun the same
command and the recordings, finished runs (`<run>/bench.json`), training checkpoints
(`m2vae-train --resume`) and the supervised ceiling (`supervised.json`) already in OUT
are kept. OUT/settings.json records the settings the results depend on; a rerun with
other settings is refused rather than mixed in. `--fresh` deletes OUT first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from imputation_in_view import lidar_rmse_by_view, ratio  # bench/, the script's own folder
from m2vae_training import eval_cli, train_cli
from m2vae_training.checkpoint import has_checkpoint
from m2vae_training.config import default_config_path, load_train_config
from m2vae_training.dataset import PreparedDataset, build_dataset, common_class_names, load_dataset
from m2vae_training.evaluation import subset_present
from m2vae_training.metrics import ReconstructionError, constant_guess, shape_of
from torch import nn

from m2vae_ros.artifact import load_model
from m2vae_ros.atomic import write_atomic
from m2vae_ros.cli_args import positive_float, positive_int
from m2vae_ros.devices import resolve_device
from m2vae_ros.likelihoods import Likelihood
from m2vae_ros.model import M2VAE
from m2vae_ros.networks import build_decoder, build_extractor
from m2vae_ros.sim import Scenario, simulate
from m2vae_ros.spec import OBJECTIVES, ModalitySpec
from m2vae_ros.subsets import all_subsets, members, subset_name
from m2vae_ros.trainer import ArrayDataset, Trainer

TRAIN_SEEDS, TEST_SEED = (1, 2), 7
THROUGHPUT_STEPS = 20
THROUGHPUT_REPEATS = 5  # interleaved; medians reported
WARMUP_STEPS = 2  # first steps allocate and tune kernels; left out of the model-only time
INTERRUPTED = (130, 143)  # the exit statuses of m2vae-train and m2vae-eval after Ctrl-C or SIGTERM


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=positive_float, default=40.0,
                        help="training recording length (total)")
    parser.add_argument("--episode-seconds", type=positive_float, default=5.0, help="one object per episode")
    parser.add_argument("--epochs", type=positive_int, default=30,
                        help="the comparison's budget per objective (config/train.yaml ships 60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds per objective (init, noise, order and split)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", type=Path, default=None, help="default: config/train.yaml")
    parser.add_argument("--image-size", type=positive_int, default=64, help="simulated camera width = height")
    parser.add_argument("--max-distance", type=float, default=2.5, help="m2vae-sim --max-distance")
    parser.add_argument("--look-away", type=float, default=0.0, help="m2vae-sim --look-away")
    parser.add_argument("--out", type=Path, default=Path("bench/out/train_eval"))
    parser.add_argument("--fresh", action="store_true", help="delete OUT first instead of continuing it")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="training runs at a time, each in its own process with cores/jobs torch threads "
                             "and its output in <run>/bench.log")
    args = parser.parse_args()

    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    if (changed := claim(args.out, settings(args))):
        print(f"train_eval: {args.out} holds results with other {', '.join(changed)}; "
              "rerun with --fresh or another --out", file=sys.stderr)
        return 2
    scenario = Scenario(max_distance=args.max_distance, look_away=args.look_away)
    bags = record(args.out / "bags", args.minutes, args.image_size, args.episode_seconds, scenario)
    common = ["--bag", *map(str, bags["train"]), "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "--device", args.device,
              "--dataset-dir", str(args.out / "dataset")]
    if args.config:
        common += ["--config", str(args.config)]

    # Built here, so the first run's training time does not include building it.
    build_dataset(bags["train"], load_train_config(args.config), args.out / "dataset")
    runs = [(objective, seed) for objective in OBJECTIVES for seed in args.seeds]
    scores = train_and_score_all(
        {(o, s): (run_dir(args.out, o, s), [*common, "--objective", o, "--seed", str(s)]) for o, s in runs},
        bags["test"], args.device, args.jobs)
    if scores is None:
        return 1
    results = {}
    for objective in OBJECTIVES:
        # Speed does not depend on the seed: measured once, on the first seed's model, after
        # every training run has ended, so that no parallel run shares the cores.
        first = run_dir(args.out, objective, args.seeds[0])
        results[objective] = {"runs": [{"seed": s, **scores[objective, s]} for s in args.seeds],
                              "throughput": throughput(first / "model", args.out / "dataset",
                                                       args.batch_size, args.device)}
    test = load_dataset(run_dir(args.out, OBJECTIVES[0], args.seeds[0]) / "eval" / "test_dataset")
    ceiling = supervised_ceiling(load_dataset(args.out / "dataset"), test, args.epochs, args.batch_size,
                                 args.device, args.out / "supervised.json")
    guess = constant_guess(test.labels, test.positions, test.class_names)
    chance = {"class": guess["nb_accuracy"], "shape": guess["shape_accuracy"]}
    _save_json(args.out / "results.json", {**results, "supervised": ceiling, "chance": chance})
    print(table(results, ceiling, chance, args))
    return 0


def settings(args: argparse.Namespace) -> dict:
    """What the recordings and scores depend on (seeds and device may change between reruns)."""
    config = yaml.safe_load((args.config or default_config_path()).read_text())
    # The config's values, not its bytes: a comment edited in config/train.yaml leaves the
    # recordings and scores as they were, so it must not make a rerun start from scratch.
    values = json.dumps(config, sort_keys=True).encode()
    return {"minutes": args.minutes, "episode_seconds": args.episode_seconds, "epochs": args.epochs,
            "batch_size": args.batch_size, "image_size": args.image_size, "max_distance": args.max_distance,
            "look_away": args.look_away, "config_values_sha256": hashlib.sha256(values).hexdigest()}


def claim(out: Path, wanted: dict) -> list[str]:
    """Record `wanted` in OUT/settings.json; the names of the settings that differ from those there."""
    path = out / "settings.json"
    if path.is_file():
        found = _load_json(path)
        return sorted(k for k in wanted.keys() | found.keys() if found.get(k) != wanted.get(k))
    out.mkdir(parents=True, exist_ok=True)
    _save_json(path, wanted)
    return []


def _load_json(path: Path) -> dict:
    """What an earlier run saved at `path`; {} when nothing was."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_json(path: Path, value: dict) -> None:
    """Atomically: an interrupted bench leaves the old file or the new one, which a rerun trusts."""
    write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def run_dir(out: Path, objective: str, seed: int) -> Path:
    """Where one objective's run with one training seed lives."""
    return out / objective / f"seed{seed}"


def train_and_score_all(runs: dict[tuple[str, int], tuple[Path, list[str]]], test_bag: Path, device: str,
                        jobs: int) -> dict[tuple[str, int], dict] | None:
    """`train_and_score` for each (objective, seed): (run folder, m2vae-train arguments); None if one failed.

    With one job they run here in turn, their progress bars on the terminal. With more,
    each runs in a worker process of its own (torch threads split between them, output
    in `<run>/bench.log`) and a line per finished run says where it stands.
    """
    try:
        return _in_turn(runs, test_bag, device) if jobs <= 1 else _in_workers(runs, test_bag, device, jobs)
    except KeyboardInterrupt:
        print("train_eval: interrupted; the same command continues where the runs stopped", file=sys.stderr)
        return None


def _in_turn(runs: dict[tuple[str, int], tuple[Path, list[str]]], test_bag: Path,
             device: str) -> dict[tuple[str, int], dict] | None:
    done = {}
    for key, (run, train_args) in runs.items():
        done[key] = train_and_score(run, train_args, test_bag, device)
        if done[key] is None:
            return None
    return done


def _in_workers(runs: dict[tuple[str, int], tuple[Path, list[str]]], test_bag: Path, device: str,
                jobs: int) -> dict[tuple[str, int], dict] | None:
    done: dict[tuple[str, int], dict | None] = {}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(f"train_eval: {len(runs)} runs, {jobs} at a time with {threads} torch thread(s) each; "
          "each one's progress in its <run>/bench.log", flush=True)
    waiting, running = list(runs), {}
    # A run is submitted only when a worker is free and none has failed (an interrupted run
    # fails), so none starts after a Ctrl-C; leaving the block waits for the running ones,
    # which heard the Ctrl-C too and save their checkpoints.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        while running or (waiting and None not in done.values()):
            while waiting and len(running) < jobs and None not in done.values():
                key = waiting.pop(0)
                running[pool.submit(_train_and_score_logged, *runs[key], test_bag, device)] = key
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                done[key] = future.result()
                outcome = "done" if done[key] is not None else f"failed, see {runs[key][0] / 'bench.log'}"
                print(f"train_eval: {key[0]} seed {key[1]} {outcome} ({len(done)} of {len(runs)})",
                      flush=True)
    return None if None in done.values() else done


def _train_and_score_logged(run: Path, train_args: list[str], test_bag: Path, device: str) -> dict | None:
    """`train_and_score` in a worker process, its output appended to `run/bench.log`."""
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "bench.log", "a") as log, redirect_stdout(log), redirect_stderr(log):
        return train_and_score(run, train_args, test_bag, device, parallel=True)


def _succeeded(status: int) -> bool:
    """Whether m2vae-train or m2vae-eval succeeded; a failure has said why. An interrupted one kept
    what a rerun continues from and said so: it is raised on, so the bench's caller stops."""
    if status in INTERRUPTED:
        raise KeyboardInterrupt
    return status == 0


def train_and_score(run: Path, train_args: list[str], test_bag: Path, device: str,
                    parallel: bool = False) -> dict | None:
    """`m2vae-train` into `run`, then `m2vae-eval` on the test bag; None if either failed.

    Each finished step is recorded in `run/bench.json`, so a rerun skips it: a finished
    run is read back, a trained one only evaluated, an interrupted one resumed from its
    checkpoint (its `train_seconds` then count the resumed part only, and `resumed` says so).
    `parallel` records that other runs shared the cores, so its time is not the table's.
    """
    record_path = run / "bench.json"
    done = _load_json(record_path)
    if "train_seconds" not in done:
        resume = ["--resume"] if has_checkpoint(run / "checkpoints") else []
        started = time.perf_counter()
        if not _succeeded(train_cli.main([*train_args, "--out", str(run), *resume])):
            return None
        done = {"train_seconds": time.perf_counter() - started, "resumed": bool(resume), "parallel": parallel}
        _save_json(record_path, done)
    if "metrics" not in done:
        if not _succeeded(eval_cli.main(["--model", str(run / "model"), "--bag", str(test_bag),
                                         "--out", str(run / "eval"), "--device", device])):
            return None
        done["metrics"] = json.loads((run / "eval" / "metrics.json").read_text())
        _save_json(record_path, done)
    if "lidar_by_view" not in done:
        done["lidar_by_view"] = lidar_rmse_by_view(run / "model", run / "eval" / "test_dataset")
        _save_json(record_path, done)
    return done


def record(directory: Path, minutes: float, image_size: int, episode_seconds: float,
           scenario: Scenario) -> dict[str, list[Path] | Path]:
    """Training bags (seeds 1, 2) and the held-out test bag (seed 7); bags already there are kept.

    `simulate` renames a finished bag into place, so an existing one is complete.
    """
    seconds, size = 60.0 * minutes, (image_size, image_size)
    durations = {seed: seconds / len(TRAIN_SEEDS) for seed in TRAIN_SEEDS}
    durations[TEST_SEED] = max(30.0, seconds / 4)
    paths = {}
    for seed, duration in durations.items():
        paths[seed] = directory / f"{'test' if seed == TEST_SEED else 'train'}_seed{seed}"
        if not paths[seed].exists():
            simulate(paths[seed], duration, seed, image_size=size, points=False,
                     episode_seconds=episode_seconds, scenario=scenario)
    return {"train": [paths[seed] for seed in TRAIN_SEEDS], "test": paths[TEST_SEED]}


def supervised_ceiling(train: PreparedDataset, test: PreparedDataset, epochs: int, batch_size: int,
                       device_request: str, saved: Path) -> dict[str, dict[str, float]]:
    """Per subset: class and shape accuracy of extractors trained with the labels, and the
    RMSE of every scan modality regressed through a latent-sized bottleneck (see the docstring).

    Each subset's scores go to `saved` as soon as they exist (over an hour at 30 epochs
    on a CPU), and subsets already there are not trained again.
    """
    device = torch.device(resolve_device(device_request)[0])
    spec = train.spec
    class_names = common_class_names(train.class_names, test.class_names)
    shapes = [shape_of(name) for name in class_names]
    same_shape = torch.tensor([[a == b for b in shapes] for a in shapes])
    scans = [m for m in spec.modalities if m.kind == "scan"]

    def cross_entropy(out: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return nn.functional.cross_entropy(out, _tensor(train.labels[rows], out.device))

    result = _load_json(saved)
    for subset in all_subsets(len(spec.modalities)):
        if subset_name(subset, spec.names) in result:
            continue
        inputs = [spec.modalities[k] for k in members(subset)]
        build = partial(_classifier, inputs, spec.feature_dim, len(class_names))
        rows = _labelled_rows(train, subset)
        classifier = _fit(build, cross_entropy, train, rows, epochs, batch_size, device)
        rows = _labelled_rows(test, subset)
        predicted = torch.cat([out.argmax(1).cpu() for out in _predict(classifier, test, rows, device)])
        truth = torch.from_numpy(test.labels[rows])
        scores = {"accuracy": float((predicted == truth).float().mean()),
                  "shape_accuracy": float(same_shape[predicted, truth].float().mean())}
        for scan in scans:
            scores[f"{scan.name}_rmse"] = _imputation_ceiling(train, test, inputs, scan, subset, epochs,
                                                              batch_size, device)
        result[subset_name(subset, spec.names)] = scores
        _save_json(saved, result)
    return result


def _imputation_ceiling(train: PreparedDataset, test: PreparedDataset, inputs: list[ModalitySpec],
                        target: ModalitySpec, subset: int, epochs: int, batch_size: int,
                        device: torch.device) -> float:
    """RMSE (m) of `target` regressed from `inputs` through a latent_dim linear layer and the model's decoder.

    The VAE's reconstructions pass a latent of the same size to the same decoder, so this
    shows how well a latent can carry the scan from these inputs when trained for it.
    """
    spec = train.spec
    likelihood = Likelihood(target)

    def squared_error(out: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        target_values = _tensor(train.arrays[target.name][rows], out.device)
        return nn.functional.mse_loss(likelihood.mean(out), target_values)

    build = partial(_regressor, inputs, spec.feature_dim, spec.latent_dim, target)
    regressor = _fit(build, squared_error, train, _labelled_rows(train, subset), epochs, batch_size, device)
    error, rows = ReconstructionError(target), _labelled_rows(test, subset)
    for chunk, out in zip(_chunks(rows), _predict(regressor, test, rows, device), strict=True):
        error.add(likelihood.mean(out).cpu().numpy(), np.asarray(test.arrays[target.name][chunk]),
                  np.asarray(test.masks[target.name][chunk]))
    return error.value()


class _Supervised(nn.Module):
    """The model's feature extractors for some modalities, concatenated, then a head."""

    def __init__(self, members: list[ModalitySpec], feature_dim: int, head: nn.Module) -> None:
        super().__init__()
        self.names = [m.name for m in members]
        self.extractors = nn.ModuleList(build_extractor(m, feature_dim) for m in members)
        self.head = head

    def forward(self, data: PreparedDataset, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        features = [extractor(_tensor(data.arrays[name][rows], device))
                    for extractor, name in zip(self.extractors, self.names, strict=True)]
        return self.head(torch.relu(torch.cat(features, dim=1)))


def _classifier(inputs: list[ModalitySpec], feature_dim: int, classes: int) -> _Supervised:
    return _Supervised(inputs, feature_dim, nn.Linear(feature_dim * len(inputs), classes))


def _regressor(inputs: list[ModalitySpec], feature_dim: int, latent_dim: int,
               target: ModalitySpec) -> _Supervised:
    """Features → a latent_dim linear bottleneck → the model's decoder for `target` (raw output)."""
    bottleneck = nn.Linear(feature_dim * len(inputs), latent_dim)
    return _Supervised(inputs, feature_dim, nn.Sequential(bottleneck, build_decoder(target, latent_dim)))


Loss = Callable[[torch.Tensor, np.ndarray], torch.Tensor]  # (module output, batch rows) → scalar


def _fit(build: Callable[[], _Supervised], loss_fn: Loss, data: PreparedDataset, rows: np.ndarray,
         epochs: int, batch_size: int, device: torch.device) -> _Supervised:
    """Adam (lr 1e-3) on `loss_fn(output, batch rows)` for `epochs` shuffled passes over `rows`.

    The module is built after seeding, so its initial weights do not depend on what ran before.
    """
    torch.manual_seed(0)
    module = build().to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    generator = np.random.default_rng(0)
    for _ in range(epochs):
        for batch in np.array_split(generator.permutation(rows), max(1, len(rows) // batch_size)):
            batch = np.sort(batch)
            loss = loss_fn(module(data, batch, device), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return module


def _chunks(rows: np.ndarray) -> list[np.ndarray]:
    return np.array_split(rows, max(1, len(rows) // 256))


def _predict(module: _Supervised, data: PreparedDataset, rows: np.ndarray,
             device: torch.device) -> Iterator[torch.Tensor]:
    """The module's outputs over `rows`, chunk by chunk (see `_chunks`)."""
    with torch.inference_mode():
        for chunk in _chunks(rows):
            yield module(data, chunk, device)


def _tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values)).to(device)


def _labelled_rows(data: PreparedDataset, subset: int) -> np.ndarray:
    """Rows with a label where every modality of `subset` is available."""
    return np.flatnonzero(subset_present(data.available, subset) & (data.labels >= 0))


def throughput(model_dir: Path, dataset_dir: Path, batch_size: int, device_request: str) -> dict[str, float]:
    """Samples/s of Trainer.fit (loader + model) against the model's steps on a resident batch.

    The three timings are interleaved `THROUGHPUT_REPEATS` times and reported as medians,
    since one timing of 20 steps is noisier than the effect. Each loader pass reads rows
    not read before, spread over the whole memory-mapped file as a shuffled epoch is.
    """
    spec = load_model(model_dir).spec
    device = torch.device(resolve_device(device_request)[0])
    dataset = load_dataset(dataset_dir)
    batch_size = min(batch_size, len(dataset))
    steps = max(1, min(len(dataset) // (2 * THROUGHPUT_REPEATS * batch_size), THROUGHPUT_STEPS))
    n = steps * batch_size
    rows_needed = 2 * THROUGHPUT_REPEATS * n  # distinct rows for every loader pass, if the data has them
    passes = iter(np.random.default_rng(0).choice(len(dataset), size=(2 * THROUGHPUT_REPEATS, n),
                                                  replace=len(dataset) < rows_needed))
    torch.manual_seed(0)
    trainer = Trainer(M2VAE(spec), device=device)
    arrays, available = ArrayDataset(dataset.arrays, dataset.available).batch(np.arange(batch_size))
    x = {name: torch.from_numpy(a).to(device) for name, a in arrays.items()}
    mask = torch.from_numpy(available).to(device)

    def model_only() -> float:
        for step in range(WARMUP_STEPS + steps):
            if step == WARMUP_STEPS:
                started = _now(device)
            result = trainer.compute_loss(x, mask)
            trainer.optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            trainer.optimizer.step()
        return n / (_now(device) - started)

    def loader_only() -> float:
        data = ArrayDataset(dataset.arrays, dataset.available, np.sort(next(passes)))
        started = _now(device)
        for start in range(0, n, batch_size):
            arrays, _ = data.batch(np.arange(start, start + batch_size))
            for values in arrays.values():
                torch.from_numpy(values).to(device)
        return n / (_now(device) - started)

    def with_loader() -> float:
        data = ArrayDataset(dataset.arrays, dataset.available, np.sort(next(passes)))
        started = _now(device)
        trainer.fit(data, epochs=trainer.epoch + 1, batch_size=batch_size, progress=False)
        return n / (_now(device) - started)

    timings = [(model_only(), loader_only(), with_loader()) for _ in range(THROUGHPUT_REPEATS)]
    model, loader, fit = (float(np.median(column)) for column in zip(*timings, strict=True))
    return {"model_only": model, "loader_only": loader, "with_loader": fit, "ratio": fit / model}


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def table(results: dict, ceiling: dict[str, dict[str, float]], chance: dict[str, float],
          args: argparse.Namespace) -> str:
    """Objectives side by side as a markdown table, with each target next to its row."""
    def lidar_error(subset: str):
        return lambda m: m["subsets"][subset]["recon_error"]["lidar"]

    rows = [
        ("NB accuracy camera (≥ 0.95)", lambda m: m["subsets"]["camera"].get("nb_accuracy")),
        ("NB accuracy lidar", lambda m: m["subsets"]["lidar"].get("nb_accuracy")),
        ("shape accuracy lidar (≥ 0.9)", lambda m: m["subsets"]["lidar"].get("shape_accuracy")),
        ("NB accuracy camera+lidar (≥ 0.95)", lambda m: m["subsets"]["camera+lidar"].get("nb_accuracy")),
        ("LiDAR RMSE from camera (m)", lidar_error("camera")),
        ("LiDAR RMSE from camera+lidar (m)", lidar_error("camera+lidar")),
        ("imputed / reconstructed LiDAR RMSE (≤ 1.5)",
         lambda m: ratio(lidar_error("camera")(m), lidar_error("camera+lidar")(m))),
        ("camera error from lidar (0–255)", lambda m: m["subsets"]["lidar"]["recon_error"]["camera"]),
        ("position RMSE camera+lidar (m)", lambda m: m["subsets"]["camera+lidar"].get("position_rmse")),
    ]
    # The same LiDAR errors over the 61 beams the camera sees (`imputation_in_view.py`).
    in_view = [
        ("… in the camera's 60°: LiDAR RMSE from camera (m)", lambda v: v["camera"]["in"]),
        ("… in the camera's 60°: LiDAR RMSE from camera+lidar (m)", lambda v: v["camera+lidar"]["in"]),
        ("… in the camera's 60°: imputed / reconstructed", lambda v: ratio(v["camera"]["in"],
                                                                            v["camera+lidar"]["in"])),
    ]
    speed = [
        ("samples/s with loader (fit)", "with_loader"),
        ("samples/s model only", "model_only"),
        ("samples/s loader only", "loader_only"),
        ("with loader / model only", "ratio"),
    ]
    objectives = list(results)
    first = results[objectives[0]]["runs"][0]["metrics"]
    lines = [
        f"train: {args.minutes} min (seeds {TRAIN_SEEDS}), test: seed {TEST_SEED}, "
        f"{first['samples']} test samples, {args.episode_seconds:g} s episodes, objects within "
        f"{args.max_distance:g} m, look-away {args.look_away:g}; "
        f"{args.epochs} epochs max, batch {args.batch_size}, device {args.device}, torch threads "
        f"{torch.get_num_threads()}{_parallel_note(results)}; seeds {' '.join(map(str, args.seeds))}: "
        "mean (min–max)",
        "",
        "| | " + " | ".join(objectives) + " |",
        "|---|" + "---|" * len(objectives),
    ]
    for title, get in rows:
        lines.append(_spread_row(title, [[get(run["metrics"]) for run in results[o]["runs"]]
                                         for o in objectives]))
    for title, get in in_view:
        lines.append(_spread_row(title, [[get(run["lidar_by_view"]) for run in results[o]["runs"]]
                                         for o in objectives]))
    for title, key in speed:
        lines.append(_row(title, [results[o]["throughput"][key] for o in objectives]))
    lines.append(_spread_row("training wall time (s), runs neither resumed nor in parallel",
                             [[None if r.get("resumed") or r.get("parallel") else r["train_seconds"]
                               for r in results[o]["runs"]]
                              for o in objectives]))
    lines += ["", "Chance (a constant guess of the majority on the test labels): "
              f"class {chance['class']:.3f}, shape {chance['shape']:.3f}.", "",
              "Supervised ceiling (same extractors + linear layer trained with the labels on every "
              "labelled training sample; LiDAR regressed through a latent-sized linear layer and the "
              "model's decoder):", "",
              "| subset | class accuracy | shape accuracy | LiDAR RMSE (m) |", "|---|---|---|---|"]
    lines += [f"| {name} | {c['accuracy']:.3f} | {c['shape_accuracy']:.3f} | {_fmt(c.get('lidar_rmse'))} |"
              for name, c in ceiling.items()]
    return "\n".join(lines)


def _parallel_note(results: dict) -> str:
    """Whether training runs shared the cores (`--jobs`), as their records say: a resumed bench
    may have trained some runs alone and others in parallel."""
    parallel = sum(bool(run.get("parallel")) for o in results.values() for run in o["runs"])
    total = sum(len(o["runs"]) for o in results.values())
    return f" (training: {parallel} of {total} runs shared the cores, --jobs)" if parallel else ""


def _row(title: str, values: list[float | None]) -> str:
    return f"| {title} | " + " | ".join(_fmt(v) for v in values) + " |"


def _spread_row(title: str, values: list[list[float | None]]) -> str:
    """One cell per objective: the mean over seeds and, with several, their range."""
    return f"| {title} | " + " | ".join(_spread(v) for v in values) + " |"


def _spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    mean = _fmt(float(np.mean(known)))
    return mean if len(known) == 1 else f"{mean} ({_fmt(min(known))}–{_fmt(max(known))})"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main())
