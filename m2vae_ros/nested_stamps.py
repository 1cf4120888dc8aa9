"""Header stamps inside messages beyond a leading one (TFMessage, MarkerArray, nav_msgs/Path).

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
    return any(field_holds_header(t) for t in msg_class.get_fields_and_field_types().values())


def field_holds_header(field_type: str) -> bool:
    """Whether a field (one message, a sequence or an array of them) is or contains a header."""
    element = element_type(field_type)
    return element == HEADER or ("/" in element and holds_header(message_class(element)))


def map_header_stamps(msg: Any, new_stamp: Callable[[int], int]) -> None:
    """Replace every header stamp inside `msg` (ns) with `new_stamp(stamp)`."""
    for name, field_type in msg.get_fields_and_field_types().items():
        if not field_holds_header(field_type):  # a 200k-point marker's points are never visited
            continue
        element, value = element_type(field_type), getattr(msg, name)
        for item in (value if element != field_type else [value]):
            if element == HEADER:
                stamp = new_stamp(item.stamp.sec * 1_000_000_000 + item.stamp.nanosec)
                item.stamp = Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
            else:
                map_header_stamps(item, new_stamp)
