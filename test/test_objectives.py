"""The M²VAE objective against hand-written formulas, plus the baselines and missing data."""

import itertools
import math

import pytest
import torch

from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import kl_normal, loss, subset_loss
from m2vae_ros.spec import (
    ImagePreprocess,
    ModalitySpec,
    ModelSpec,
    RangeImagePreprocess,
    ScanPreprocess,
    VectorPreprocess,
)
from m2vae_ros.subsets import all_subsets, children, members, subset_name

torch.set_num_threads(1)
ALPHA, BETA, SCALE = 0.7, 1.3, 0.5


def vector_model(n: int, objective: str = "m2vae", seed: int = 0) -> M2VAE:
    modalities = tuple(
        ModalitySpec(f"m{i}", "vector", VectorPreprocess(3 + i), scale=SCALE, weight=1 + i / 2, hidden=(16,))
        for i in range(n)
    )
    spec = ModelSpec(
        modalities, latent_dim=4, objective=objective, alpha=ALPHA, beta=BETA, feature_dim=8, head_hidden=8
    )
    torch.manual_seed(seed)
    return M2VAE(spec)


def batch(model: M2VAE, size: int = 5) -> dict[str, torch.Tensor]:
    return {m.name: torch.rand(size, *m.shape) for m in model.spec.modalities}


def all_available(model: M2VAE, size: int = 5) -> torch.Tensor:
    return torch.ones(size, len(model.names), dtype=torch.bool)


# Hand-written formulas, independent of objectives.py: Gaussian log-density and KLs
# written out elementwise, z = posterior mean (the deterministic mode).
def hand_log_gaussian(x, mean, scale):
    return (-0.5 * ((x - mean) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)).sum(1)


def hand_kl(mq, lq, mp, lp):
    return 0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1).sum(1)


def hand_reconstruction(model, x, subset):
    mean, _ = model.encode(x, subset)
    total = 0
    for i in members(subset):
        m = model.spec.modalities[i]
        total = total + m.weight * hand_log_gaussian(x[m.name], model.decode(mean, m.name), SCALE)
    return total


def hand_elbo(model, x, subset):
    mean, logvar = model.encode(x, subset)
    zeros = torch.zeros_like(mean)
    return hand_reconstruction(model, x, subset) - BETA * hand_kl(mean, logvar, zeros, zeros)


def hand_lvi(model, x, subset):
    q = model.encode(x, subset)
    value = hand_elbo(model, x, subset)
    for child in children(subset):
        value = value - ALPHA * hand_kl(*q, *model.encode(x, child))
    return value


def objective(model, x):
    return loss(model, x, all_available(model, next(iter(x.values())).shape[0]), sample=False)


def test_one_modality_is_the_plain_vae_elbo():
    model = vector_model(1)
    x = batch(model)
    result = objective(model, x)
    torch.testing.assert_close(result.per_sample, hand_elbo(model, x, 1))
    torch.testing.assert_close(result.total, -hand_elbo(model, x, 1).mean())


def test_two_modalities_follow_seed_eq_75():
    model = vector_model(2)
    x = batch(model)
    expected = 0.5 * (hand_elbo(model, x, 0b01) + hand_lvi(model, x, 0b11) + hand_elbo(model, x, 0b10))
    torch.testing.assert_close(objective(model, x).per_sample, expected)


def test_three_modalities_expand_to_the_exact_recursion_weights():
    model = vector_model(3)
    x = batch(model)
    triple = hand_lvi(model, x, 0b111)
    pairs = sum(hand_lvi(model, x, s) for s in (0b011, 0b101, 0b110))
    singles = sum(hand_elbo(model, x, s) for s in (0b001, 0b010, 0b100))
    expected = triple / 3 + pairs / 6 + singles / 3
    torch.testing.assert_close(objective(model, x).per_sample, expected)


@pytest.mark.parametrize(("n", "count"), [(2, 2), (3, 9), (4, 28)])
def test_kl_terms_are_exactly_the_one_smaller_subsets(n, count):
    model = vector_model(n)
    names = model.names
    used = {key for key in objective(model, batch(model)).terms if key.startswith("kl/")}
    # Written out from the definition (A ⊂ B, |A| = |B| − 1), not from the code under test.
    expected = {
        f"kl/{'+'.join(superset)}|{'+'.join(subset)}"
        for size in range(2, n + 1)
        for superset in itertools.combinations(names, size)
        for subset in itertools.combinations(superset, size - 1)
    }
    assert len(used) == count
    assert used == expected


