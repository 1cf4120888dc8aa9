"""Artifact round trip and every refusal: missing, malformed, corrupted, mismatched."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save_file

import m2vae_ros
from m2vae_ros import artifact
from m2vae_ros.artifact import LAYOUT_KEY, SPEC_KEY, ArtifactError, load_model, save_model
from m2vae_ros.model import M2VAE
from m2vae_ros.spec import ImagePreprocess, ModalitySpec, ModelSpec, ScanPreprocess, VectorPreprocess

torch.set_num_threads(1)


def tiny_spec(latent_dim: int = 4) -> ModelSpec:
    return ModelSpec(
        (
            ModalitySpec(
                "camera",
                "image",
                ImagePreprocess(8, 8, 3),
                topic="/camera/image_raw",
                msg_type="sensor_msgs/msg/Image",
                weight=0.03,
                hidden=(4,),
            ),
            ModalitySpec("lidar", "scan", ScanPreprocess(beams=16), topic="/scan", hidden=(4,)),
        ),
        latent_dim=latent_dim,
        feature_dim=8,
        head_hidden=8,
        alpha=0.5,
    )


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = M2VAE(tiny_spec())
    directory = save_model(
        model, tmp_path / "model", provenance={"dataset": "runs/x"}, metrics={"val_elbo": -12.5}
    )
    return model, directory


def test_round_trip_gives_identical_outputs_and_full_metadata(saved):
    model, directory = saved
    loaded = load_model(directory)
    assert not loaded.model.training
    assert loaded.spec == model.spec
    x = {"camera": torch.rand(2, 3, 8, 8), "lidar": torch.rand(2, 1, 16)}
    model.eval()
    for subset in (1, 2, 3):
        expected, got = model.encode(x, subset), loaded.model.encode(x, subset)
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    z = torch.randn(2, 4)
    assert torch.equal(model.decode(z, "camera"), loaded.model.decode(z, "camera"))
    meta = loaded.metadata
    assert meta["package_version"] == m2vae_ros.__version__
    assert meta["provenance"] == {"dataset": "runs/x"} and meta["metrics"] == {"val_elbo": -12.5}
    assert meta["spec"]["modalities"][0]["topic"] == "/camera/image_raw"
    assert meta["spec"]["alpha"] == 0.5
    weights = (directory / "model.safetensors").read_bytes()
    assert meta["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    with safe_open(directory / "model.safetensors", "pt") as stored:  # several keys: a random order,
        assert list(stored.metadata()) == [SPEC_KEY]                   # so a random sha256, per process
    assert sorted(p.name for p in directory.iterdir()) == ["model.safetensors", "model.yaml"]


def edit_yaml(directory, change):
    path = directory / "model.yaml"
    meta = yaml.safe_load(path.read_text())
    change(meta)
    path.write_text(yaml.safe_dump(meta))


def rewrite_weights(directory, tensors):
    """Replace the weights and re-hash them, so only the tensor check can object."""
    save_file(tensors, directory / "model.safetensors")
    digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    edit_yaml(directory, lambda meta: meta["weights"].update(sha256=digest))


def test_missing_directory_and_files_are_refused(saved, tmp_path):
    _, directory = saved
    with pytest.raises(ArtifactError, match="no such model directory"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ArtifactError, match="is a file; give the model directory that holds it"):  # was
        load_model(directory / "model.safetensors")  # "no such model directory" for a file that exists
    (directory / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"model\.safetensors: missing"):
        load_model(directory)
    (directory / "model.yaml").unlink()
    with pytest.raises(ArtifactError, match=r"model\.yaml: missing"):
        load_model(directory)


def test_invalid_yaml_is_refused(saved):
    _, directory = saved
    (directory / "model.yaml").write_text("spec: [unclosed\n")
    with pytest.raises(ArtifactError, match=r"model\.yaml: invalid YAML"):
        load_model(directory)


def test_unknown_format_version_is_refused(saved):
    _, directory = saved
    edit_yaml(directory, lambda meta: meta.update(format_version=99))
    with pytest.raises(ArtifactError, match="format_version 99, but this m2vae_ros reads version 2"):
        load_model(directory)


def test_invalid_spec_is_refused(saved):
    _, directory = saved
    edit_yaml(directory, lambda meta: meta["spec"]["modalities"][0].update(kind="sonar"))
    with pytest.raises(ArtifactError, match=r"invalid model spec.*sonar"):
        load_model(directory)


@pytest.mark.parametrize("change", [
    lambda meta: meta["spec"]["modalities"].__setitem__(0, "camera"),  # dict("camera"): ValueError
    lambda meta: meta["spec"]["modalities"][1]["preprocess"].update(beams="16"),  # TypeError in M2VAE
    lambda meta: meta["spec"]["modalities"][1].update(hidden=[-3]),  # RuntimeError in torch
])
def test_hand_edited_spec_that_breaks_the_model_is_refused(saved, change):
    _, directory = saved
    edit_yaml(directory, change)
    with pytest.raises(ArtifactError, match=r"model\.yaml: ") as err:
        load_model(directory)
    assert "\n" not in str(err.value)


def test_corrupted_or_torn_weights_are_refused(saved):
    _, directory = saved
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"sha256 .* does not match"):
        load_model(directory)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArtifactError, match="partially written"):
        load_model(directory)


def test_missing_extra_and_misshaped_tensors_are_refused(saved):
    model, directory = saved
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    dropped = dict(tensors)
    del dropped["heads.3.0.weight"]
    rewrite_weights(directory, dropped)
    with pytest.raises(ArtifactError, match=r"missing tensors heads\.3\.0\.weight"):
        load_model(directory)
    rewrite_weights(directory, {**tensors, "heads.7.0.weight": torch.zeros(2, 2)})
    with pytest.raises(ArtifactError, match=r"unexpected tensors heads\.7\.0\.weight"):
        load_model(directory)
    # weights of a latent_dim=6 model do not fit a spec that says 4
    other = {k: v.clone() for k, v in M2VAE(tiny_spec(latent_dim=6)).state_dict().items()}
    rewrite_weights(directory, other)
    with pytest.raises(ArtifactError, match=r"mis-shaped tensors [^;]* and \d+ more"):  # many: the first 3
        load_model(directory)


def test_retyped_or_non_finite_weights_are_refused(saved):
    model, directory = saved
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    rewrite_weights(directory, {**tensors, "heads.3.0.weight": tensors["heads.3.0.weight"].to(torch.int8)})
    with pytest.raises(ArtifactError, match=r"wrong type heads\.3\.0\.weight torch\.int8 != torch\.float32"):
        load_model(directory)
    poisoned = tensors["heads.3.0.weight"].clone()
    poisoned[0, 0] = float("nan")
    rewrite_weights(directory, {**tensors, "heads.3.0.weight": poisoned})
    with pytest.raises(ArtifactError, match=r"NaN or infinite values in heads\.3\.0\.weight"):
        load_model(directory)


def test_a_model_with_nan_weights_is_not_saved(saved, tmp_path):
    model, _ = saved
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(ArtifactError, match="not saving a model with NaN or infinite weights"):
        save_model(model, tmp_path / "nan_model")
    assert not (tmp_path / "nan_model" / "model.safetensors").exists()


def test_saving_onto_a_file_and_a_renamed_weights_file_are_refused(saved, tmp_path):
    model, directory = saved
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ArtifactError, match="a_file: is a file; an artifact is a directory"):  # was Errno 17
        save_model(model, tmp_path / "a_file")
    assert (tmp_path / "a_file").read_text() == "mine"
    edit_yaml(directory, lambda meta: meta["weights"].update(file="other.safetensors"))  # was never read
    with pytest.raises(ArtifactError, match=r"weights\.file is 'other\.safetensors'; an artifact's"):
        load_model(directory)


def test_files_get_the_umask_permissions_not_owner_only(saved, tmp_path):
    # mkstemp's 0600 would keep a node running as another user from reading the model.
    model, _ = saved
    previous = os.umask(0o027)
    try:
        directory = save_model(model, tmp_path / "shared")
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "model.yaml"):
        assert (directory / name).stat().st_mode & 0o777 == 0o640, name


def test_numpy_numbers_in_a_spec_are_saved_as_plain_yaml(tmp_path):
    spec = ModelSpec((ModalitySpec("imu", "vector", VectorPreprocess(np.int64(3)), hidden=(8,)),),
                     latent_dim=2, feature_dim=8, head_hidden=8, beta=np.float64(0.5))
    torch.manual_seed(0)
    directory = save_model(M2VAE(spec), tmp_path / "model")
    assert load_model(directory).spec.beta == 0.5


def test_saving_again_replaces_both_files_without_leftovers(saved):
    model, directory = saved
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_model(model, directory)
    loaded = load_model(directory)
    first = next(iter(model.state_dict()))
    assert torch.equal(loaded.model.state_dict()[first], model.state_dict()[first])
    assert sorted(p.name for p in directory.iterdir()) == ["model.safetensors", "model.yaml"]



@pytest.mark.parametrize("yaml_written", [False, True])
def test_a_save_killed_at_its_model_yaml_leaves_a_loadable_model_old_or_new(saved, monkeypatch, yaml_written):
    model, directory = saved
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    _dying_at_model_yaml(monkeypatch, after_writing=yaml_written)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, directory)
    monkeypatch.undo()
    loaded = load_model(directory).model.state_dict()
    expected = model.state_dict() if yaml_written else old  # model.yaml is the commit
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    save_model(model, directory)  # the next save cleans up after the killed one
    assert sorted(p.name for p in directory.iterdir()) == ["model.safetensors", "model.yaml"]


def _dying_at_model_yaml(monkeypatch, *, after_writing: bool) -> None:
    """save_model's process dies at model.yaml, before or just after writing it."""
    real_write = artifact.write_atomic

    def write_then_die(path, data):
        if path.name == "model.yaml":
            if after_writing:
                real_write(path, data)
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(artifact, "write_atomic", write_then_die)


