"""M2VAE networks: shapes for every kind, likelihoods, numerics and determinism."""

import math

import pytest
import torch

from m2vae_ros.likelihoods import Likelihood
from m2vae_ros.model import LOGVAR_MAX, LOGVAR_MIN, M2VAE
from m2vae_ros.networks import CircularUpsample
from m2vae_ros.objectives import loss
from m2vae_ros.spec import (
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
    VectorPreprocess,
)

torch.set_num_threads(1)


def small_spec(objective: str = "m2vae", image: ImagePreprocess | None = None) -> ModelSpec:
    modalities = (
        ModalitySpec("camera", "image", image or ImagePreprocess(16, 16, 3), weight=0.05, hidden=(4, 8)),
        ModalitySpec("lidar", "scan", ScanPreprocess(beams=36), hidden=(4, 8)),
        ModalitySpec("cloud", "range_image", RangeImagePreprocess(rings=3, bins=24), hidden=(4,)),
        ModalitySpec("imu", "vector", VectorPreprocess(6), hidden=(8,)),
    )
    return ModelSpec(modalities, latent_dim=5, objective=objective, feature_dim=8, head_hidden=8)


def model_for(spec: ModelSpec, seed: int = 0) -> M2VAE:
    torch.manual_seed(seed)
    return M2VAE(spec)


def inputs(spec: ModelSpec, size: int = 3, fill: float | None = None) -> dict[str, torch.Tensor]:
    if fill is None:
        return {m.name: torch.rand(size, *m.shape) for m in spec.modalities}
    return {m.name: torch.full((size, *m.shape), fill) for m in spec.modalities}


@pytest.mark.parametrize(
    "image",
    [
        ImagePreprocess(64, 64, 3),
        ImagePreprocess(32, 32, 1),
        ImagePreprocess(28, 28, 1),
        ImagePreprocess(13, 7, 2),
    ],
)
def test_images_of_any_size_decode_to_their_exact_shape(image):
    spec = small_spec(image=image)
    model = model_for(spec)
    mean, logvar = model.encode(inputs(spec, 2), 0b0001)
    assert mean.shape == logvar.shape == (2, 5)
    assert model.decode(mean, "camera").shape == (2, image.channels, image.height, image.width)


def test_every_kind_decodes_in_tensor_convention_and_range():
    spec = small_spec()
    model = model_for(spec)
    z = torch.randn(4, 5) * 3
    for m in spec.modalities:
        out = model.decode(z, m.name)
        assert out.shape == (4, *m.shape)
        if m.kind != "vector":
            assert out.min() >= 0 and out.max() <= 1


def test_one_head_per_subset_or_only_singletons_for_mvae():
    assert len(model_for(small_spec("m2vae")).heads) == 15
    assert len(model_for(small_spec("jmvae")).heads) == 15
    assert sorted(model_for(small_spec("mvae")).heads, key=int) == ["1", "2", "4", "8"]


def test_encode_reads_only_the_subset_and_matches_encode_subsets():
    spec = small_spec()
    model = model_for(spec)
    x = inputs(spec)
    only_lidar_imu = {"lidar": x["lidar"], "imu": x["imu"]}
    mean, logvar = model.encode(only_lidar_imu, 0b1010)
    together = model.encode_subsets(x, [0b1010, 0b0001, 0b1111])
    torch.testing.assert_close(together[0b1010][0], mean)
    torch.testing.assert_close(together[0b1010][1], logvar)
    with pytest.raises(KeyError, match="camera"):
        model.encode(only_lidar_imu, 0b0001)
    with pytest.raises(ValueError, match="subset 16"):
        model.encode(x, 16)
    with pytest.raises(ValueError, match="imu"):
        model.encode({"imu": torch.zeros(2, 7)}, 0b1000)


