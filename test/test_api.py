"""MultimodalVAE: training on arrays, subset encoding, cross-modal decoding, save/load."""

import numpy as np
import pytest
import torch

from m2vae_ros.api import MultimodalVAE, TrainingDiverged
from m2vae_ros.artifact import load_model
from m2vae_ros.spec import ModalitySpec, SpecError, VectorPreprocess

torch.set_num_threads(1)


def two_views(n: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Two noisy linear views of one 2-D latent: each view predicts the other."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    a = z @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(n, 6))
    b = np.tanh(z @ rng.normal(size=(2, 4))) + 0.05 * rng.normal(size=(n, 4))
    return {"a": a.astype(np.float32), "b": b.astype(np.float32)}


def small_vae(**options) -> MultimodalVAE:
    return MultimodalVAE.from_modalities(
        {"a": ("vector", 6), "b": ("vector", 4)},
        latent_dim=2,
        scale=0.3,
        feature_dim=16,
        head_hidden=16,
        **options,
    )


def test_vector_model_trains_and_its_loss_falls():
    everything = two_views(320)
    data = {k: v[:256] for k, v in everything.items()}
    val = {k: v[256:] for k, v in everything.items()}
    vae = small_vae()
    history = vae.fit(data, epochs=12, batch_size=32, lr=3e-3, val=val)
    first, last = history.train[0]["loss"], history.train[-1]["loss"]
    assert last < first - 0.3 * abs(first)
    assert history.val[-1]["elbo"] > history.val[0]["elbo"]
    # the latent of a alone now predicts b better than b's mean does
    mean, std = vae.encode({"a": data["a"]})
    assert mean.shape == std.shape == (256, 2) and (std > 0).all()
    b_from_a = vae.decode(mean, "b")
    baseline = ((data["b"] - data["b"].mean(0)) ** 2).mean()
    assert ((b_from_a - data["b"]) ** 2).mean() < 0.7 * baseline


def test_missing_entries_train_through_the_availability_mask():
    data = two_views(64)
    available = np.ones((64, 2), dtype=bool)
    available[::3, 1] = False
    data["b"][~available[:, 1]] = 0.0
    history = small_vae(objective="jmvae").fit(data, available, epochs=1, batch_size=16)
    assert np.isfinite(history.train[0]["loss"])


def test_save_and_load_round_trip_with_identical_outputs(tmp_path):
    data = two_views(32)
    vae = small_vae(objective="mvae", seed=3)
    vae.fit(data, epochs=1, batch_size=16)
    directory = vae.save(tmp_path / "model", metrics={"note": 1.0})
    again = MultimodalVAE.load(directory)
    assert again.spec == vae.spec
    for subset in (None, "a", ["b"], "b+a"):
        for original, loaded in zip(vae.encode(data, subset), again.encode(data, subset), strict=True):
            np.testing.assert_array_equal(original, loaded)
    z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_array_equal(vae.decode(z, "a"), again.decode(z, "a"))
    metadata = load_model(directory).metadata
    assert metadata["provenance"]["source"] == "m2vae_ros.api" and metadata["metrics"] == {"note": 1.0}


def test_evaluate_scores_per_subset_as_fit_validates_and_a_loaded_model_alike(tmp_path):
    data, val = two_views(64), two_views(32, seed=1)
    vae = small_vae()
    history = vae.fit(data, epochs=2, batch_size=16, val=val)
    scores = vae.evaluate(val, batch_size=16)  # the noise is drawn per batch: fit's batch size
    assert scores == pytest.approx(history.val[-1])
    assert {"elbo/a", "elbo/b", "elbo/a+b"} <= scores.keys()
    loaded = MultimodalVAE.load(vae.save(tmp_path / "model"))  # no training state: its own scorer
    assert loaded.evaluate(val, batch_size=16) == pytest.approx(scores)
    missing_b = np.ones((32, 2), bool)
    missing_b[:, 1] = False
    only_a = loaded.evaluate(val, missing_b)
    assert "elbo/a" in only_a and "elbo/a+b" not in only_a
    with pytest.raises(ValueError, match="no evaluation samples"):
        loaded.evaluate({name: array[:0] for name, array in val.items()})
    with pytest.raises(ValueError, match="marks every modality of every sample missing"):  # returned {}
        loaded.evaluate(val, np.zeros((32, 2), bool))
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):  # was range()'s error
        loaded.evaluate(val, batch_size=0)


