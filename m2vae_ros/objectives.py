"""The M²VAE objective and the JMVAE-kl and MVAE baselines, with missing modalities.

M²VAE (Korthals, eq. 83) scores a set of modalities M recursively:

    L(M)    = 1/|M| · ( L_VI(M) + Σ_{M' ⊂ M, |M'| = |M|−1} L(M') ),   L({m}) = ELBO(m)
    L_VI(M) = Σ_{m∈M} E_q(z|M) log p(m|z) − β·KL(q(z|M) ‖ p(z)) − α·Σ_{m∈M} KL(q(z|M) ‖ q(z|M∖m))

ELBO(m) carries the same β as L_VI, so it is the plain VAE ELBO at β = 1 (the default).
p(z) is N(0, I), or the learned mixture of priors.py when `prior_components` asks for one.

Each sample i is scored over exactly the modalities it has (its available set A_i), so a
sample without modality b contributes the single-modality ELBO of a, and a missing
modality's rows never reach a decoder or a KL term. Every subset's posterior, sample,
ELBO and KL is computed once per batch (memoised over the recursion), only for the
subsets some sample needs, and only on the rows whose available set contains it.

`terms` report batch means over the rows that have the subset: `elbo/<S>` is the plain
ELBO of q(z|S) (Σ rec − β·KL to the prior, comparable across objectives),
`rec/<S>/<m>`, `kl_prior/<S>` and `kl/<S>|<S'>` its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from m2vae_ros.model import M2VAE
from m2vae_ros.priors import log_normal
from m2vae_ros.subsets import all_subsets, children, members, subset_name

# Evaluations draw their noise from a generator seeded with this on every call.
EVALUATION_SEED = 0


def evaluation_generator(device: torch.device | str) -> torch.Generator:
    """The noise of one evaluation (validation, m2vae-eval): its reparameterised samples make the
    reported ELBO an estimate of the ELBO. Scoring at the posterior mean would overstate it, since
    that ignores q's spread. Seeded the same every time, so one model scores the same twice and
    epochs compare on the same draws; the training generator's state is left alone (resume)."""
    return torch.Generator(device=device).manual_seed(EVALUATION_SEED)


@dataclass
class Loss:
    """`total` to minimise, each sample's objective, and batch-mean terms for logging.

    `term_rows` counts the rows each term averages over (those holding its subset), so
    means over many batches can weigh each batch's term by them.
    """

    total: Tensor
    per_sample: Tensor
    terms: dict[str, Tensor]
    term_rows: dict[str, int]


def kl_normal(mean_q: Tensor, logvar_q: Tensor, mean_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mean_q, e^logvar_q) ‖ N(mean_p, e^logvar_p)) of diagonal Gaussians → [B] (Korthals, eq. 92)."""
    ratio = torch.exp(logvar_q - logvar_p)
    gap = (mean_q - mean_p).square() * torch.exp(-logvar_p)
    return 0.5 * (ratio + gap - 1 - (logvar_q - logvar_p)).sum(1)


def kl_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, e^logvar) ‖ N(0, I)) → [B]."""
    return 0.5 * (torch.exp(logvar) + mean.square() - 1 - logvar).sum(1)


