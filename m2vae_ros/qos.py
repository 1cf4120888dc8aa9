"""QoS profiles of the fusion node and the bag player, in one place so they stay compatible.

Sensors are read with depth 1 so a slow consumer drops frames instead of building a
backlog. A reliable subscriber receives nothing from a best-effort publisher, while a
best-effort subscriber accepts both; hence best-effort is the default for inputs, and the
node's own outputs are reliable so that subscribers of either kind receive them.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def reliability_policy(name: str) -> ReliabilityPolicy:
    """`best_effort` or `reliable` → the rclpy policy; anything else is an error."""
    try:
        return RELIABILITIES[name]
    except KeyError:
        raise ValueError(f"reliability {name!r} is not one of {sorted(RELIABILITIES)}") from None


def sensor_qos(reliability: str, depth: int = 1) -> QoSProfile:
    """Keep-last sensor stream; depth 1 keeps only the newest message."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability_policy(reliability),
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos() -> QoSProfile:
    """The node's streamed outputs (latent, reconstructions): reliable, newest only."""
    return sensor_qos("reliable")


def latched_qos(depth: int = 1) -> QoSProfile:
    """A state topic a late subscriber must still see (active_modalities), its last `depth` messages."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