@pytest.mark.parametrize("fill", [0.0, 1.0, 1e6, -1e6])
@pytest.mark.parametrize("objective", ["m2vae", "jmvae", "mvae"])
def test_extreme_inputs_stay_finite(fill, objective):
    spec = small_spec(objective)
    model = model_for(spec)
    x = inputs(spec, fill=fill)
    for subset in (0b0001, 0b0110, 0b1111):
        mean, logvar = model.encode(x, subset)
        assert torch.isfinite(mean).all() and torch.isfinite(logvar).all()
        assert logvar.min() >= LOGVAR_MIN and logvar.max() <= LOGVAR_MAX
    result = loss(model, x, torch.ones(3, 4, dtype=torch.bool))
    result.total.backward()
    assert torch.isfinite(result.total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_product_of_confident_experts_is_exact_and_passes_gradients():
    """Experts at the heads' bound: the product goes below it, as the Gaussian product does."""
    logvars = torch.full((2, 4), LOGVAR_MIN, requires_grad=True)
    experts = [(torch.full((2, 1), float(i)), logvars[:, i : i + 1]) for i in range(4)]
    mean, logvar = M2VAE._product_of_experts(experts)
    expected = -math.log(1 + 4 * math.exp(-LOGVAR_MIN))
    torch.testing.assert_close(logvar, torch.full((2, 1), expected))
    assert torch.allclose(mean, torch.full((2, 1), 1.5), atol=1e-3)  # equal precisions: ≈ the average
    logvar.sum().backward()
    assert (logvars.grad != 0).all()


def test_same_seed_same_model_and_loss():
    spec = small_spec()
    x = inputs(spec)
    available = torch.ones(3, 4, dtype=torch.bool)
    values = []
    for _ in range(2):
        model = model_for(spec, seed=7)
        torch.manual_seed(1)
        values.append(loss(model, x, available).total.item())
    assert values[0] == values[1]
    torch.manual_seed(1)
    assert loss(model_for(spec, seed=8), x, available).total.item() != values[0]


def likelihood(name: str, kind: str = "vector", scale: float = 0.3, weight: float = 2.0) -> Likelihood:
    preprocess = VectorPreprocess(4) if kind == "vector" else ScanPreprocess(beams=4)
    return Likelihood(ModalitySpec("m", kind, preprocess, likelihood=name, scale=scale, weight=weight))


def test_likelihoods_match_torch_distributions():
    raw = torch.randn(3, 4)
    x = torch.rand(3, 4)
    cases = {
        "gaussian": torch.distributions.Normal(raw, 0.3),
        "gaussian_learned": torch.distributions.Normal(raw, 0.3),
        "laplace": torch.distributions.Laplace(raw, 0.3),
        "bernoulli": torch.distributions.Bernoulli(logits=raw, validate_args=False),
    }
    for name, reference in cases.items():
        expected = 2.0 * reference.log_prob(x).sum(1)
        torch.testing.assert_close(likelihood(name).log_prob(raw, x), expected)


def test_bounded_kinds_use_a_sigmoid_mean_and_the_learned_scale_trains():
    raw = torch.randn(2, 1, 4)
    x = torch.rand(2, 1, 4)
    scan = likelihood("gaussian", kind="scan")
    expected = 2.0 * torch.distributions.Normal(torch.sigmoid(raw), 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(scan.log_prob(raw, x), expected)
    learned = likelihood("gaussian_learned", scale=0.5)
    assert learned.log_scale.item() == pytest.approx(math.log(0.5))
    learned.log_prob(torch.zeros(2, 4), torch.ones(2, 4)).sum().backward()
    assert learned.log_scale.grad.item() != 0


def test_circular_upsample_wraps_around_the_ring():
    torch.manual_seed(0)
    upsample = CircularUpsample(3, 2)
    x = torch.randn(2, 3, 10)
    y = upsample(x)
    # the definition written out: input cell i feeds output cells 2i − 1 … 2i + 2 (mod 2L)
    expected = upsample.conv.bias[None, :, None].expand(2, 2, 20).clone()
    for i in range(10):
        for k in range(4):
            expected[:, :, (2 * i + k - 1) % 20] += x[:, :, i] @ upsample.conv.weight[:, :, k]
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(upsample(torch.roll(x, 1, -1)), torch.roll(y, 2, -1))
