"""`demo_out/report.md`: what the demo trained, how it scored, and how the live node behaved.

The live figures put the replay's bag time on one axis: the active subset, the latent
(mean of a few dimensions and the mean posterior std) and the error of the LiDAR the
node publishes against the bag's scans. While the LiDAR is in the active subset, the
reference is the newest scan the node can have encoded (recorded at or before the
reconstruction by the bag's record times, which m2vae-play publishes in: a reconstruction's
stamp is its newest input's, mapped back from the replay's clock to that input's recorded
stamp and so to its record time); while it is not, the scan is imputed
from the camera alone and the reference is the scan nearest in time. Which case applies
follows the node's own active subset at the time each reconstruction arrived (both are
receive times on this host's clock), so the liveness timeout after the last scan counts
as alive and the first reconstruction after the LiDAR returns counts as reconstructed.
The errors pool every valid return into one RMSE, the definition m2vae-eval uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from m2vae_training.bags import Bag
from m2vae_training.demo_live import LiveRecord
from m2vae_training.metrics import ERROR_UNITS
from m2vae_training.report import ERRORS_EXPLAINED

from m2vae_ros.artifact import load_model
from m2vae_ros.atomic import write_atomic
from m2vae_ros.codec import CodecError, decode_message, stamp_ns
from m2vae_ros.sim.world import EPISODE_SECONDS
from m2vae_ros.spec import ModalitySpec, ModelSpec

CAMERA_TOPIC = "/camera/image_raw"
SCAN_TOPIC = "/scan"


def write_report(out: Path, record: LiveRecord, live_bag: Path, drop: tuple[float, float]) -> Path:
    """Figures + report.md under `out`; returns the report's path."""
    model = load_model(out / "run" / "model")
    spec = model.spec
    lidar = spec.modality("lidar")
    if record.anchor is None or not record.latent_stamp:
        raise RuntimeError("the live run recorded no camera frame or no latent: see demo_out/live/")
    replay_stamp, frame = record.anchor
    truth = _truth_scans(live_bag, lidar, frame)
    # Replay stamps → recorded stamps: m2vae-play (rate 1) moves all stamps of a pass by one offset.
    shift = truth.anchor_stamp - replay_stamp
    first_camera = truth.first_camera_stamp
    latent_t = (np.asarray(record.latent_stamp) + shift - first_camera) / 1e9
    lidar_t = (np.asarray(record.lidar_stamp) + shift - first_camera) / 1e9
    # Replay stamps and the probe's receive times share this host's clock.
    active_t = [(t_ns + shift - first_camera) / 1e9 for t_ns, _ in record.active]
    lidar_received_t = (np.asarray(record.lidar_received) + shift - first_camera) / 1e9
    imputed = ~_member_at(lidar_received_t, active_t, [name for _, name in record.active], lidar.name)
    # By record time, not stamp: a scan stamped just before a camera frame may be recorded,
    # and so replayed, after it; the node encoding that frame had the scan before.
    recorded = truth.record_times(np.asarray(record.lidar_stamp) + shift)
    squared, returns = _squared_errors(recorded, record.lidar_ranges, truth.scan_records, truth.scan_ranges,
                                       lidar, imputed)
    errors = np.sqrt(np.divide(squared, returns, out=np.full(len(squared), np.nan), where=returns > 0))
    latency = record.latency_ms()
    # The node's view before the replay starts (nothing heard yet) and after it ends (timeouts) is left out.
    end_t = float(latent_t[-1])
    changes = ", ".join(f"{t:.1f} s → `{name or 'none'}`" for t, (_, name) in zip(active_t, record.active,
                                                                                 strict=True)
                        if 0.0 <= t <= end_t)

    live_dir = out / "live"
    live_dir.mkdir(parents=True, exist_ok=True)
    _timeline(live_dir / "timeline.png", latent_t, record, active_t, lidar_t, errors, drop)
    _latency(live_dir / "latency.png", latency)

    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    lines = [
        "# m2vae_ros demo report",
        "",
        "Trained on a simulated arena recording (`demo_out/bags/train`), evaluated and run live on a",
        "recording with another seed (`demo_out/bags/live`). Commands: see the `make demo` output.",
        "",
        "## Evaluation on the unseen recording (`m2vae-eval`)",
        "",
        _metrics_table(metrics, spec),
        "",
        _metrics_legend(metrics, model.metadata.get("provenance", {}).get("epochs", "a few")),
        "",
        "![reconstructions per subset](eval/recon_grid.png)",
        "",
        "![latent per subset](eval/latent_scatter.png)",
        "",
        f"## Live: fusion node, LiDAR dead from {drop[0]:g} s to {drop[1]:g} s",
        "",
        f"- latents received: {len(latency)} over {latent_t[-1] - latent_t[0]:.1f} s "
        f"({len(latency) / max(latent_t[-1] - latent_t[0], 1e-9):.1f} Hz)",
        f"- active subset changes during the replay: {changes}",
        f"- LiDAR error against the bag (RMSE over all valid returns, as m2vae-eval): reconstructed "
        f"{_number(_pooled_rmse(squared[~imputed], returns[~imputed]), '.3f')} m while the LiDAR is in the "
        f"active subset, imputed from the camera alone "
        f"{_number(_pooled_rmse(squared[imputed], returns[imputed]), '.3f')} m while it is not",
        f"- end-to-end latency (sensor stamp → latent received; the simulated drivers publish 2–8 ms "
        f"after their stamps): p50 {np.percentile(latency, 50):.1f} ms, "
        f"p99 {np.percentile(latency, 99):.1f} ms",
        "",
        "![timeline](live/timeline.png)",
        "",
        "![latency](live/latency.png)",
        "",
    ]
    report = out / "report.md"
    write_atomic(report, "\n".join(lines).encode())
    return report