def test_from_modalities_builds_every_kind_and_accepts_a_full_spec():
    vae = MultimodalVAE.from_modalities(
        {
            "img": ("image", (1, 12, 10)),
            "scan": ("scan", 24),
            "cloud": ("range_image", (2, 3, 16)),
            "depth": ("depth", (12, 16)),
            "bits": ModalitySpec("bits", "vector", VectorPreprocess(5), likelihood="bernoulli"),
        },
        latent_dim=3,
        feature_dim=8,
        head_hidden=8,
    )
    assert [m.shape for m in vae.spec.modalities] == [(1, 12, 10), (1, 24), (2, 3, 16), (1, 12, 16), (5,)]
    assert vae.spec.modality("bits").likelihood == "bernoulli"
    mean, _ = vae.encode({"scan": np.zeros((2, 1, 24), np.float32)})
    assert vae.decode(mean, "img").shape == (2, 1, 12, 10)
    assert ((vae.decode(mean, "bits") >= 0) & (vae.decode(mean, "bits") <= 1)).all()


def test_same_seed_same_model_and_the_callers_rng_is_untouched():
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    first, second = small_vae(seed=4), small_vae(seed=4)
    assert torch.rand(1).item() == before.item()
    data = two_views(8)
    np.testing.assert_array_equal(first.encode(data)[0], second.encode(data)[0])
    assert not np.array_equal(first.encode(data)[0], small_vae(seed=5).encode(data)[0])


def test_loading_leaves_the_callers_rng_alone(tmp_path):
    small_vae().save(tmp_path / "model")
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    MultimodalVAE.load(tmp_path / "model")
    assert torch.rand(1).item() == before.item()


def test_bad_input_is_refused_with_clear_errors():
    vae = small_vae()
    data = two_views(8)
    with pytest.raises(ValueError, match="no modality arrays given"):
        vae.encode({})
    with pytest.raises(ValueError, match=r"unknown modalities \['c'\]"):
        vae.encode({"c": data["a"]})
    with pytest.raises(ValueError, match=r"'a': expected \[N, \*\(6,\)\]"):
        vae.encode({"a": data["b"]})
    with pytest.raises(ValueError, match=r"needs arrays for \['b'\]"):
        vae.encode({"a": data["a"]}, "a+b")
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        vae.fit({"a": data["a"]}, epochs=1)
    data["a"][3, 2] = np.inf
    with pytest.raises(ValueError, match=r"'a': NaN or infinite values \(mark such rows missing"):
        vae.fit(data, epochs=1)
    with pytest.raises(ValueError, match="'a': NaN or infinite values in rows marked available"):
        vae.fit(data, np.ones((8, 2), bool), epochs=1)
    with pytest.raises(ValueError, match="marks every modality of every sample missing"):  # trained nothing
        vae.fit(data, np.zeros((8, 2), bool), epochs=1)
    with pytest.raises(ValueError, match=r"shape 5\.0 must be an integer"):
        MultimodalVAE.from_modalities({"a": ("vector", 5.0)})
    with pytest.raises(ValueError, match=r"z must be \[N, 2\]"):
        vae.decode(np.zeros((3, 5)), "a")
    with pytest.raises(ValueError, match="does not fit kind 'image'"):
        MultimodalVAE.from_modalities({"img": ("image", (28, 28))})
    data = two_views(8)
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):  # used to train nothing
        vae.fit(data, epochs=1, batch_size=0)
    for epochs in (-1, 1.5):  # 1.5 used to run 2 epochs
        with pytest.raises(ValueError, match=f"must be an integer ≥ 0, got {epochs}"):
            vae.fit(data, epochs=epochs)
    with pytest.raises(ValueError, match="no training samples"):  # used to return an empty history
        vae.fit({name: array[:0] for name, array in data.items()}, epochs=1)
    with pytest.raises(ValueError, match="z holds NaN"):
        vae.decode(np.full((1, 2), np.nan), "a")
    with pytest.raises(ValueError, match="'a': complex values"):  # float32 dropped the imaginary part
        vae.encode({"a": data["a"] + 1j})
    with pytest.raises(ValueError, match=r"modalities \['img'\]: give \(kind, shape\) pairs"):
        MultimodalVAE.from_modalities({"img": ("image", 1, 28, 28)})  # used to be _preprocess's TypeError
    with pytest.raises(ValueError, match="unknown modality 'c'"):  # was a KeyError, unlike encode's
        vae.decode(np.zeros((1, 2)), "c")
    with pytest.raises(ValueError, match="subset must be modality names"):  # a bitmask: a join TypeError
        vae.encode(data, 3)
    for empty in ("", []):  # were "unknown modality ''"
        with pytest.raises(ValueError, match=r"empty subset: name at least one of \['a', 'b'\]"):
            vae.encode(data, empty)
    with pytest.raises(ValueError, match="val_available was given without val"):  # was ignored
        vae.fit(data, epochs=1, val_available=np.ones((8, 2), bool))
    with pytest.raises(ValueError, match=r"NaN or infinite values \(mark such rows missing in `available`\)"):
        vae.encode({"a": np.full((2, 6), np.nan)})
    with pytest.raises(ValueError, match=r"posterior of rows \[0\] is not finite"):  # was NaN, silently
        vae.encode({"a": np.full((1, 6), 1e30)})