def kl_to_prior(model: M2VAE, z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) ‖ p(z)) → [B]: exact against N(0, I); against a learned mixture, which has no
    closed form, the one-sample estimate log q(z|x) − log p(z) at `z` (the mean when not sampling)."""
    if model.prior is None:
        return kl_standard_normal(mean, logvar)
    return log_normal(z, mean, logvar) - model.prior.log_prob(z)


def loss(
    model: M2VAE,
    x: dict[str, Tensor],
    available: Tensor,
    *,
    sample: bool = True,
    generator: torch.Generator | None = None,
) -> Loss:
    """The objective of `model.spec.objective` for a batch; see the module docstring.

    `available` is a bool tensor [B, N] in `model.spec` order. One reparameterised sample
    of z per subset, drawn from `generator` (the global RNG when None); with `sample=False`
    z is the posterior mean, which the tests use to check values exactly.
    """
    batch = _Batch(model, x, available, sample, generator)
    objective = _OBJECTIVES[model.spec.objective](batch, model.spec.alpha)
    per_sample = available.new_zeros(available.shape[0], dtype=torch.float32)
    for pattern in torch.unique(batch.patterns).tolist():
        if pattern:
            per_sample = torch.where(batch.patterns == pattern, objective(pattern), per_sample)
    count = int((batch.patterns != 0).sum())
    total = -per_sample.sum() / max(count, 1)
    return Loss(total=total, per_sample=per_sample, terms=batch.terms, term_rows=batch.term_rows)


def subset_loss(
    model: M2VAE, x: dict[str, Tensor], subset: int, *, sample: bool = True,
    generator: torch.Generator | None = None,
) -> Loss:
    """`loss` as if every sample had recorded exactly `subset`: `per_sample` is L(subset) → [B]."""
    reference = x[model.names[members(subset)[0]]]
    n = len(model.names)
    columns = torch.tensor([bool(subset >> i & 1) for i in range(n)], device=reference.device)
    return loss(model, x, columns.expand(reference.shape[0], n), sample=sample, generator=generator)


def _zero_missing(
    model: M2VAE, x: dict[str, Tensor], available: Tensor, present: list[int]
) -> dict[str, Tensor]:
    """`x` with the rows of a missing modality zeroed, for the extractors that run on whole batches.

    Those rows never reach a loss term, but a NaN placeholder in them would: its gradient
    through the extractor is 0 × NaN = NaN, and one step turns every weight into NaN.
    """
    clean = dict(x)
    for i in present:
        name = model.names[i]
        if name in x and not bool(available[:, i].all()):
            rows = available[:, i].view(-1, *([1] * (x[name].dim() - 1)))
            clean[name] = torch.where(rows, x[name], 0.0)
    return clean


class _Batch:
    """Memoised per-subset posteriors, ELBOs and KLs of one batch.

    Values are stored as full [B, …] tensors; rows whose available set lacks the subset
    hold zeros and are never read for those rows' objectives.
    """

    def __init__(
        self,
        model: M2VAE,
        x: dict[str, Tensor],
        available: Tensor,
        sample: bool,
        generator: torch.Generator | None,
    ) -> None:
        n = len(model.names)
        if available.dtype != torch.bool or available.dim() != 2 or available.shape[1] != n:
            raise ValueError(
                f"available must be a bool tensor [B, {n}], got {available.dtype} {list(available.shape)}"
            )
        self.model, self.x, self.available = model, x, available
        self.sample, self.generator = sample, generator
        self.size = available.shape[0]
        bits = torch.arange(n, device=available.device)
        self.patterns = (available.long() << bits).sum(1)
        present = [i for i in range(n) if bool(available[:, i].any())]
        self.features = model.extract(_zero_missing(model, x, available, present), present)
        self.terms: dict[str, Tensor] = {}
        self.term_rows: dict[str, int] = {}
        self._rows: dict[int, Tensor | None] = {}
        self._posteriors: dict[int, tuple[Tensor, Tensor]] = {}
        self._elbos: dict[int, Tensor] = {}
        self._kls: dict[tuple[int, int], Tensor] = {}

    def name(self, subset: int) -> str:
        return subset_name(subset, self.model.names)

    def rows(self, subset: int) -> Tensor | None:
        """Indices of the rows whose available set contains `subset`; None for all rows."""
        if subset not in self._rows:
            has = (self.patterns & subset) == subset
            self._rows[subset] = None if bool(has.all()) else has.nonzero().squeeze(1)
        return self._rows[subset]

    def posterior(self, subset: int) -> tuple[Tensor, Tensor]:
        if subset not in self._posteriors:
            rows = self.rows(subset)
            features = {i: _take(self.features[i], rows) for i in members(subset)}
            mean, logvar = self.model.fuse(features, subset)
            self._posteriors[subset] = (self._put(mean, rows), self._put(logvar, rows))
        return self._posteriors[subset]

    def elbo(self, subset: int) -> Tensor:
        """Σ_{m∈S} E_q(z|S) log p(m|z) − β·KL(q(z|S) ‖ p(z)) → [B]."""
        if subset not in self._elbos:
            rows = self.rows(subset)
            mean, logvar = (_take(t, rows) for t in self.posterior(subset))
            z = mean
            if self.sample:
                noise = torch.randn(
                    mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype
                )
                z = mean + torch.exp(0.5 * logvar) * noise
            kl_prior = kl_to_prior(self.model, z, mean, logvar)
            value = -self.model.spec.beta * kl_prior
            name = self.name(subset)
            self._log(f"kl_prior/{name}", kl_prior)
            for i in members(subset):
                modality = self.model.names[i]
                rec = self.model.log_likelihood(modality, z, _take(self.x[modality], rows))
                self._log(f"rec/{name}/{modality}", rec)
                value = value + rec
            self._log(f"elbo/{name}", value)
            self._elbos[subset] = self._put(value, rows)
        return self._elbos[subset]

    def kl(self, parent: int, child: int) -> Tensor:
        """KL(q(z|parent) ‖ q(z|child)) on the parent's rows → [B]."""
        if (parent, child) not in self._kls:
            rows = self.rows(parent)
            q = (_take(t, rows) for t in self.posterior(parent))
            p = (_take(t, rows) for t in self.posterior(child))
            value = kl_normal(*q, *p)
            self._log(f"kl/{self.name(parent)}|{self.name(child)}", value)
            self._kls[parent, child] = self._put(value, rows)
        return self._kls[parent, child]

    def _put(self, values: Tensor, rows: Tensor | None) -> Tensor:
        if rows is None:
            return values
        full = values.new_zeros((self.size, *values.shape[1:]))
        return full.index_copy(0, rows, values)

    def _log(self, key: str, values: Tensor) -> None:
        self.terms[key] = values.detach().mean()
        self.term_rows[key] = values.shape[0]


