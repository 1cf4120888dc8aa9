"""Per-modality feature extractors and decoders, one pair per tensor kind (see spec.py).

Every extractor maps a batch ``[B, *shape]`` to ``[B, feature_dim]`` and ends in a
LayerNorm, so the fusion heads see features of a fixed scale however extreme the input
(a saturated camera, a 1e6 reading): the posteriors stay finite up to values of about
1e18, beyond which the normalisation's own float32 arithmetic overflows. Every decoder maps
``[B, latent_dim]`` to the raw (pre-likelihood) output ``[B, *shape]``.

Scans and range images wrap around in azimuth, so their 1-D convolutions run along the
beam/bin axis with circular padding: the beam at −π is the neighbour of the beam at +π.
The networks are deliberately small: the demo trains a 64×64×3 camera and a 360-beam
scan on two CPU cores in minutes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from m2vae_ros.spec import RANGE_KINDS, ModalitySpec, SpecError, unsupported_kind

# Kinds on a 2-D pixel grid: the same strided convolutions and transposed ones serve them.
GRID_KINDS = ("image", "depth")
DEFAULT_HIDDEN = {
    "image": (32, 64, 64),
    "depth": (32, 64, 64),
    "scan": (16, 32, 64),
    "range_image": (32, 64, 64),
    "vector": (256, 256),
}
# Conv encoders pool to this many cells per axis before the linear layer, so the
# parameter count does not depend on the input resolution.
_POOLED_2D = 4
_POOLED_1D = 16


def build_extractor(spec: ModalitySpec, feature_dim: int) -> nn.Module:
    """The feature extractor for one modality, chosen by its kind.

    Its stride-2 layers must not shrink the input to nothing: an image layer (kernel 4,
    padding 1) halves each side, rounding down, so a side needs 2^layers pixels; a ring
    layer (kernel 5, circular padding 2) needs ≥ 2 cells at its input and halves them
    rounding up, so a ring needs 2^(layers-1) + 1. An MLP has no resolution to run out of.
    """
    hidden = _hidden(spec)
    layers = len(hidden)
    if spec.kind in GRID_KINDS:
        _check_resolution(spec, layers, smallest=min(spec.shape[1:]), needed=2**layers)
        return ImageEncoder(spec.shape, hidden, feature_dim)
    if spec.kind in RANGE_KINDS:
        _check_resolution(spec, layers, smallest=spec.shape[-1], needed=2 ** (layers - 1) + 1)
        return CircularEncoder(spec.shape, hidden, feature_dim)
    if spec.kind == "vector":
        return MLPEncoder(spec.shape[0], hidden, feature_dim)
    raise unsupported_kind(spec, "feature extractor")


def _hidden(spec: ModalitySpec) -> tuple[int, ...]:
    """The extractor's widths: the spec's, else its kind's default."""
    if spec.hidden:
        return tuple(spec.hidden)
    if spec.kind not in DEFAULT_HIDDEN:
        raise unsupported_kind(spec, "default hidden widths")
    return DEFAULT_HIDDEN[spec.kind]


def _check_resolution(spec: ModalitySpec, layers: int, *, smallest: int, needed: int) -> None:
    """Refuse an input whose `smallest` convolved side is under the `needed` cells (`build_extractor`)."""
    if smallest < needed:
        raise SpecError(
            f"modality {spec.name!r}: a {spec.kind} of shape {spec.shape} is too small for {layers} "
            f"stride-2 layers, which need {needed} cells along each convolved axis; give fewer `hidden` "
            "widths"
        )


def build_decoder(spec: ModalitySpec, latent_dim: int) -> nn.Module:
    """The decoder for one modality, as deep as its extractor: conv decoders take `decoder_widths(hidden)`,
    the MLP decoder mirrors `hidden`."""
    hidden = _hidden(spec)
    if spec.kind in GRID_KINDS:
        return ImageDecoder(spec.shape, decoder_widths(hidden), latent_dim)
    if spec.kind in RANGE_KINDS:
        return CircularDecoder(spec.shape, decoder_widths(hidden), latent_dim)
    if spec.kind == "vector":
        return MLPDecoder(spec.shape[0], tuple(reversed(hidden)), latent_dim)
    raise unsupported_kind(spec, "decoder")


def decoder_widths(hidden: Sequence[int]) -> tuple[int, ...]:
    """Upsampling widths: the extractor's widest, halved at every doubling of resolution (as in DCGAN).

    Halving keeps each stage's cost roughly constant instead of growing 4× (2-D) per
    stage. It matters more here than in a plain VAE because M²VAE runs every decoder
    once per subset containing its modality: with mirrored widths (64, 64, 32) the
    camera decoder cost as much as its extractor and a step at N = 2 took 1.6× a joint
    VAE's; with (64, 32, 16) the decoder costs about a third as much.
    """
    return tuple(max(max(hidden) >> i, 8) for i in range(len(hidden)))


