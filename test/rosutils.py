"""Helpers for tests that talk to real ROS 2 processes over real DDS.

Every test gets its own ROS_DOMAIN_ID, derived from its pytest node id and the process
id, so tests running in parallel (xdist workers, two developers on one machine) do not
hear each other; traffic stays on loopback. The test process joins the same domain with
its own rclpy context, so nothing global leaks between tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

VENV_BIN = Path(sys.executable).parent
MAX_DOMAIN_ID = 100


def domain_id_for(test_id: str) -> int:
    """A domain in 1…100 that differs between tests and between concurrent pytest runs."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return 1 + zlib.crc32(f"{test_id}|{worker}|{os.getpid()}".encode()) % MAX_DOMAIN_ID


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for a child ROS process on `domain_id`, loopback only, one torch thread."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


class RosPeer:
    """The test's side of the conversation: one node in its own context on the test's domain."""

    def __init__(self, domain_id: int, name: str = "test_peer") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def collect(self, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> list[Any]:
        """Subscribe and return the list the received messages are appended to."""
        received: list[Any] = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Process callbacks until `condition()` holds; False if `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@contextmanager
def ros_peer(domain_id: int, name: str = "test_peer") -> Iterator[RosPeer]:
    peer = RosPeer(domain_id, name)
    try:
        yield peer
    finally:
        peer.close()


@contextmanager
def running(command: list[str], domain_id: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a ROS process for the duration of the block, then stop it with SIGINT (kill if stuck).

    Its output goes to `log_path` so an assertion message can quote it. When the block
    succeeds, the process must also have ended well: exit status 0 (it ended by itself,
    or handled the SIGINT as a clean shutdown), which an uncaught exception on shutdown
    does not give.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=ros_env(domain_id), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    tool, output = Path(command[0]).name, log_path.read_text(errors="replace")[-3000:]
    assert process.returncode == 0, f"{tool} ended with exit status {process.returncode}:\n{output}"


def run_to_exit(
    command: list[str], domain_id: int, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a ROS process that is expected to end by itself; returns its exit status and output."""
    return subprocess.run(command, env=ros_env(domain_id), capture_output=True, text=True, timeout=timeout_s)