def _take(values: Tensor, rows: Tensor | None) -> Tensor:
    return values if rows is None else values[rows]


def _m2vae(batch: _Batch, alpha: float):
    """Korthals eq. 83, memoised so every subset's L is built once."""
    memo: dict[int, Tensor] = {}

    def objective(subset: int) -> Tensor:
        if subset not in memo:
            below = children(subset)
            value = batch.elbo(subset)
            for child in below:
                value = value - alpha * batch.kl(subset, child) + objective(child)
            memo[subset] = value / subset.bit_count()
        return memo[subset]

    return objective


def _jmvae(batch: _Batch, alpha: float):
    """JMVAE-kl: the joint ELBO minus α·KL from the joint to every proper sub-encoder.

    Suzuki et al. penalise the single-sensor encoders only; with more than two sensors
    this also pulls the joint towards the pairs, triples, … whose encoders the node runs
    too. For two sensors the two are the same.
    """
    everything = all_subsets(len(batch.model.names))

    def objective(subset: int) -> Tensor:
        value = batch.elbo(subset)
        for part in everything:
            if part != subset and part & subset == part:
                value = value - alpha * batch.kl(subset, part)
        return value

    return objective


def _mvae(batch: _Batch, alpha: float):
    """MVAE sub-sampling: the joint (product-of-experts) ELBO plus each modality's own ELBO.

    Wu & Goodman add, for three or more sensors, the ELBOs of k random subsets per step;
    these are left out here, so the mid-sized subsets get no term of their own. For two
    sensors the two are the same.
    """
    del alpha  # MVAE has no cross-encoder KL term

    def objective(subset: int) -> Tensor:
        value = batch.elbo(subset)
        if subset.bit_count() > 1:
            for i in members(subset):
                value = value + batch.elbo(1 << i)
        return value

    return objective


_OBJECTIVES = {"m2vae": _m2vae, "jmvae": _jmvae, "mvae": _mvae}