def test_killed_saves_in_a_row_or_into_an_empty_directory_keep_the_committed_model(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = M2VAE(tiny_spec())
    _dying_at_model_yaml(monkeypatch, after_writing=True)
    with pytest.raises(KeyboardInterrupt):  # the first save ever: only model.yaml and the incoming weights
        save_model(model, tmp_path / "model")
    monkeypatch.undo()
    committed = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_model(tmp_path / "model").model.state_dict()
    assert all(torch.equal(loaded[k], committed[k]) for k in committed)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    _dying_at_model_yaml(monkeypatch, after_writing=False)
    with pytest.raises(KeyboardInterrupt):  # a second save dies before its commit
        save_model(model, tmp_path / "model")
    monkeypatch.undo()
    loaded = load_model(tmp_path / "model").model.state_dict()
    assert all(torch.equal(loaded[k], committed[k]) for k in committed)


def two_vector_sensors(tmp_path):
    spec = ModelSpec((ModalitySpec("left", "vector", VectorPreprocess(3), topic="/left", hidden=(8,)),
                      ModalitySpec("right", "vector", VectorPreprocess(3), topic="/right", hidden=(8,))),
                     latent_dim=2, feature_dim=8, head_hidden=8)
    torch.manual_seed(0)
    return save_model(M2VAE(spec), tmp_path / "model")


def test_swapping_two_same_shaped_sensors_in_model_yaml_is_refused_but_a_topic_edit_is_not(tmp_path):
    # The weights' own metadata records which network belongs to which sensor.
    directory = two_vector_sensors(tmp_path)
    edit_yaml(directory, lambda meta: meta["spec"]["modalities"][0].update(topic="/front_left"))
    edit_yaml(directory, lambda meta: meta["spec"]["modalities"][1].update(msg_type="sensor_msgs/msg/Imu"))
    left, right = load_model(directory).spec.modalities
    assert (left.topic, right.msg_type) == ("/front_left", "sensor_msgs/msg/Imu")
    edit_yaml(directory, lambda meta: meta["spec"]["modalities"].reverse())
    with pytest.raises(ArtifactError, match=r"not the one the weights were trained with: "
                                            r"spec\.modalities\[0\]\.name: 'left' in the weights"):
        load_model(directory)


@pytest.mark.parametrize(("change", "named"), [
    (lambda spec: spec["modalities"][1].update(likelihood="bernoulli"), "spec.modalities[1].likelihood"),
    (lambda spec: spec["modalities"][0].update(weight=0.3), "spec.modalities[0].weight"),
    (lambda spec: spec["modalities"][1]["preprocess"].update(range_max=30.0),
     "spec.modalities[1].preprocess.range_max: 8.0 in the weights, 30.0 in model.yaml"),
    (lambda spec: spec.update(objective="jmvae"), "spec.objective"),
])
def test_a_hand_edit_that_changes_what_the_weights_compute_is_refused(saved, change, named):
    # Shapes stay the same, so the tensors alone would load: the node would scale its
    # sensors or read its decoders other than training did.
    _, directory = saved
    edit_yaml(directory, lambda meta: change(meta["spec"]))
    with pytest.raises(ArtifactError, match="not the one the weights were trained with") as err:
        load_model(directory)
    assert named in str(err.value)


def test_an_artifact_saved_before_the_spec_copy_still_refuses_a_swap(tmp_path):
    directory = two_vector_sensors(tmp_path)
    tensors = load_safetensors_file(directory / "model.safetensors")
    save_file(tensors, directory / "model.safetensors", metadata={LAYOUT_KEY: '[["left", "vector", [3]], '
                                                                               '["right", "vector", [3]]]'})
    digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    edit_yaml(directory, lambda meta: meta["weights"].update(sha256=digest))
    assert load_model(directory).spec.names == ("left", "right")
    edit_yaml(directory, lambda meta: meta["spec"]["modalities"].reverse())
    with pytest.raises(ArtifactError, match="are not the ones the weights were trained for"):
        load_model(directory)


def test_the_weights_spec_copy_is_read_as_a_spec_so_new_defaults_and_notes_do_not_refuse(tmp_path):
    # A field a later release adds with its default must not refuse every artifact saved before;
    # `extra` holds notes (a NaN among them compared unequal to itself).
    spec = ModelSpec((ModalitySpec("imu", "vector", VectorPreprocess(3), hidden=(np.int64(8),)),),
                     latent_dim=2, feature_dim=8, head_hidden=8, extra={"note": float("nan")})
    torch.manual_seed(0)
    directory = save_model(M2VAE(spec), tmp_path / "model")
    assert load_model(directory).spec.modalities[0].hidden == (8,)
    tensors = load_safetensors_file(directory / "model.safetensors")
    with safe_open(directory / "model.safetensors", "pt") as weights:
        metadata = weights.metadata()
    copy = json.loads(metadata[SPEC_KEY])
    del copy["objective"], copy["modalities"][0]["likelihood"]  # both at their defaults
    save_file(tensors, directory / "model.safetensors", metadata={**metadata, SPEC_KEY: json.dumps(copy)})
    digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    edit_yaml(directory, lambda meta: meta["weights"].update(sha256=digest))
    edit_yaml(directory, lambda meta: meta["spec"]["extra"].update(note="retrained on Tuesday"))
    assert load_model(directory).spec.extra == {"note": "retrained on Tuesday"}