def test_closed_form_kl_matches_monte_carlo():
    generator = torch.Generator().manual_seed(1)
    mq, mp = torch.randn(1, 3, generator=generator), torch.randn(1, 3, generator=generator)
    lq, lp = torch.randn(1, 3, generator=generator) * 0.5, torch.randn(1, 3, generator=generator) * 0.5
    q = torch.distributions.Normal(mq, (0.5 * lq).exp())
    p = torch.distributions.Normal(mp, (0.5 * lp).exp())
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    closed = kl_normal(mq, lq, mp, lp)
    assert closed.item() > 0.1
    assert abs(closed.item() - monte_carlo.item()) < 0.02 * closed.item() + 0.01


@pytest.mark.parametrize("kind", ["m2vae", "jmvae"])
def test_gradients_reach_every_subset_head(kind):
    model = vector_model(3, kind)
    loss(model, batch(model), all_available(model)).total.backward()
    assert set(model.heads) == {str(s) for s in all_subsets(3)}
    for key, head in model.heads.items():
        grad = sum(p.grad.abs().sum() for p in head.parameters())
        assert grad > 0, f"head {key} received no gradient"


def test_a_sample_missing_b_scores_the_single_modality_elbo_of_a():
    model = vector_model(2)
    x = batch(model, 4)
    available = torch.tensor([[True, True], [True, False], [False, False], [False, True]])
    result = loss(model, x, available, sample=False)
    alone_a = subset_loss(model, x, 0b01, sample=False).per_sample
    alone_b = subset_loss(model, x, 0b10, sample=False).per_sample
    torch.testing.assert_close(result.per_sample[1], alone_a[1])
    torch.testing.assert_close(result.per_sample[1], hand_elbo(model, x, 0b01)[1])
    torch.testing.assert_close(result.per_sample[3], alone_b[3])
    assert result.per_sample[2].item() == 0.0
    torch.testing.assert_close(result.total, -result.per_sample[[0, 1, 3]].mean())


def hand_l(model, x, subset):
    """L(M) by the recursion as written, every child recomputed (no memo)."""
    size = len(members(subset))
    if size == 1:
        return hand_elbo(model, x, subset)
    kids = [sum(1 << i for i in c) for c in itertools.combinations(members(subset), size - 1)]
    return (hand_lvi(model, x, subset) + sum(hand_l(model, x, c) for c in kids)) / size


def test_partial_samples_score_the_recursion_over_exactly_what_they_recorded():
    """Every availability pattern of three sensors in one batch, missing values NaN."""
    model = vector_model(3)
    patterns = [p for p in range(8)] * 2
    available = torch.tensor([[bool(p >> i & 1) for i in range(3)] for p in patterns])
    x = batch(model, len(patterns))
    for i, name in enumerate(model.names):
        x[name][~available[:, i]] = float("nan")
    result = loss(model, x, available, sample=False)
    for row, pattern in enumerate(patterns):
        if pattern == 0:
            assert result.per_sample[row].item() == 0.0
            continue
        one = {name: values[row : row + 1] for name, values in x.items()}
        torch.testing.assert_close(result.per_sample[row : row + 1], hand_l(model, one, pattern))
    torch.testing.assert_close(result.total, -result.per_sample[available.any(1)].mean())


def test_each_subset_draws_one_sample_mean_plus_std_times_unit_noise(monkeypatch):
    model = vector_model(2)
    latent = model.spec.latent_dim
    with torch.no_grad():  # log-variance −2 everywhere: std 0.37, where exp(logvar) would be 0.14
        for head in model.heads.values():
            head[-1].weight[latent:] = 0.0
            head[-1].bias[latent:] = -2.0
    x = batch(model, 20_000)
    decoded = []
    original = model.log_likelihood
    monkeypatch.setattr(model, "log_likelihood",
                        lambda name, z, target: decoded.append((name, z)) or original(name, z, target))
    loss(model, x, all_available(model, 20_000), generator=torch.Generator().manual_seed(0))
    users: dict[int, list[str]] = {}  # each draw of z: the decoders it reached
    draws = {}
    for name, z in decoded:
        users.setdefault(id(z), []).append(name)
        draws[id(z)] = z
    by_subset = {sum(1 << model.names.index(n) for n in names): draws[key] for key, names in users.items()}
    assert len(decoded) == 4 and sorted(by_subset) == [0b01, 0b10, 0b11]  # the joint's z is shared
    for subset, z in by_subset.items():
        mean, logvar = model.encode(x, subset)
        noise = ((z - mean) / torch.exp(0.5 * logvar)).detach()
        assert abs(noise.mean().item()) < 0.01 and abs(noise.var().item() - 1) < 0.02, subset