def image_and_vector(**options) -> MultimodalVAE:
    return MultimodalVAE.from_modalities({"img": ("image", (3, 8, 8)), "v": ("vector", 4)}, latent_dim=2,
                                         feature_dim=8, head_hidden=8, **options)


def test_bounded_kinds_refuse_values_outside_unit_range_with_the_convention():
    vae = image_and_vector()
    rgb8 = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8)).astype(np.uint8)
    with pytest.raises(ValueError, match=r"'img': values span \[0, 255\], outside \[0, 1\].*by 255"):
        vae.encode({"img": rgb8})
    scans = MultimodalVAE.from_modalities({"s": ("scan", 8)}, feature_dim=8, head_hidden=8)
    with pytest.raises(ValueError, match=r"values span \[0.5, 1.000001\].*ranges divided by range_max"):
        scans.encode({"s": np.full((2, 1, 8), 0.5) + np.eye(1, 8) * 0.500001})  # :g printed "[0.5, 1]"
    bernoulli = MultimodalVAE.from_modalities({"v": ("vector", 3)}, likelihood="bernoulli")
    with pytest.raises(ValueError, match=r"'v': values span .* bernoulli likelihood models probabilities"):
        bernoulli.fit({"v": np.full((4, 3), 3.0, np.float32)}, epochs=1)
    assert vae.encode({"img": rgb8 / 255.0})[0].shape == (6, 2)


def test_a_single_channel_may_be_left_out():
    vae = MultimodalVAE.from_modalities({"s": ("scan", 16), "r": ("range_image", (1, 8, 16))}, latent_dim=2,
                                        feature_dim=8, head_hidden=8)
    scans, ranges = np.random.default_rng(0).random((2, 3, 1, 8, 16))  # was "expected [N, *(1, 16)]"
    with_channel = vae.encode({"s": scans[:, :, 0], "r": ranges})[0]
    np.testing.assert_array_equal(vae.encode({"s": scans[:, 0, 0], "r": ranges[:, 0]})[0], with_channel)
    with pytest.raises(ValueError, match=r"'s': expected \[N, \*\(1, 16\)\], got \[3, 15\]"):
        vae.encode({"s": scans[:, 0, 0, :15]})


