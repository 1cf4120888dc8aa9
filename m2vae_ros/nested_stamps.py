"""Header stamps inside messages that do not start with a header (TFMessage, MarkerArray).

m2vae-play rewrites a leading header's stamp in the CDR bytes directly; a header nested in
a sequence has no fixed offset, so such messages are deserialised, their headers' stamps
mapped, and serialised again.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from builtin_interfaces.msg import Time

from m2vae_ros.ros_types import message_class

HEADER = "std_msgs/Header"


def element_type(field_type: str) -> str:
    """A field's message or primitive type without its container: `sequence<a/B, 10>`, `a/B[3]` → `a/B`."""
    inner = field_type.removeprefix("sequence<").split(",")[0].rstrip(">")
    return inner.split("[")[0]


@cache
def holds_header(msg_class: type) -> bool:
    """Whether a std_msgs/Header sits anywhere inside the message."""
    for field_type in msg_class.get_fields_and_field_types().values():
        element = element_type(field_type)
        if element == HEADER or ("/" in element and holds_header(message_class(element))):
            return True
    return False


def map_header_stamps(msg: Any, new_stamp: Callable[[int], int]) -> None:
    """Replace every header stamp inside `msg` (ns) with `new_stamp(stamp)`; zero stays zero.

    A zero stamp means "the latest available" to tf2 and rviz (a marker drawn with the
    newest transform), not a moment to move.
    """
    for name, field_type in msg.get_fields_and_field_types().items():
        element = element_type(field_type)
        if "/" not in element or element == "builtin_interfaces/Time":
            continue
        value = getattr(msg, name)
        for item in (value if element != field_type else [value]):
            if element == HEADER:
                stamp = item.stamp.sec * 1_000_000_000 + item.stamp.nanosec
                if stamp:
                    sec, nanosec = divmod(new_stamp(stamp), 1_000_000_000)
                    item.stamp = Time(sec=sec, nanosec=nanosec)
            else:
                map_header_stamps(item, new_stamp)