def test_missing_rows_influence_neither_value_nor_gradient():
    model = vector_model(2)
    x = batch(model, 3)
    x["m1"][1] = 0.0
    available = torch.tensor([[True, True], [True, False], [True, True]])

    def sample_one_with(row_b):
        model.zero_grad()
        data = {k: v.clone() for k, v in x.items()}
        data["m1"][1] = row_b
        value = loss(model, data, available, sample=False).per_sample[1]
        value.backward()
        return value.detach(), [p.grad.clone() if p.grad is not None else None for p in model.parameters()]

    value_zero, grads_zero = sample_one_with(0.0)
    for junk in (1e3, float("nan")):  # NaN: a placeholder the API's docs allow
        value_junk, grads_junk = sample_one_with(junk)
        assert value_zero.item() == value_junk.item()
        for a, b in zip(grads_zero, grads_junk, strict=True):
            if a is None:
                assert b is None
            else:
                assert torch.equal(a, b)
    # sample 1 has no b, so b's decoder cannot have received gradient from it
    assert all(p.grad is None or not p.grad.any() for p in model.decoders["1"].parameters())


def mixed_modalities(n: int) -> tuple[ModalitySpec, ...]:
    pool = (
        ModalitySpec("cam", "image", ImagePreprocess(12, 10, 3), weight=0.1, hidden=(4, 8)),
        ModalitySpec("scan", "scan", ScanPreprocess(beams=30), likelihood="laplace", hidden=(4, 8)),
        ModalitySpec("rim", "range_image", RangeImagePreprocess(2, 20, intensity=True), hidden=(4,)),
        ModalitySpec("imu", "vector", VectorPreprocess(5), likelihood="gaussian_learned", hidden=(8,)),
        ModalitySpec("bits", "vector", VectorPreprocess(6), likelihood="bernoulli", hidden=(8,)),
    )
    return pool[:n]


@pytest.mark.parametrize("objective_name", ["m2vae", "jmvae", "mvae"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_mixed_kinds_forward_and_backward(n, objective_name):
    spec = ModelSpec(
        mixed_modalities(n), latent_dim=3, objective=objective_name, feature_dim=8, head_hidden=8
    )
    torch.manual_seed(n)
    model = M2VAE(spec)
    size = 6
    x = {m.name: torch.rand(size, *m.shape).round() for m in spec.modalities}
    available = torch.rand(size, n) > 0.3
    available[0] = True
    result = loss(model, x, available)
    result.total.backward()
    assert torch.isfinite(result.total)
    assert torch.isfinite(result.per_sample).all()
    has_any = available.any(1)
    assert (result.per_sample[~has_any] == 0).all()
    assert (result.per_sample[has_any] != 0).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert f"elbo/{subset_name((1 << n) - 1, spec.names)}" in result.terms


def test_jmvae_penalises_the_joint_against_every_proper_sub_encoder():
    model = vector_model(3, "jmvae")
    x = batch(model)
    result = objective(model, x)
    joint = 0b111
    expected = hand_elbo(model, x, joint)
    for part in all_subsets(3)[:-1]:
        expected = expected - ALPHA * hand_kl(*model.encode(x, joint), *model.encode(x, part))
    torch.testing.assert_close(result.per_sample, expected)
    assert sum(key.startswith("kl/") for key in result.terms) == 6


def test_mvae_is_the_product_of_experts_elbo_plus_single_elbos():
    model = vector_model(2, "mvae")
    assert set(model.heads) == {"1", "2"}
    x = batch(model)
    expected = hand_elbo(model, x, 0b11) + hand_elbo(model, x, 0b01) + hand_elbo(model, x, 0b10)
    torch.testing.assert_close(objective(model, x).per_sample, expected)
    # the joint posterior is the product of the two experts and the N(0, I) prior expert
    (ma, la), (mb, lb) = model.encode(x, 0b01), model.encode(x, 0b10)
    mean, logvar = model.encode(x, 0b11)
    # encode(.., single) is itself expert·prior, so recover each raw expert's precision first
    precision_a, precision_b = (-la).exp() - 1, (-lb).exp() - 1
    torch.testing.assert_close((-logvar).exp(), 1 + precision_a + precision_b)
    torch.testing.assert_close(mean * (-logvar).exp(), ma * (-la).exp() + mb * (-lb).exp())


def test_sampling_is_deterministic_under_a_seeded_generator():
    model = vector_model(2)
    x = batch(model)
    values = [
        loss(model, x, all_available(model), generator=torch.Generator().manual_seed(3)).total.item()
        for _ in range(2)
    ]
    other = loss(model, x, all_available(model), generator=torch.Generator().manual_seed(4)).total.item()
    assert values[0] == values[1]
    assert values[0] != other


def test_bad_availability_mask_is_refused():
    model = vector_model(2)
    with pytest.raises(ValueError, match="bool tensor"):
        loss(model, batch(model), torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        loss(model, batch(model), torch.ones(5, 3, dtype=torch.bool))