def mlp(widths: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, dim: int, hidden: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(mlp([dim, *hidden]), nn.ReLU(), nn.Linear(hidden[-1], feature_dim))
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.net(x))


class MLPDecoder(nn.Module):
    def __init__(self, dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.net = mlp([latent_dim, *hidden, dim])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ImageEncoder(nn.Module):
    """Stride-2 convolutions, then adaptive pooling to 4×4 (any side of at least 2^len(hidden) pixels;
    see `build_extractor`)."""

    def __init__(self, shape: tuple[int, ...], hidden: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = shape[0]
        for width in hidden:
            layers += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.AdaptiveAvgPool2d(_POOLED_2D))
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * _POOLED_2D**2, feature_dim)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.out(self.conv(x).flatten(1)))


class ImageDecoder(nn.Module):
    """Linear → coarse grid → stride-2 transposed convolutions → exact (H, W).

    The coarse grid is ceil(H / 2^L) × ceil(W / 2^L); the last step resizes to the exact
    shape only when H or W is not a multiple of 2^L. Transposed convolutions at the input
    resolution cost less than half of upsample + conv at the output resolution, which
    matters because M²VAE decodes every modality once per subset containing it.
    """

    def __init__(self, shape: tuple[int, ...], hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.shape = shape
        steps = len(hidden)
        self.grid = (math.ceil(shape[1] / 2**steps), math.ceil(shape[2] / 2**steps))
        self.channels = hidden[0]
        self.inp = nn.Linear(latent_dim, hidden[0] * self.grid[0] * self.grid[1])
        layers: list[nn.Module] = []
        for a, b in zip(hidden, [*hidden[1:], shape[0]], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
        self.conv = nn.Sequential(*layers[:-1])  # no ReLU on the raw output

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.inp(z)).view(z.shape[0], self.channels, *self.grid)  # -1 fails on an empty batch
        out = self.conv(h)
        if out.shape[-2:] != self.shape[1:]:
            out = F.interpolate(out, size=self.shape[1:], mode="bilinear", align_corners=False)
        return out


class CircularEncoder(nn.Module):
    """1-D circular convolutions along the last axis; other axes become channels.

    A scan (1, beams) has one channel; a range image (C, rings, bins) has C·rings.
    """

    def __init__(self, shape: tuple[int, ...], hidden: Sequence[int], feature_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = math.prod(shape[:-1])
        for width in hidden:
            layers += [
                nn.Conv1d(channels, width, 5, stride=2, padding=2, padding_mode="circular"),
                nn.ReLU(),
            ]
            channels = width
        layers.append(nn.AdaptiveAvgPool1d(_POOLED_1D))
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * _POOLED_1D, feature_dim)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x.flatten(1, -2))
        return self.norm(self.out(h.flatten(1)))


class CircularUpsample(nn.Module):
    """Stride-2 transposed convolution (kernel 4) on a ring: length L → 2L, wrapping around.

    ConvTranspose1d has no circular padding, so the ring is padded by one cell from the
    other end on each side, transpose-convolved without padding (length 2L + 6) and cut
    to the 2L outputs of the original cells; offset 3 = 2·(one padded cell) + 1 (the
    kernel's own padding). Rolling the input by one cell rolls the output by two.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, 4, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[-1]
        return self.conv(F.pad(x, (1, 1), mode="circular"))[..., 3 : 3 + 2 * length]


class CircularDecoder(nn.Module):
    """Linear → coarse ring → circular stride-2 transposed convolutions → exact length."""

    def __init__(self, shape: tuple[int, ...], hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.shape = shape
        self.length = math.ceil(shape[-1] / 2 ** len(hidden))
        self.channels = hidden[0]
        self.inp = nn.Linear(latent_dim, hidden[0] * self.length)
        layers: list[nn.Module] = []
        for a, b in zip(hidden, [*hidden[1:], math.prod(shape[:-1])], strict=True):
            layers += [CircularUpsample(a, b), nn.ReLU()]
        self.conv = nn.Sequential(*layers[:-1])  # no ReLU on the raw output

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.inp(z)).view(z.shape[0], self.channels, self.length)  # -1 fails on an empty batch
        out = self.conv(h)
        if out.shape[-1] != self.shape[-1]:
            out = F.interpolate(out, size=self.shape[-1], mode="linear", align_corners=False)
        return out.view(z.shape[0], *self.shape)
