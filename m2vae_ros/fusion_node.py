"""Live M²VAE fusion: encode whichever sensors are alive, publish the latent and imputations.

Every sensor topic is read with depth 1 and decoded on arrival by the same codec the
dataset builder uses; the newest valid sample per sensor is kept. An inference trigger
(each arrival of the fastest alive sensor that is on time, see `Pacer`, or a
fixed `rate_hz` timer) wakes a worker thread that encodes exactly the alive subset.
While the worker is busy, triggers collapse into one pending run on the newest data
and the superseded ones are counted as dropped, so a slow model never builds a backlog.
Bad messages are counted and ignored; only a broken model or contradictory parameters
stop the node, at start-up.

Outputs (relative to the node): ``~/latent`` (sensor_msgs/Image 32FC1, 2 × latent_dim:
mean row, std row), ``~/active_modalities`` (std_msgs/String such as ``camera+lidar``,
``none`` when no sensor is alive; transient-local), ``~/reconstruction/<modality>`` (in
that sensor's own frame) and ``/diagnostics`` at 1 Hz.
"""

from __future__ import annotations

import sys
import threading
import time
from functools import partial
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSCompatibility, QoSProfile, ReliabilityPolicy, qos_check_compatible
from rclpy.time import Time
from rclpy.topic_endpoint_info import TopicEndpointInfo
from rosgraph_msgs.msg import Clock as ClockMessage
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from m2vae_ros.artifact import ArtifactError, load_model
from m2vae_ros.codec import (
    CodecError,
    Decoded,
    could_feed,
    decode_message,
    reconstruction_message,
    require_decodable,
)
from m2vae_ros.devices import resolve_device
from m2vae_ros.fusion_diagnostics import (
    NO_MODALITIES,
    InferenceStats,
    RecentCaveats,
    inference_status,
    modality_status,
)
from m2vae_ros.fusion_params import (
    MODALITY_PREFIX,
    StartupError,
    declare_modality_params,
    declare_node_params,
    trained_frames,
    trained_timeouts,
    unknown_parameters,
)
from m2vae_ros.gil import prompt_thread_switching
from m2vae_ros.inference import LatentFusion
from m2vae_ros.latent_msg import latent_image
from m2vae_ros.liveness import NS_PER_S, ModalityLiveness, Pacer
from m2vae_ros.qos import latched_qos, output_qos, sensor_qos
from m2vae_ros.reach import REACH_HINTS, ReturnsReach
from m2vae_ros.ros_types import NATURAL_TYPES, MessageTypeError, message_class
from m2vae_ros.subsets import subset_name

NODE_NAME = "m2vae_fusion"
LIVENESS_CHECK_PERIOD_S = 0.05
DIAGNOSTICS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0
CLOCK_STILL_S = 2.0  # under use_sim_time, a /clock standing still this long is reported


