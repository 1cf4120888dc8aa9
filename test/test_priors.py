"""The learned mixture prior: its density, the KL estimate against it, a model that trains and saves it."""

import math

import numpy as np
import pytest
import torch
from test_api import small_vae, two_views
from torch import distributions as D

from m2vae_ros.api import MultimodalVAE
from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import kl_standard_normal, kl_to_prior
from m2vae_ros.priors import LOGVAR_MIN, MixturePrior
from m2vae_ros.spec import SpecError


def test_the_mixture_density_is_torchs_mixture_of_diagonal_gaussians():
    torch.manual_seed(0)
    prior = MixturePrior(components=3, latent_dim=4)
    with torch.no_grad():
        prior.logvars.uniform_(-1.0, 1.0)
        prior.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    z = 2 * torch.randn(50, 4)
    reference = D.MixtureSameFamily(
        D.Categorical(logits=prior.logits),
        D.Independent(D.Normal(prior.means, torch.exp(0.5 * prior.logvar())), 1),
    )
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z).detach())


def test_a_collapsing_component_keeps_a_finite_density_and_a_way_back():
    """A log-variance of −100 would make e^−logvar inf and log p(z) NaN at the component's mean; one
    just past the bound must still get gradients, or it could never widen again."""
    prior = MixturePrior(components=2, latent_dim=3)
    with torch.no_grad():
        prior.logvars[0] = -100.0
    z = prior.means[:1].detach()
    assert torch.isfinite(prior.log_prob(z)).all() and prior.logvar().min() >= LOGVAR_MIN
    with torch.no_grad():
        prior.logvars[0] = LOGVAR_MIN - 2.0
    prior.log_prob(z + 0.1).sum().backward()
    assert (prior.logvars.grad[0] != 0).all()


def test_the_one_sample_kl_estimate_averages_to_the_exact_kl_for_one_standard_component():
    """Against a single N(0, I) component the mixture KL has a closed form to compare with."""
    model = M2VAE(small_vae(prior_components=1).spec)
    with torch.no_grad():
        model.prior.means.zero_()
        model.prior.logvars.fill_(8 * math.atanh(0.25) - 2)  # soft-clamped to log-variance 0
    mean, logvar = torch.tensor([[0.8, -0.3]]), torch.tensor([[-1.0, 0.5]])
    torch.manual_seed(1)
    draws = 200_000
    z = mean + torch.exp(0.5 * logvar) * torch.randn(draws, 2)
    with torch.no_grad():
        estimate = kl_to_prior(model, z, mean.expand(draws, 2), logvar.expand(draws, 2)).mean()
    exact = kl_standard_normal(mean, logvar)[0]
    assert math.isclose(float(estimate), float(exact), rel_tol=0.02), (float(estimate), float(exact))


def test_a_model_with_a_mixture_prior_learns_it_and_saves_it(tmp_path):
    data = two_views(128)
    vae = small_vae(prior_components=3, seed=2)
    initial = {k: v.detach().clone() for k, v in vae.model.prior.named_parameters()}
    history = vae.fit(data, epochs=6, batch_size=32, lr=3e-3)
    assert history.train[-1]["loss"] < history.train[0]["loss"]
    moved = {k for k, v in vae.model.prior.named_parameters() if not torch.equal(v, initial[k])}
    assert moved == {"means", "logvars", "logits"}
    again = MultimodalVAE.load(vae.save(tmp_path / "model"))
    assert again.spec.prior_components == 3
    z = torch.from_numpy(np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32))
    torch.testing.assert_close(again.model.prior.log_prob(z), vae.model.prior.log_prob(z), rtol=0, atol=0)


def test_a_model_without_it_has_no_prior_parameters_and_a_negative_count_is_refused():
    assert small_vae().model.prior is None
    assert not [name for name, _ in small_vae().model.named_parameters() if name.startswith("prior")]
    with pytest.raises(SpecError, match="prior_components is a number of mixture components"):
        small_vae(prior_components=-1)