@dataclass
class _Truth:
    """The live bag's scans by record time, and how its stamps map to record times."""

    scan_records: np.ndarray  # record times (ns), sorted
    scan_ranges: list[np.ndarray]  # metres, NaN = no return; in scan_records' order
    first_camera_stamp: int
    anchor_stamp: int  # of the camera frame the live run saw first
    record_of: dict[int, int]  # header stamp → record time, camera frames and scans

    def record_times(self, stamps: np.ndarray) -> np.ndarray:
        """The record times of the messages stamped `stamps` (each the stamp of some input)."""
        try:
            return np.array([self.record_of[int(stamp)] for stamp in stamps], dtype=np.int64)
        except KeyError as exc:
            raise RuntimeError(f"no camera frame or scan of the live bag is stamped {exc}") from None


def _truth_scans(bag_path: Path, lidar: ModalitySpec, frame: bytes) -> _Truth:
    """The bag's scans decoded, its first camera stamp, and that of the camera frame whose
    pixels are `frame`."""
    records: list[int] = []
    ranges: list[np.ndarray] = []  # in the bag's order; sorted by record time on return
    record_of: dict[int, int] = {}
    first_camera: int | None = None
    anchor: int | None = None
    scale = lidar.preprocess.range_max
    with Bag(bag_path) as bag:
        for topic, msgtype, record_ns, raw in bag.messages({CAMERA_TOPIC, SCAN_TOPIC}):
            msg = bag.deserialize(raw, msgtype)
            stamp = stamp_ns(msg)
            record_of[stamp] = record_ns
            if topic == CAMERA_TOPIC:
                first_camera = stamp if first_camera is None else min(first_camera, stamp)
                if anchor is None and bytes(msg.data) == frame:
                    anchor = stamp
                continue
            try:
                decoded = decode_message(msg, lidar)
            except CodecError:
                continue
            records.append(record_ns)
            ranges.append(np.where(decoded.mask, decoded.tensor * scale, np.nan).reshape(-1))
    if first_camera is None or not records:
        raise RuntimeError(f"{bag_path} has no {CAMERA_TOPIC} or no {SCAN_TOPIC} messages")
    if anchor is None:
        raise RuntimeError(f"the camera frame the live run saw first is not in {bag_path}")
    order = np.argsort(records, kind="stable")
    return _Truth(np.asarray(records)[order], [ranges[i] for i in order], first_camera, anchor, record_of)


def _member_at(times: np.ndarray, change_t: list[float], subsets: list[str], modality: str) -> np.ndarray:
    """Whether `modality` is in the active subset in force at each time (changes at `change_t`)."""
    latest = np.searchsorted(np.asarray(change_t, dtype=float), times, side="right") - 1
    return np.array([i >= 0 and modality in subsets[i].split("+") for i in latest], dtype=bool)