class FusionNode(Node):
    """The `m2vae_fusion` node; raises StartupError when it cannot run.

    Threads: the executor's thread runs every callback (sensor messages, timers,
    parameter changes); the worker (`_inference_loop`) runs the model. What they share:

    - `liveness` and `_pacer`: written by callbacks, read by the worker, always under
      `_liveness_lock`. Reads write too: after the clock jumps back, `alive()` forgets
      arrivals that now lie in the future.
    - `_latest` and `_frame_ids`: written by callbacks, read by the worker; each is one dict
      store or read, atomic under the GIL. A sample is stored before its sensor can count
      as alive, so the worker finds one for every alive sensor.
    - `_pending` (an Event) with `_trigger_lock`: a trigger sets it, the worker clears it;
      the lock makes "already set, so count one dropped" and "set" one step.
    - `stats`: locked inside InferenceStats; the worker records, the diagnostics timer reads.
    - `_last_inputs` is the worker's alone; `_active`, `_clock_heard` and `_reach` the callbacks'.
      `_stopping` ends the worker (`stop`).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        try:
            super().__init__(node_name, **kwargs)
        except ParameterException as exc:  # rclpy's own parameters, e.g. use_sim_time:=1 (an integer)
            raise StartupError(str(exc)) from None
        self.params = declare_node_params(self)
        torch.set_num_threads(self.params.torch_threads)
        device, device_warning = resolve_device(self.params.device)
        if device_warning:
            self.get_logger().warning(device_warning)
        try:
            loaded = load_model(self.params.model_path, device=device)
        except (ArtifactError, OSError, RuntimeError) as exc:  # RuntimeError: CUDA out of memory, driver
            raise StartupError(f"cannot load model from {self.params.model_path!r}: {exc}") from None
        self.spec = loaded.spec
        for modality in self.spec.modalities:  # a vector modality can never be fed: say so first
            try:
                require_decodable(modality)
            except CodecError as exc:
                raise StartupError(exc.detail) from None
        self.fusion = LatentFusion(loaded.model, device)
        # rclpy has no public accessor for the overrides given by params files and -p.
        overrides = set(self._parameter_overrides)
        timeouts, timeout_warning = trained_timeouts(loaded.metadata, self.spec.names)
        if timeout_warning:
            self.get_logger().warning(timeout_warning)
        frames = trained_frames(loaded.metadata, self.spec.names)
        self.modality_params = declare_modality_params(self, self.spec, overrides, timeouts, frames)
        if unknown := unknown_parameters(self, overrides):
            self.get_logger().warning(unknown)
        self.add_post_set_parameters_callback(self._on_parameters_set)

        self.liveness = {
            name: ModalityLiveness(timeout_ns=int(p.timeout_s * NS_PER_S))
            for name, p in self.modality_params.items()
        }
        # Throttling is per logger: one sensor's stream of bad messages must not hide another's.
        self._sensor_loggers = {name: self.get_logger().get_child(name) for name in self.spec.names}
        self._pacer = Pacer()  # used under _liveness_lock
        self.stats = InferenceStats()
        self._latest: dict[str, Decoded] = {}
        self._recent_caveats = {name: RecentCaveats() for name in self.spec.names}
        self._frame_ids: dict[str, str] = {}  # last valid input's frame, to stamp its reconstruction
        # Per LiDAR, the share of the model's cells its recent messages reach (diagnostics).
        self._reach = {m.name: ReturnsReach(m.kind) for m in self.spec.modalities if m.kind in REACH_HINTS}
        self._active = -1  # no subset published yet
        self._last_inputs: tuple[int, tuple[Decoded, ...]] | None = None  # the worker's; see _infer_once
        self._trigger_lock = threading.Lock()
        # Held for every use of self.liveness: the worker reads it too, and reads forget
        # arrivals after a clock jump, so they write as well (see also _read_alive_subset).
        self._liveness_lock = threading.Lock()
        self._pending = threading.Event()
        self._stopping = threading.Event()

        self._latent_pub = self.create_publisher(Image, "~/latent", output_qos())
        self._active_pub = self.create_publisher(String, "~/active_modalities", latched_qos())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._reconstruction_pubs = {}
        if self.params.publish_reconstructions:
            self._reconstruction_pubs = {
                m.name: self.create_publisher(
                    message_class(NATURAL_TYPES[m.kind]), f"~/reconstruction/{m.name}", output_qos())
                for m in self.spec.modalities if m.kind in NATURAL_TYPES
            }
        # Diagnostics name the topic as subscribed: after namespaces and remapping.
        self._resolved_topics: dict[str, str] = {}
        self._sensor_qos = sensor_qos(self.params.reliability)
        readers: dict[str, tuple[str, str]] = {}  # resolved topic → (modality, type) subscribed to it
        for modality in self.spec.modalities:
            wiring = self.modality_params[modality.name]
            topic, msg_type = wiring.topic, wiring.msg_type
            try:
                require_decodable(modality, msg_type)
                msg_class = message_class(msg_type)
                resolved = self.resolve_topic_name(topic)
                other, other_type = readers.setdefault(resolved, (modality.name, msg_type))
                if other_type != msg_type:  # DDS carries one type per topic; rclpy would raise RCLError
                    raise StartupError(f"modalities {other!r} and {modality.name!r} both read {resolved}, as "
                                       f"{other_type} and {msg_type}: a topic carries one message type; "
                                       f"set parameter '{MODALITY_PREFIX}.{modality.name}.topic'")
                callback = partial(self._on_message, modality.name)
                subscription = self.create_subscription(msg_class, topic, callback, self._sensor_qos)
                self._resolved_topics[modality.name] = subscription.topic_name
            except MessageTypeError as exc:
                raise StartupError(str(exc)) from None
            except CodecError as exc:
                raise StartupError(exc.detail) from None
            except InvalidTopicNameException:
                raise StartupError(f"modality {modality.name!r}: invalid topic name {topic!r}") from None

        self.create_timer(LIVENESS_CHECK_PERIOD_S, self._publish_active_if_changed)
        # On a steady clock: with use_sim_time and no /clock yet, the node's timers stand still,
        # and the diagnostics are where an operator learns why.
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Whether /clock has spoken, which the time can't tell: a paused simulator publishes 0.
        # Best effort, as rclpy's own time source listens; dropped after the first message.
        self._clock_heard = False
        self._clock_seen = (0, time.monotonic())  # (node clock, steady time when it last moved)
        listening = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._clock_listener = self.create_subscription(
            ClockMessage, "/clock", self._on_first_clock, listening)
        if self.params.rate_hz > 0:
            self.create_timer(1.0 / self.params.rate_hz, self._request_inference)
        self._publish_active_if_changed()
        self._worker = threading.Thread(target=self._inference_loop, name="m2vae_inference", daemon=True)
        self._worker.start()
        trigger = f"{self.params.rate_hz} Hz" if self.params.rate_hz else "each arrival of the fastest sensor"
        self.get_logger().info(f"fusing {list(self.spec.names)} on {device}, inference at {trigger}")

    # --- sensors (executor thread) ---------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_message(self, name: str, msg: Any) -> None:
        """Decode, validate and keep the newest sample; never raises on bad input."""
        now_ns = self._now_ns()
        try:
            if not now_ns:
                # use_sim_time with no /clock time yet: an arrival at time 0 would expire as soon
                # as the clock starts, making the active subset flap, and every stamp looks ahead.
                raise CodecError("no_clock", "the node clock reads 0: use_sim_time is true and no /clock "
                                 "time has arrived; start the simulator, or set use_sim_time false for "
                                 "live sensors and m2vae-play, which publishes no /clock")
            decoded = decode_message(msg, self.spec.modality(name))
            if decoded.stamp_ns > now_ns + int(self.params.max_future_stamp_s * NS_PER_S):
                ahead_s = (decoded.stamp_ns - now_ns) / NS_PER_S
                raise CodecError("future_stamp", f"header stamp {ahead_s:.3f} s ahead of the node clock")
        except CodecError as exc:
            with self._liveness_lock:
                self.liveness[name].record_invalid(exc.reason)
            logger = self._sensor_loggers[name]
            logger.warning(f"ignoring message ({exc})", throttle_duration_sec=WARN_THROTTLE_S)
            return
        # Stored before the sensor can count as alive, so the worker's `_latest[name]` of every
        # alive sensor exists; one dict store needs no lock under the GIL.
        self._latest[name] = decoded
        self._frame_ids[name] = str(msg.header.frame_id)
        if name in self._reach:
            self._reach[name].add(decoded.mask)
        self._recent_caveats[name].add(decoded.caveats, now_ns)
        with self._liveness_lock:
            self.liveness[name].record_valid(now_ns)
            triggers = self.params.rate_hz == 0 and self._pacer.triggers(name, self.liveness, now_ns)
        self._publish_active_if_changed()
        if triggers:
            self._request_inference()

    def _on_first_clock(self, _msg: ClockMessage) -> None:
        self._clock_heard = True
        self.destroy_subscription(self._clock_listener)

    def _alive_subset(self, now_ns: int) -> int:
        return sum(1 << i for i, name in enumerate(self.spec.names) if self.liveness[name].alive(now_ns))

    def _publish_active_if_changed(self) -> None:
        with self._liveness_lock:
            active = self._alive_subset(self._now_ns())
        if active != self._active:
            self._active = active
            self._active_pub.publish(String(data=self._active_name(active)))

    def _active_name(self, subset: int) -> str:
        return subset_name(subset, self.spec.names) if subset else NO_MODALITIES

    def _request_inference(self) -> None:
        """Wake the worker; a trigger still pending is superseded by this one and counted as dropped."""
        with self._trigger_lock:
            if self._pending.is_set():
                self.stats.record_dropped()
            self._pending.set()

    def _publish_diagnostics(self) -> None:
        now_ns = self._now_ns()
        node_name = self.get_fully_qualified_name()
        array = DiagnosticArray()
        array.header.stamp = Time(nanoseconds=now_ns).to_msg()
        problems = {name: self._unheard_publishers(name) for name in self.modality_params}
        with self._liveness_lock:
            array.status = [
                modality_status(node_name, name, self._resolved_topics[name], self.liveness[name], now_ns,
                                problems[name], self._latest.get(name), self._reach.get(name),
                                self._recent_caveats[name].recent(now_ns))
                for name in self.modality_params
            ]
            active = self._alive_subset(now_ns)
        active_name = self._active_name(active)
        steady_s = time.monotonic()
        if now_ns != self._clock_seen[0]:
            self._clock_seen = (now_ns, steady_s)
        waiting = self._sim_clock_problem(steady_s - self._clock_seen[1])
        array.status.append(inference_status(node_name, self.stats, active_name, now_ns, waiting))
        self._diagnostics_pub.publish(array)

    def _sim_clock_problem(self, still_s: float) -> str:
        """Why, under use_sim_time, liveness and rates mean nothing now; '' when the clock runs.

        They are measured on the node clock: while /clock stands still (a paused or crashed
        simulator) every sensor heard once stays alive and every rate is a lifetime count.
        `still_s`: steady seconds since the diagnostics timer last saw the node clock move.
        """
        if not self.get_clock().ros_time_is_active:
            return ""
        if not self._clock_heard:
            return "use_sim_time is true and no /clock has arrived yet"
        if still_s < CLOCK_STILL_S:
            return ""
        return (f"/clock has not advanced for at least {still_s:.0f} s: sensor liveness and rates "
                "stand still with it")

    def _unheard_publishers(self, name: str) -> str:
        """Why a sensor stays silent when its topic has publishers DDS will not connect, or none
        while other topics carry what it reads; else ''.

        DDS matches by type and by QoS, so a publisher of another type, or a best-effort one
        for a reliable subscription, delivers nothing and no message fails to decode: without
        this check the sensor would look merely dead. Read from the graph at each call, so a
        publisher that left takes its complaint with it.
        """
        wiring, topic = self.modality_params[name], self._resolved_topics[name]
        # The graph query remaps the name it is given: the configured name, not the resolved one.
        publishers = self.get_publishers_info_by_topic(wiring.topic)
        offered = {info.topic_type for info in publishers}
        expected = wiring.msg_type
        problem = ""
        with self._liveness_lock:
            never_heard = self.liveness[name].last_valid_ns is None
        if not publishers and never_heard:
            if candidates := self._readable_topics(name):
                listed = ", ".join(f"{t} ({', '.join(types)})" for t, types in candidates.items())
                other_type = any(expected not in types for types in candidates.values())
                also = f" (and '{MODALITY_PREFIX}.{name}.msg_type' for another type)" if other_type else ""
                problem = (f"no publisher on {topic}; topics it could read: {listed}: set parameter "
                           f"'{MODALITY_PREFIX}.{name}.topic'{also}")
        elif offered and expected not in offered:
            problem = (f"the publishers of {topic} send {', '.join(sorted(offered))}, not {expected}: set "
                       f"parameter '{MODALITY_PREFIX}.{name}.msg_type'")
        elif reason := self._qos_refusal([info for info in publishers if info.topic_type == expected]):
            problem = f"the publishers of {topic} offer QoS this subscription cannot take: {reason}"
            if self.params.reliability == "reliable":
                problem += "; parameter 'qos.reliability' is reliable: set it to best_effort"
        if problem:
            self._sensor_loggers[name].warning(problem, throttle_duration_sec=WARN_THROTTLE_S)
        return problem

    def _qos_refusal(self, publishers: list[TopicEndpointInfo]) -> str:
        """Why DDS connects none of the publishers (those of the expected type) to the sensor
        subscription's QoS; '' when it connects some, or there are none."""
        verdicts = [qos_check_compatible(info.qos_profile, self._sensor_qos) for info in publishers]
        if not verdicts or any(verdict != QoSCompatibility.ERROR for verdict, _ in verdicts):
            return ""
        return verdicts[0][1].removeprefix("ERROR: ").strip(" ;")

    def _readable_topics(self, name: str) -> dict[str, list[str]]:
        """Each published topic whose type the sensor's kind decodes → those types, leaving out this
        node's own outputs (a reconstruction is no sensor) and the topics its other sensors read
        (a second camera whose driver is not up yet is not to be pointed at the first's). The
        graph also lists topics that only have subscribers, this node's among them."""
        kind = self.spec.modality(name).kind
        own = self.get_fully_qualified_name().rstrip("/") + "/"
        taken = {topic for other, topic in self._resolved_topics.items() if other != name}
        readable = {topic: sorted(t for t in types if could_feed(kind, topic, t))
                    for topic, types in self.get_topic_names_and_types()}
        return {topic: types for topic, types in readable.items() if types and not topic.startswith(own)
                and topic not in taken and self.get_publishers_info_by_topic(topic)}

    def _on_parameters_set(self, parameters: list[Parameter]) -> None:
        """Apply live changes of the only non-read-only parameters, the sensor timeouts."""
        for parameter in parameters:
            prefix, _, rest = parameter.name.partition(".")
            name, _, key = rest.rpartition(".")
            if prefix == MODALITY_PREFIX and key == "timeout_s" and name in self.liveness:
                with self._liveness_lock:
                    self.liveness[name].timeout_ns = int(parameter.value * NS_PER_S)

    # --- inference (worker thread) ---------------------------------------------------------

    def _inference_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._pending.wait(timeout=0.1):
                continue
            with self._trigger_lock:
                self._pending.clear()
            try:
                self._infer_once()
            except Exception as exc:  # a model bug must not kill the worker silently
                if self._stopping.is_set() or not self.context.ok():
                    return  # Ctrl-C shut the context down under a publish: nothing failed
                self.stats.record_failure(self._now_ns(), repr(exc))  # diagnostics turn ERROR
                self.get_logger().error(f"inference failed: {exc!r}", throttle_duration_sec=WARN_THROTTLE_S)

    def _read_alive_subset(self) -> tuple[int, int]:
        """(now, alive subset), read with no arrival recorded in between.

        Such an arrival would postdate `now` and look like the clock jumping back, which
        makes a sensor start over as never heard (see liveness.py).
        """
        with self._liveness_lock:
            now_ns = self._now_ns()
            return now_ns, self._alive_subset(now_ns)

    def _infer_once(self) -> None:
        now_ns, subset = self._read_alive_subset()
        if not subset:
            return
        samples = {name: self._latest[name] for i, name in enumerate(self.spec.names) if subset >> i & 1}
        # A rate_hz tick with no new message since the last inference would publish the same
        # latent under the same stamp again. The samples themselves are kept, not their ids,
        # which a freed sample's successor could reuse.
        inputs = (subset, tuple(samples.values()))
        last = self._last_inputs
        if last and last[0] == subset and all(a is b for a, b in zip(last[1], inputs[1], strict=True)):
            return
        started = time.perf_counter()
        posterior = self.fusion.encode({name: sample.tensor for name, sample in samples.items()}, subset)
        if not (np.isfinite(posterior.mean).all() and np.isfinite(posterior.std).all()):
            raise FloatingPointError("the encoder gave a non-finite latent; it is not published")
        encoder_s = time.perf_counter() - started
        stamp_ns = max(sample.stamp_ns for sample in samples.values())
        # The latent goes out before the (slower) decoders run: it is what downstream consumers wait for.
        self._latent_pub.publish(latent_image(posterior.mean, posterior.std, stamp_ns, self.params.frame_id))
        # Set once the latent is out: an encoder failure is retried on the next tick, a decoder one is not.
        self._last_inputs = inputs
        listened = [name for name, pub in self._reconstruction_pubs.items() if pub.get_subscription_count()]
        stamp = Time(nanoseconds=stamp_ns).to_msg()
        for name, tensor in self.fusion.reconstruct(posterior, listened).items():
            header = Header(stamp=stamp, frame_id=self._reconstruction_frame(name))
            message = reconstruction_message(tensor, self.spec.modality(name), header)
            self._reconstruction_pubs[name].publish(message)
        # Counted once everything went out: a decoder that fails makes the inference a failure.
        self.stats.record(now_ns, encoder_s)

    def _reconstruction_frame(self, name: str) -> str:
        """The sensor's own frame as its last valid message named it, else `modalities.<name>.frame_id`
        (the frame of the training recordings), else the node's `frame_id`.

        A reconstructed scan stamped `base_link` would be drawn at the wrong place (RViz, TF);
        the parameters stand in for a sensor never heard from or one whose messages name no frame.
        """
        return self._frame_ids.get(name) or self.modality_params[name].frame_id or self.params.frame_id

    def stop(self) -> None:
        """Stop the worker thread before the node is destroyed."""
        self._stopping.set()
        self._worker.join(timeout=5.0)


USAGE = """usage: m2vae-fusion --ros-args -p model_path:=RUN_DIR/model [-p NAME:=VALUE] [--params-file F]

{summary}

Parameters with their defaults, and the topics, are in the README ("Running on a robot")
and in config/fusion.yaml; on a ROS installation `ros2 param describe /m2vae_fusion NAME`."""


def main(args: list[str] | None = None) -> int:
    """Entry point of `m2vae-fusion` / `ros2 run m2vae_ros fusion_node`; returns the exit status."""
    argv = sys.argv if args is None else args
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]  # parse no params file
    if {"-h", "--help"} & set(own):
        print(USAGE.format(summary=__doc__.split("\n\n")[0]))
        return 0
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # rcl's RCLError, e.g. an unreadable --params-file
        print(f"m2vae-fusion: error: {exc}", file=sys.stderr)
        return 2
    try:
        node = FusionNode()
    except StartupError as exc:
        print(f"m2vae-fusion: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        # The executor thread and the inference worker share the GIL (see gil.py).
        with prompt_thread_switching():
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:  # rcl's "context is not valid": Ctrl-C shut it down while the executor waited
        if rclpy.ok():
            raise
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
