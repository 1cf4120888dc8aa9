"""The fusion node's ROS parameters: declared with descriptors, validated, read once.

Node-wide parameters are declared before the model is loaded; the per-modality ones
(`modalities.<name>.topic`, `.msg_type`, `.timeout_s`, `.frame_id`) only after, because the
modality names come from the model artifact. A `modalities.*` override that names no
declared parameter (a modality the model lacks, a misspelt key) is a start-up error
rather than a silently ignored setting. Any other unknown override is a warning that
suggests the nearest name: a params file's `/**` section may hold other nodes' settings.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.node import Node

from m2vae_ros.devices import DEVICE_PATTERN
from m2vae_ros.liveness import DEFAULT_TIMEOUT_S, parse_timeout, timeout_of
from m2vae_ros.qos import RELIABILITIES
from m2vae_ros.ros_types import modality_message_type, transported_type
from m2vae_ros.spec import ModalitySpec, ModelSpec

MODALITY_PREFIX = "modalities"
MIN_RATE_HZ = 0.001
TIMEOUT_RANGE_S = (0.001, 3600.0)


class StartupError(RuntimeError):
    """The node cannot start: the message is the one line shown to the user."""


@dataclass(frozen=True)
class NodeParams:
    model_path: str
    device: str
    rate_hz: float
    publish_reconstructions: bool
    frame_id: str
    reliability: str
    torch_threads: int
    max_future_stamp_s: float


@dataclass(frozen=True)
class ModalityParams:
    topic: str
    msg_type: str
    timeout_s: float
    frame_id: str  # of the sensor's reconstruction until its first message names one; '' for the node's


def _descriptor(description: str, read_only: bool = True, **ranges: Any) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only, **ranges)


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


def _declare(node: Node, name: str, default: Any, descriptor: ParameterDescriptor) -> Any:
    """Declare one parameter; a wrong type or out-of-range override becomes a StartupError."""
    try:
        return node.declare_parameter(name, default, descriptor).value
    except ParameterException as exc:
        raise StartupError(f"parameter {name!r}: {exc}") from None


def declare_node_params(node: Node) -> NodeParams:
    """Declare and validate the parameters that do not depend on the model."""
    params = NodeParams(
        # No shell expands `~` after `model_path:=` or in a params file.
        model_path=os.path.expanduser(_declare(node, "model_path", "", _descriptor(
            "Directory of the trained model artifact (model.yaml + model.safetensors); ~ expands."))),
        device=_declare(node, "device", "auto", _descriptor(
            "Torch device: auto | cpu | cuda | cuda:<i>. Unavailable CUDA falls back to cpu.")),
        rate_hz=_declare(node, "rate_hz", 0.0, _descriptor(
            "Inference rate in Hz; 0 runs on each arrival of the fastest alive sensor.",
            floating_point_range=_float_range(0.0, 1000.0))),
        publish_reconstructions=_declare(node, "publish_reconstructions", True, _descriptor(
            "Publish ~/reconstruction/<modality> for every modality, dead ones included.")),
        frame_id=_declare(node, "frame_id", "base_link", _descriptor(
            "header.frame_id of the latent, and of the reconstruction of a sensor never heard whose "
            "frame neither the model nor modalities.<name>.frame_id gives.")),
        reliability=_declare(node, "qos.reliability", "best_effort", _descriptor(
            "Sensor subscription reliability: best_effort | reliable. A reliable subscriber "
            "receives nothing from a best-effort publisher (most camera and LiDAR drivers).")),
        torch_threads=_declare(node, "torch_threads", 1, _descriptor(
            "torch intra-op threads; keep small so inference does not starve the sensors' drivers.",
            integer_range=[IntegerRange(from_value=1, to_value=256, step=1)])),
        max_future_stamp_s=_declare(node, "max_future_stamp_s", 1.0, _descriptor(
            "Messages stamped more than this many seconds ahead of the node clock are rejected.",
            floating_point_range=_float_range(0.0, 3600.0))),
    )
    if not params.model_path:
        raise StartupError("parameter 'model_path' is required: the directory of a trained model")
    if 0 < params.rate_hz < MIN_RATE_HZ:  # its timer period would overflow int64 nanoseconds
        raise StartupError(f"parameter 'rate_hz' is {params.rate_hz}; expected 0 (on arrival) "
                           f"or ≥ {MIN_RATE_HZ} Hz")
    if not DEVICE_PATTERN.fullmatch(params.device):
        raise StartupError(f"parameter 'device' is {params.device!r}; expected auto, cpu, cuda or cuda:<i>")
    if params.reliability not in RELIABILITIES:
        raise StartupError(
            f"parameter 'qos.reliability' is {params.reliability!r}; expected one of {sorted(RELIABILITIES)}"
        )
    return params


def trained_timeouts(
    metadata: Mapping[str, Any], names: Sequence[str]
) -> tuple[dict[str, float], str | None]:
    """Each sensor's default `timeout_s`: the `dataset.timeout` its model was trained with, and a warning.

    Training marks a sensor missing after that silence, so the subsets it trained for a slow
    sensor's gaps are the ones the node should run in them: a 1 Hz sensor trained with 2 s
    would flicker dead and alive under a fixed 0.5 s. A model without it (the Python
    library's) gets `DEFAULT_TIMEOUT_S`; an unreadable one gets it too, with the warning.
    """
    trained = _mapping_at(_mapping_at(metadata, "provenance"), "sync").get("timeout", DEFAULT_TIMEOUT_S)
    low, high = TIMEOUT_RANGE_S
    try:
        parsed = parse_timeout(trained, names, "the model's provenance.sync.timeout")
        timeouts = {name: timeout_of(parsed, name) for name in names}
        if not all(low <= t <= high for t in timeouts.values()):
            raise ValueError(f"the model's provenance.sync.timeout {trained!r} lies outside "
                             f"[{low}, {high}] s")
    except ValueError as exc:
        return dict.fromkeys(names, DEFAULT_TIMEOUT_S), (
            f"{exc}; timeouts default to {DEFAULT_TIMEOUT_S} s (set modalities.<name>.timeout_s)")
    return timeouts, None


def trained_frames(metadata: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
    """Each sensor's TF frame in the training recordings (model.yaml `provenance.topics.<name>.frame_id`).

    The reconstruction of a sensor not heard yet is drawn in it: the decoder lays a scan or
    cloud out around the sensor, so in `base_link` it would sit off by the mounting. ''
    where the model does not say (the Python library's, or one trained before it was kept).
    """
    topics = _mapping_at(_mapping_at(metadata, "provenance"), "topics")
    frames = {name: _mapping_at(topics, name).get("frame_id") for name in names}
    return {name: frame if isinstance(frame, str) else "" for name, frame in frames.items()}


def _mapping_at(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`mapping[key]` when it is a mapping, else {}: a library model has no provenance, and a hand
    edit of model.yaml may leave anything there."""
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}


def _default_type(node: Node, modality: ModalitySpec, topic: str) -> str:
    """The type stored in the model; CompressedImage where the sensor was moved, by its topic parameter
    or a remap rule, to image_transport's compressed stream of the Image it was trained on. A
    sensor left on its trained topic keeps the trained type, whatever the topic is called."""
    stored = modality_message_type(modality)
    try:
        resolved = node.resolve_topic_name(topic)
        trained = node.resolve_topic_name(modality.topic, only_expand=True) if modality.topic else None
    except InvalidTopicNameException:
        return stored  # the subscription names the bad topic
    return stored if resolved == trained else transported_type(resolved, stored)


def declare_modality_params(
    node: Node, spec: ModelSpec, overrides: set[str], timeouts: Mapping[str, float], frames: Mapping[str, str]
) -> dict[str, ModalityParams]:
    """Declare `modalities.<name>.*` for the model's modalities; reject overrides for anything else.

    `overrides` are the parameter names given on the command line or in params files;
    `timeouts` the default `timeout_s` per modality (`trained_timeouts`), `frames` the
    default `frame_id` (`trained_frames`).
    """
    result: dict[str, ModalityParams] = {}
    for modality in spec.modalities:
        prefix = f"{MODALITY_PREFIX}.{modality.name}"
        topic = _declare(node, f"{prefix}.topic", modality.topic, _descriptor(
            f"Topic of the {modality.name!r} sensor; defaults to the topic stored in the model."))
        msg_type = _declare(node, f"{prefix}.msg_type", _default_type(node, modality, topic), _descriptor(
            f"Message type of the {modality.name!r} topic, e.g. sensor_msgs/msg/CompressedImage for a "
            "camera trained on sensor_msgs/msg/Image; defaults to the type stored in the model, or to "
            "CompressedImage where that is Image and the sensor was moved (topic parameter or remap) to "
            "image_transport's .../compressed or .../compressedDepth."))
        timeout_s = _declare(node, f"{prefix}.timeout_s", timeouts[modality.name], _descriptor(
            f"The {modality.name!r} sensor counts as dead when its last valid message is older; defaults "
            "to the timeout the model was trained with.",
            read_only=False, floating_point_range=_float_range(*TIMEOUT_RANGE_S)))
        frame_id = _declare(node, f"{prefix}.frame_id", frames[modality.name], _descriptor(
            f"header.frame_id of the {modality.name!r} reconstruction until the sensor's first message "
            "names its own; defaults to the frame in the training recordings, '' to the node's frame_id."))
        if not topic:
            raise StartupError(f"modality {modality.name!r} has no topic: set parameter '{prefix}.topic'")
        result[modality.name] = ModalityParams(topic=topic, msg_type=msg_type, timeout_s=timeout_s,
                                               frame_id=frame_id)
    unknown = sorted(
        name for name in overrides
        if name.startswith(f"{MODALITY_PREFIX}.") and not node.has_parameter(name)
    )
    if unknown:
        raise StartupError(
            f"parameters {unknown} do not match the model's modalities {list(spec.names)} "
            f"(expected {MODALITY_PREFIX}.<name>.topic / .msg_type / .timeout_s / .frame_id)"
        )
    return result


def unknown_parameters(node: Node, overrides: set[str]) -> str:
    """A warning naming the overrides `node` has not declared (with the nearest declared names), or ''."""
    unknown = sorted(name for name in overrides if not node.has_parameter(name))
    if not unknown:
        return ""
    known = node.list_parameters([], 0).names  # depth 0: every declared name
    hints = [f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, 1))
             else repr(name) for name in unknown]
    return f"ignoring parameters this node does not have: {', '.join(hints)}"