def _squared_errors(times: np.ndarray, published: list[np.ndarray], truth_times: np.ndarray,
                    truth: list[np.ndarray], lidar: ModalitySpec,
                    imputed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per published scan, the summed squared error (m²) over its reference's valid returns, and
    their number (0 when the beam counts differ).

    Times are record times. The reference of a reconstruction is the newest bag scan recorded
    at or before the input it was stamped with (the one the node encoded); of an `imputed`
    one, the bag scan nearest in time. `truth_times` is sorted. Sums rather than per-scan
    RMSEs, so an error over several scans weighs every return alike, as m2vae-eval's does.
    """
    range_max = lidar.preprocess.range_max
    squared, returns = np.zeros(len(published)), np.zeros(len(published), dtype=np.int64)
    for i, (time_ns, ranges) in enumerate(zip(times, published, strict=True)):
        if imputed[i]:
            reference = int(np.argmin(np.abs(truth_times - time_ns)))
        else:
            reference = max(int(np.searchsorted(truth_times, time_ns, side="right")) - 1, 0)
        nearest = truth[reference]
        estimate = np.where(np.isfinite(ranges), ranges, range_max)
        valid = np.isfinite(nearest)
        if estimate.shape == nearest.shape:
            squared[i], returns[i] = float(np.sum((estimate[valid] - nearest[valid]) ** 2)), valid.sum()
    return squared, returns


def _pooled_rmse(squared: np.ndarray, returns: np.ndarray) -> float | None:
    """One RMSE (m) over all valid returns of the given scans; None when they have none."""
    total = int(returns.sum())
    return float(np.sqrt(squared.sum() / total)) if total else None


def _timeline(path: Path, latent_t: np.ndarray, record: LiveRecord, active_t: list[float],
              lidar_t: np.ndarray, errors: np.ndarray, drop: tuple[float, float]) -> None:
    """Active subset, latent and LiDAR error over the replay; dotted lines where the simulated
    object changes (a new episode: the latent jumps there, and the error has a gap where the
    sample straddles two objects)."""
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True, layout="constrained")
    means = np.stack(record.latent_mean)
    stds = np.stack(record.latent_std)
    start_t, end_t = 0.0, float(latent_t[-1])
    for ax in axes:
        ax.axvspan(*drop, color="0.85", label="LiDAR dead")
        for t in np.arange(EPISODE_SECONDS, end_t, EPISODE_SECONDS):
            ax.axvline(t, color="0.5", linestyle=":", linewidth=1.0)
    names = [name or "none" for _, name in record.active]
    levels = {name: i for i, name in enumerate(dict.fromkeys(names))}
    ends = [*active_t[1:], end_t]
    for start, end, name in zip(active_t, ends, names, strict=True):
        if end > start_t and start < end_t:  # before the replay nothing is heard, after it sensors time out
            axes[0].hlines(levels[name], max(start, start_t), min(end, end_t), linewidth=8)
    axes[0].set_yticks(list(levels.values()), list(levels))
    axes[0].set_title("active subset (dotted: a new simulated object)")
    for d in range(min(4, means.shape[1])):
        axes[1].plot(latent_t, means[:, d], linewidth=0.8, label=f"mean z{d}")
    axes[1].plot(latent_t, stds.mean(axis=1), "k--", linewidth=1.2, label="mean posterior std")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    axes[1].set_ylabel("latent")
    axes[1].set_title("fused latent: four of its dimensions")
    axes[2].plot(lidar_t, errors, ".", markersize=2)
    axes[2].set_ylabel("RMSE of the scan (m)")
    axes[2].set_xlabel("bag time (s)")
    axes[2].set_xlim(start_t - 1.0, end_t + 1.0)
    axes[2].set_title("published LiDAR vs. the true scan (imputed from the camera while dead)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(path: Path, latency_ms: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(latency_ms, bins=60)
    ax.axvline(np.percentile(latency_ms, 50), color="k", label="p50")
    ax.axvline(np.percentile(latency_ms, 99), color="r", label="p99")
    ax.set_xlabel("sensor stamp → latent received (ms)")
    ax.set_ylabel("latents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _metrics_table(metrics: dict, spec: ModelSpec) -> str:
    """metrics.json's subsets as a table; a missing value (null there: no samples, not finite) is "–"."""
    errors = [f"{m.name} error ({ERROR_UNITS[m.kind]})" for m in spec.modalities]
    header = ["subset", "ELBO", "NB accuracy", *errors]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for subset, m in metrics["subsets"].items():
        cells = [subset, _number(m.get("elbo"), ".1f"), _number(m.get("nb_accuracy"), ".3f"),
                 *(_number(m["recon_error"].get(n), ".3f") for n in spec.names)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _metrics_legend(metrics: dict, epochs: object) -> str:
    """What the table's numbers are, and why the demo's model (trained `epochs`) scores low."""
    classes = metrics.get("classes") or []
    joint = list(metrics["subsets"])[-1]
    guess = metrics["subsets"][joint].get("constant_guess", {}).get("nb_accuracy")
    if guess is not None:
        chance = (f"{len(classes)} classes ({', '.join(classes)}); always guessing the most common scores "
                  f"{guess:.2f}")
    else:
        chance = "no class was scored on this recording" if classes else "this recording has no ground truth"
    return (
        f"{ERRORS_EXPLAINED} NB accuracy: one Gaussian naive Bayes fitted on the camera+LiDAR "
        f"latents of the training recording, scored on each subset's latents of this one; {chance}. "
        f"The LiDAR cannot see colour. The demo trains {epochs} epochs on one patrol recording to "
        "show the pipeline in minutes, so its accuracy is low; trained 60 epochs on inspection "
        "recordings, the camera reaches 0.82 (BENCHMARKS.md, `bench/train_eval.py`)."
    )


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
