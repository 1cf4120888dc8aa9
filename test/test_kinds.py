"""Every module's per-kind table names the same kinds, and a kind a branch forgot is an error.

A kind is known in many places: its preprocess record, codec, ROS type, network family,
likelihood bounds, error unit, figure and reach hint (docs/ARCHITECTURE.md, "Adding a
sensor kind"). These tests make a new kind that one of them forgets fail here instead of
being handled silently as another kind.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from m2vae_training.figures import _draw, _y_unit
from m2vae_training.metrics import ERROR_UNITS, ReconstructionError
from matplotlib.figure import Figure

from m2vae_ros.api import _BOUNDED_HINTS
from m2vae_ros.codec import DECODERS, ENCODERS
from m2vae_ros.likelihoods import BOUNDED_KINDS
from m2vae_ros.networks import DEFAULT_HIDDEN, build_decoder, build_extractor
from m2vae_ros.reach import REACH_HINTS
from m2vae_ros.ros_types import NATURAL_TYPES
from m2vae_ros.spec import KINDS, PREPROCESS_BY_KIND, RANGE_KINDS, ModalitySpec, SpecError, VectorPreprocess

matplotlib.use("Agg")
ROS_KINDS = set(KINDS) - {"vector"}  # a vector is for in-memory arrays only: no ROS message carries it


def test_every_per_kind_table_names_every_kind() -> None:
    for table in (PREPROCESS_BY_KIND, DEFAULT_HIDDEN, ERROR_UNITS, _BOUNDED_HINTS):
        assert set(table) == set(KINDS), table
    assert set(BOUNDED_KINDS) <= set(KINDS)
    assert set(RANGE_KINDS) == set(REACH_HINTS)
    assert set(NATURAL_TYPES) == set(ENCODERS) == {kind for _, kind in DECODERS} == ROS_KINDS


def test_a_kind_a_branch_forgot_is_an_error_not_another_kind() -> None:
    vector = ModalitySpec("sonar", "vector", VectorPreprocess(4), hidden=(8,))
    object.__setattr__(vector, "kind", "sonar")  # as if added to KINDS and to no branch
    unwidened = ModalitySpec("sonar", "vector", VectorPreprocess(4))
    object.__setattr__(unwidened, "kind", "sonar")

    with pytest.raises(SpecError, match="kind 'sonar' has no default hidden widths"):
        build_extractor(unwidened, 8)
    with pytest.raises(SpecError, match="kind 'sonar' has no feature extractor"):
        build_extractor(vector, 8)
    with pytest.raises(SpecError, match="kind 'sonar' has no decoder"):
        build_decoder(vector, 4)
    with pytest.raises(SpecError, match="kind 'sonar' has no reconstruction error"):
        ReconstructionError(vector).add(np.zeros((1, 4)), np.zeros((1, 4)))
    error = ReconstructionError(vector)
    error.total, error.count = 4.0, 1  # as if `add` had a branch for it and `value` none
    with pytest.raises(SpecError, match="kind 'sonar' has no reconstruction error"):
        error.value()
    with pytest.raises(SpecError, match="kind 'sonar' has no figure"):
        _draw(Figure().subplots(), vector, np.zeros(4), None)
    with pytest.raises(SpecError, match="kind 'sonar' has no figure"):
        _y_unit(vector)