def test_arrays_as_researchers_hold_them_are_taken():
    vae = image_and_vector()
    rng = np.random.default_rng(0)
    rgb = rng.random((5, 3, 8, 8))  # float64
    flipped = rgb[:, ::-1]  # BGR → RGB view with a negative stride
    np.testing.assert_allclose(vae.encode({"img": flipped})[0],
                               vae.encode({"img": np.ascontiguousarray(flipped)})[0])
    assert vae.decode(np.zeros((3, 2))[::-1], "v").shape == (3, 4)
    mean, std = vae.encode({"img": rgb[:0]})
    assert mean.shape == std.shape == (0, 2)
    with pytest.raises(ValueError, match="differ in length"):
        vae.encode({"img": rgb, "v": np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r"available must be bool \(or 0/1\) \[5, 2\]"):
        vae.fit({"img": rgb, "v": np.zeros((5, 4))}, np.ones((5, 1), bool), epochs=1)
    with pytest.raises(ValueError, match=r"available must be bool \(or 0/1\) \[5, 2\].*got int64"):
        vae.fit({"img": rgb, "v": np.zeros((5, 4))}, np.full((5, 2), 2), epochs=1)  # not read as "present"
    # Rows marked missing are never read, so NaN is a fine placeholder, and the caller's array is untouched.
    vectors = rng.random((5, 4)).astype(np.float32)
    vectors[1] = np.nan
    available = np.ones((5, 2), bool)
    available[1, 1] = False
    vae.fit({"img": rgb, "v": vectors}, available, epochs=1, batch_size=5)
    assert np.isnan(vectors[1]).all()
    vae.fit({"img": rgb, "v": vectors}, available.astype(int), epochs=1, batch_size=5)  # a 0/1 mask is bool


def test_numpy_scalars_from_a_sweep_build_a_model_that_saves(tmp_path):
    vae = MultimodalVAE.from_modalities({"v": ("vector", np.int64(3))}, latent_dim=np.int64(2),
                                        alpha=np.float64(0.5), scale=np.float32(0.2), feature_dim=8,
                                        head_hidden=8)
    vae.save(tmp_path / "model", metrics={"elbo": np.float32(-3.5), "epochs": np.int64(2)})
    loaded = load_model(tmp_path / "model")
    assert loaded.spec.alpha == 0.5 and loaded.metadata["metrics"] == {"elbo": -3.5, "epochs": 2}


def test_a_second_fit_continues_the_first():
    data = two_views(64)
    once = small_vae()
    straight = once.fit(data, epochs=4, batch_size=16, lr=3e-3)
    twice = small_vae()
    first = twice.fit(data, epochs=2, batch_size=16, lr=3e-3)
    second = twice.fit(data, epochs=2, batch_size=16, lr=3e-3)
    losses = [h["loss"] for h in first.train + second.train]
    assert losses == pytest.approx([h["loss"] for h in straight.train])
    with pytest.raises(ValueError, match="so seed must stay as there"):
        twice.fit(data, epochs=1, lr=3e-3, seed=1)
    weights = {name: value.clone() for name, value in twice.model.state_dict().items()}
    for lr in (-1, float("nan"), "1e-3", True):  # -1 used to train: gradient ascent to 1e24
        with pytest.raises(ValueError, match=f"lr must be a positive finite number, got {lr!r}"):
            twice.fit(data, epochs=1, lr=lr)
    assert all(torch.equal(weights[name], value) for name, value in twice.model.state_dict().items())
    twice.fit(data, epochs=1, lr=1e-4)  # a new learning rate applies from this call on
    assert [group["lr"] for group in twice._trainer.optimizer.param_groups] == [1e-4]


def test_a_diverged_fit_can_go_on_with_a_lower_learning_rate():
    vae = small_vae()
    data = two_views(32)
    poisoned = {name: array.copy() for name, array in data.items()}
    poisoned["a"][0] = 1e20  # finite, so it passes the checks; its square is not
    with pytest.raises(TrainingDiverged) as diverged:
        vae.fit(poisoned, epochs=2, batch_size=16)
    assert diverged.value.history.train == []  # the first epoch already diverged
    history = vae.fit(data, epochs=1, batch_size=16, lr=1e-4)
    assert np.isfinite(history.train[0]["loss"])


def test_a_refused_first_fit_leaves_seed_and_device_open():
    vae, data = small_vae(), two_views(8)
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        vae.fit(data, epochs=1, batch_size=0, seed=1)
    vae.fit(data, epochs=1, seed=2)  # used to be refused: "seed must stay"


def test_a_modality_no_sample_has_is_refused_and_an_untrained_subset_warned():
    vae, data = small_vae(), two_views(8)
    only_a = np.zeros((8, 2), bool)
    only_a[:, 0] = True
    with pytest.raises(ValueError, match=r"marks \['b'\] missing in every sample"):
        vae.fit(data, only_a, epochs=1)
    unpaired = np.zeros((8, 2), bool)
    unpaired[:4, 0] = unpaired[4:, 1] = True
    with pytest.warns(RuntimeWarning, match=r"all modalities of \['a\+b'\]"):
        vae.fit(data, unpaired, epochs=1)


def test_spec_and_kind_mistakes_name_the_modality():
    with pytest.raises(ValueError, match="name must be its key: 'cam' → 'camera'"):
        MultimodalVAE.from_modalities({"cam": ModalitySpec("camera", "vector", VectorPreprocess(3))})
    with pytest.raises(ValueError, match="unknown kind 'lidar'"):
        MultimodalVAE.from_modalities({"x": ("lidar", 3)})


@pytest.mark.parametrize(("kind", "shape", "fits"), [
    ("image", (1, 8, 8), True), ("image", (1, 7, 64), False), ("scan", 5, True), ("scan", 4, False),
    ("range_image", (1, 16, 4), False), ("depth", (8, 8), True), ("depth", (1, 8, 7), False),
])
def test_inputs_too_small_for_the_extractor_are_refused_when_the_model_is_built(kind, shape, fits):
    if fits:
        vae = MultimodalVAE.from_modalities({"x": (kind, shape)}, latent_dim=2, feature_dim=8, head_hidden=8)
        dims = (shape,) if isinstance(shape, int) else shape
        assert vae.encode({"x": np.zeros((2, *((1,) if kind == "scan" else ()), *dims))})[0].shape == (2, 2)
        return
    with pytest.raises(SpecError, match=r"'x'.*too small for 3 stride-2 layers"):
        MultimodalVAE.from_modalities({"x": (kind, shape)})


def test_encode_reads_only_the_subsets_arrays_so_a_nan_placeholder_elsewhere_is_fine():
    vae = small_vae()
    data = two_views(8)
    expected = vae.encode({"a": data["a"]}, "a")
    data["b"][:] = np.nan  # the whole dict passed, a placeholder where b is missing
    np.testing.assert_array_equal(vae.encode(data, "a")[0], expected[0])
    with pytest.raises(ValueError, match="'b': NaN or infinite values"):
        vae.encode(data, "a+b")


def test_encode_with_an_availability_mask_gives_each_row_the_posterior_of_what_it_has():
    vae, data = small_vae(), two_views(12)
    vae.fit(data, epochs=1, batch_size=4)
    available = np.ones((12, 2), bool)
    available[::3, 1] = False  # b missing: NaN placeholders, as fit allows
    available[1::3, 0] = False
    data["b"][::3] = np.nan
    mean, std = vae.encode(data, available=available)
    for subset, rows in (("a", np.s_[::3]), ("b", np.s_[1::3]), ("a+b", np.s_[2::3])):
        alone = vae.encode({name: array[rows] for name, array in data.items()}, subset)
        np.testing.assert_allclose(mean[rows], alone[0], rtol=1e-6)
        np.testing.assert_allclose(std[rows], alone[1], rtol=1e-6)
    has_a = available[:, 0]  # the subset bounds what a row may use: a+b rows give q(z|a) here
    only_a = vae.encode({name: array[has_a] for name, array in data.items()}, "a", available=available[has_a])
    np.testing.assert_allclose(only_a[0], vae.encode({"a": data["a"][has_a]}, "a")[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"rows \[0, 3, 6, 9\] have none of \['b'\] available"):
        vae.encode(data, "b", available=available)


def test_decoding_an_empty_batch_gives_an_empty_array_of_every_kind():
    vae = MultimodalVAE.from_modalities({"img": ("image", (1, 8, 8)), "scan": ("scan", 16),
                                         "cloud": ("range_image", (2, 4, 16))}, latent_dim=3)
    empty, _ = vae.encode({"img": np.zeros((0, 1, 8, 8), "f4")}, "img")
    for name, shape in (("img", (1, 8, 8)), ("scan", (1, 16)), ("cloud", (2, 4, 16))):
        assert vae.decode(empty, name).shape == (0, *shape)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where CUDA is absent")
def test_devices_are_named_as_for_the_node_and_absent_cuda_falls_back_with_a_warning(tmp_path):
    data = two_views(8)
    vae = small_vae()
    vae.fit(data, epochs=1, device="auto")
    assert next(vae.model.parameters()).device.type == "cpu"
    with pytest.warns(RuntimeWarning, match="CUDA is unavailable; running on cpu"):
        vae.fit(data, epochs=1, device="cuda")  # the same device as the first call: cpu
    vae.save(tmp_path / "model")
    with pytest.warns(RuntimeWarning, match="CUDA is unavailable"):
        MultimodalVAE.load(tmp_path / "model", device="cuda:0")
    with pytest.raises(ValueError, match=r"cuda\[:<index>\] or another torch device, got 'gpu'"):
        MultimodalVAE.load(tmp_path / "model", device="gpu")


def test_weights_whose_loss_is_no_longer_finite_after_the_last_steps_are_a_divergence_too():
    # The epoch's mean loss, made before the last steps, reads finite (about 288 here); the
    # loss of the weights after them does not, and evaluate, encode and save would carry them on.
    vae = MultimodalVAE.from_modalities({"a": ("vector", 8), "b": ("vector", 8)}, latent_dim=2)
    rng = np.random.default_rng(0)
    data = {"a": rng.random((64, 8)).astype(np.float32), "b": rng.random((64, 8)).astype(np.float32)}
    initial = {name: value.clone() for name, value in vae.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="epoch 1: the loss of the weights it ended with is nan"):
        vae.fit(data, epochs=1, lr=1e6)
    assert all(torch.equal(initial[name], value) for name, value in vae.model.state_dict().items())
