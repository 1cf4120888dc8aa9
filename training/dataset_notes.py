"""What a dataset build found beyond its counts, as lines for people: m2vae-dataset prints them
after its summary, m2vae-train before it trains."""

from __future__ import annotations

from m2vae_training.dataset import PreparedDataset, feeding_topics_hint, unreadable_type

MIN_REACH = 0.95  # below: the config's LiDAR geometry is likely not the sensor's
REACH_HINTS = {
    "scan": "is angle_min…angle_max wider than the scanner's?",
    "range_image": "do rings, fov_up_deg and fov_down_deg match the sensor's beams?",
}


def notes(dataset: PreparedDataset) -> list[str]:
    """What the summary object leaves out, a line each: reuse, out-of-order stamps, damage, sensors
    recorded into separate bags, failures on a shared topic, a configured topic the bags lack
    (and the recorded ones that could feed its sensor) or record with a type its kind cannot
    read, a LiDAR geometry unlike the sensor's, and where the problem examples are."""
    manifest = dataset.manifest
    lines = [f"dataset {'reused' if manifest.get('reused') else 'written'}: {dataset.directory}"]
    lines += [f"{topic}: {t['out_of_order']} header stamps out of order"
              for topic, t in manifest["topics"].items() if t.get("out_of_order")]
    lines += [f"damage: {line}" for line in manifest.get("damage", [])]
    lines += manifest.get("separately_synchronised", [])
    lines += [f"{name} (on a topic it shares with another sensor) failed on {failure_counts(failures)}"
              for name, failures in manifest.get("shared_topic_failures", {}).items()]
    recorded = manifest.get("recorded_topics", {})
    lines += [f"{m.topic} is not in the bags; {hint}" for m in dataset.spec.modalities
              if not manifest["topics"][m.topic]["type"] and (hint := feeding_topics_hint(m, recorded))]
    lines += [hint for m in dataset.spec.modalities if (hint := unreadable_type(m, recorded))]
    for name, share in manifest.get("returns_reach", {}).items():
        if share < MIN_REACH:
            kind = dataset.spec.modality(name).kind
            cells = "bins" if kind == "scan" else "cells"
            lines.append(f"{name}: {share:.0%} of its {cells} hold a return in some sample, the others in "
                         f"none: {REACH_HINTS[kind]}")
    if manifest.get("problems"):
        lines.append(f"{len(manifest['problems'])} problem examples (topic, stamp, reason) in manifest.json")
    return lines


def failure_counts(failures: dict[str, int]) -> str:
    """`reason n, reason n` for a failure count table."""
    return ", ".join(f"{reason} {n}" for reason, n in failures.items())
