"""The training loop: memmap datasets, bit-for-bit resume, callbacks, bad input."""

import numpy as np
import pytest
import torch

from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import loss
from m2vae_ros.spec import ModalitySpec, ModelSpec, ScanPreprocess, VectorPreprocess
from m2vae_ros.trainer import ArrayDataset, Callback, LossMeans, Trainer, TrainingDiverged

torch.set_num_threads(1)
N = 48


def spec() -> ModelSpec:
    return ModelSpec(
        (
            ModalitySpec("lidar", "scan", ScanPreprocess(beams=12), hidden=(4,)),
            ModalitySpec("imu", "vector", VectorPreprocess(3), hidden=(8,)),
        ),
        latent_dim=2,
        feature_dim=8,
        head_hidden=8,
    )


def arrays(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    available = rng.random((N, 2)) > 0.25
    data = {
        "lidar": rng.random((N, 1, 12), dtype=np.float32),
        "imu": rng.random((N, 3), dtype=np.float32),
    }
    for column, name in enumerate(data):
        data[name][~available[:, column]] = 0
    return data, available


def trainer(seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    return Trainer(M2VAE(spec()), lr=3e-3, seed=seed)


def test_memmap_dataset_trains_and_reports_metrics(tmp_path):
    data, available = arrays()
    maps = {}
    for name, array in data.items():
        maps[name] = np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", np.float32, array.shape)
        maps[name][:] = array
    train = ArrayDataset(maps, available, indices=np.arange(36))
    val = ArrayDataset(maps, available, indices=np.arange(36, N))
    history = trainer().fit(train, val, epochs=2, batch_size=8, progress=False)
    assert len(history.train) == len(history.val) == 2
    assert np.isfinite(history.val[-1]["elbo"])
    assert history.val[-1]["elbo"] == -history.val[-1]["loss"]
    assert {"elbo/lidar", "elbo/imu", "elbo/lidar+imu", "kl/lidar+imu|imu"} <= set(history.train[-1])


def test_validation_scores_sampled_z_on_the_same_draws_each_time_and_leaves_training_noise_alone():
    data, available = arrays()
    run = trainer()
    val = ArrayDataset(data, available)
    before = run.generator.get_state()
    first, second = run.evaluate(val), run.evaluate(val)
    assert first == second  # the same draws: epochs compare like with like
    assert torch.equal(run.generator.get_state(), before)  # a resumed run draws what it would have
    x = {name: torch.from_numpy(values) for name, values in data.items()}
    at_mean = loss(run.model, x, torch.from_numpy(available), sample=False).terms["elbo/lidar+imu"]
    assert first["elbo/lidar+imu"] != pytest.approx(float(at_mean), abs=1e-6)  # z is sampled


def test_resumed_run_continues_bit_for_bit():
    data, available = arrays()
    train = ArrayDataset(data, available)
    straight = trainer()
    straight.fit(train, epochs=3, batch_size=8, progress=False)

    first = trainer()
    first.fit(train, epochs=1, batch_size=8, progress=False)
    saved = first.state_dict()
    first.fit(train, epochs=2, batch_size=8, progress=False)  # moving on must not alter the snapshot
    resumed = trainer(seed=5)  # different init and seed: the state must override both
    resumed.load_state_dict(saved)
    assert resumed.epoch == 1
    history = resumed.fit(train, epochs=3, batch_size=8, progress=False)
    assert len(history.train) == 2  # epochs 2 and 3: the ones this call ran

    assert resumed.step == straight.step == 3 * 6
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_availability_columns_follow_the_dataset_arrays_order():
    data, available = arrays()
    reordered = ArrayDataset({"imu": data["imu"], "lidar": data["lidar"]}, available[:, ::-1].copy())
    a, b = trainer(), trainer()
    assert a.evaluate(ArrayDataset(data, available)) == b.evaluate(reordered)


def test_subset_terms_average_over_the_rows_holding_the_subset():
    """Batch by batch, each term weighs as many rows as hold its subset: one whole batch agrees."""
    data, available = arrays()
    model = trainer().model
    x, mask = {name: torch.from_numpy(values) for name, values in data.items()}, torch.from_numpy(available)
    batches, one = LossMeans(), LossMeans()
    for rows in (slice(start, start + 8) for start in range(0, N, 8)):
        batches.add(loss(model, {k: v[rows] for k, v in x.items()}, mask[rows], sample=False), mask[rows])
    one.add(loss(model, x, mask, sample=False), mask)
    by_batch, whole = batches.means(), one.means()
    assert by_batch.keys() == whole.keys()
    for key in ("elbo", "elbo/lidar+imu", "kl/lidar+imu|imu", "rec/lidar/lidar"):
        assert by_batch[key] == pytest.approx(whole[key], rel=1e-5), key


class StopAfter(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.steps: list[int] = []

    def on_step_end(self, trainer, step, loss):
        self.steps.append(step)

    def on_epoch_end(self, trainer, epoch, train_metrics, val_metrics):
        return epoch >= self.epochs


def test_callbacks_see_every_step_and_can_stop():
    data, available = arrays()
    callback = StopAfter(2)
    run = trainer()
    history = run.fit(
        ArrayDataset(data, available), epochs=10, batch_size=16, callbacks=[callback], progress=False
    )
    assert len(history.train) == 2 and run.epoch == 2
    assert callback.steps == list(range(1, 7))


def test_bad_datasets_are_refused_with_clear_errors():
    data, available = arrays()
    with pytest.raises(ValueError, match="differ in length"):
        ArrayDataset({"lidar": data["lidar"], "imu": data["imu"][:5]})
    with pytest.raises(ValueError, match=r"available must be bool \(or 0/1\) \[48, 2\]"):
        ArrayDataset(data, available.astype(np.float32) * 0.5)  # not 0/1: not read as "present"
    np.testing.assert_array_equal(ArrayDataset(data, available.astype(np.float32)).available, available)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 48\)"):
        ArrayDataset(data, available, indices=np.array([0, 48]))
    with pytest.raises(ValueError, match="differ from the model's"):
        trainer().evaluate(ArrayDataset({"lidar": data["lidar"]}))
    with pytest.raises(ValueError, match=r"'imu': dataset samples are \(4,\)"):
        trainer().evaluate(ArrayDataset({"lidar": data["lidar"], "imu": np.zeros((N, 4), np.float32)}))
    data["imu"][7, 1] = np.nan
    with pytest.raises(ValueError, match=r"'imu': non-finite values in rows \[7\]"):
        trainer().evaluate(ArrayDataset(data, available))


def test_a_loss_that_turns_nan_stops_training_before_the_epoch_is_kept():
    data, available = arrays()
    # Finite, so the input checks pass; its square is not.
    data["imu"][np.flatnonzero(available[:, 1])[0]] = 1e20
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, train_metrics, val_metrics):
            seen.append(epoch)

    diverging = trainer()
    initial = {k: v.clone() for k, v in diverging.model.state_dict().items()}
    expected = r"epoch 1: the training loss is (nan|inf).*after epoch 0"
    with pytest.raises(TrainingDiverged, match=expected) as diverged:
        diverging.fit(ArrayDataset(data, available), epochs=2, batch_size=8, callbacks=[Record()],
                      progress=False)
    assert seen == []  # no callback (checkpoint, artifact) saw the broken epoch
    assert diverged.value.history.train == []
    # The object is usable again: the weights and counters of before the broken epoch.
    assert diverging.epoch == 0 and diverging.step == 0
    after = diverging.model.state_dict()
    assert all(torch.equal(initial[k], after[k]) for k in initial)


def test_a_divergence_in_a_later_epoch_keeps_the_finished_epochs_history():
    data, available = arrays()
    dataset = ArrayDataset(data, available)

    class PoisonAfterFirst(Callback):
        def on_epoch_end(self, trainer, epoch, train_metrics, val_metrics):
            dataset.arrays["imu"][np.flatnonzero(available[:, 1])[0]] = 1e20

    with pytest.raises(TrainingDiverged, match="epoch 2") as diverged:
        trainer().fit(dataset, epochs=3, batch_size=8, callbacks=[PoisonAfterFirst()], progress=False)
    assert len(diverged.value.history.train) == 1 and np.isfinite(diverged.value.history.train[0]["loss"])


def test_weights_left_non_finite_by_the_last_step_are_a_divergence():
    # The epoch's mean loss is made before each step, so it reads finite; a NaN in a network that
    # the first rows do not use would not show in their loss either.
    data, available = arrays()
    steps = len(data["imu"]) // 8

    class PoisonLastStep(Callback):
        def on_step_end(self, trainer, step, result):
            if step == steps:
                with torch.no_grad():
                    next(trainer.model.decoders["1"].parameters()).view(-1)[0] = float("nan")  # imu's

    with pytest.raises(TrainingDiverged, match="epoch 1: the weights it ended with are not finite"):
        trainer().fit(ArrayDataset(data, available), epochs=1, batch_size=8, callbacks=[PoisonLastStep()],
                      progress=False)
