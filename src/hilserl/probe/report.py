"""Run the encoder probe over backbones and layers; print the table, write the JSON.

Each row is one backbone, one layer, one view (`hilserl.probe.features`): the held-out R² of a linear probe for
the cube's x, y (and their mean; and its yaw where known, as cos 4θ and sin 4θ because a cube looks the same every
90°) and the mean cosine similarity of pairs of frames near and far apart, across the front/back line and on
the same side of it (`hilserl.probe.measures`). Per backbone, the forward time per frame.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .features import POLICY_LAYER, VIEWS, extract_features, view
from .frames import ProbeFrames
from .measures import FAR_M, NEAR_M, cosine_summary, ridge_probe_r2


def cpu_description() -> dict:
    """The CPU's model name, whether it has AVX512-BF16, and torch's thread count."""
    import torch

    from hilserl.agents.precision import cpu_bf16_name

    model, flags = platform.processor() or "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    return {"model": model, "avx512_bf16": "avx512_bf16" in flags.split(), "native_bf16": cpu_bf16_name(),
            "torch_threads": torch.get_num_threads()}


def probe_targets(frames: ProbeFrames) -> np.ndarray:
    """x, y (and cos 4·yaw, sin 4·yaw when the frames have a yaw) as columns."""
    cols = [frames.positions[:, 0], frames.positions[:, 1]]
    if frames.yaw is not None:
        cols += [np.cos(4 * frames.yaw), np.sin(4 * frames.yaw)]
    return np.stack(cols, axis=1)


def probe_backbone(name: str, frames: ProbeFrames, dtype: str = "auto", weights: str | None = None,
                   folds: int = 5, seed: int = 0) -> tuple[list[dict], dict]:
    """The rows of one backbone (every layer, every view) and its timing."""
    from hilserl.agents.encoders import resolve_backbone_dtype

    maps, seconds = extract_features(name, frames.images, dtype, weights, seed=seed)
    compute = "float32" if name == "pixels" or resolve_backbone_dtype(dtype) is None else "bfloat16"
    timing = {"ms_per_frame": seconds * 1000.0, "dtype": compute,
              "weights": ("ImageNet (shipped)" if name == "efficientnet_lite0" else "random init")
              if weights is None and name != "pixels" else weights}
    targets = probe_targets(frames)
    spread = frames.positions.var(axis=0)
    rows = []
    for layer, fmap in maps.items():
        for how in VIEWS:
            x = view(fmap, how)
            r2 = ridge_probe_r2(x, targets, folds, seed)
            rows.append({
                "backbone": name, "layer": layer, "policy_layer": layer == POLICY_LAYER[name],
                "map": list(fmap.shape[1:]), "view": how, "dim": int(x.shape[1]),
                "r2": {"x": float(r2[0]), "y": float(r2[1]), "mean": float(r2[:2].mean()),
                       "yaw": float(r2[2:].mean()) if len(r2) > 2 else None},
                # held-out RMS error of the position (x and y together), metres
                "rms_m": float(np.sqrt(np.mean((1.0 - r2[:2]) * spread))),
                "cosine": cosine_summary(x, frames.positions),
            })
    return rows, timing


def run_probe(frames: ProbeFrames, backbones: Sequence[str], dtype: str = "auto", folds: int = 5, seed: int = 0,
              weights: dict[str, str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Probe every backbone on `frames`; the result is what `hilserl probe` writes as JSON."""
    weights = weights or {}
    rows, timing = [], {}
    for name in backbones:
        t0 = time.perf_counter()
        log(f"probing {name} on {len(frames)} frames ...")
        backbone_rows, timing[name] = probe_backbone(name, frames, dtype, weights.get(name), folds, seed)
        rows += backbone_rows
        log(f"  {name}: {timing[name]['ms_per_frame']:.1f} ms per frame, probed in {time.perf_counter() - t0:.0f} s")
    return {
        "source": frames.source, "frames": len(frames), "image_size": int(frames.images.shape[1]),
        "seed": seed, "folds": folds, "near_m": NEAR_M, "far_m": FAR_M,
        "front_back_split_x": float(np.median(frames.positions[:, 0])),
        "cpu": cpu_description(), "timing": timing, "rows": rows,
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_lines(result: dict) -> list[str]:
    """The probe's rows as fixed-width text lines (one header, one line per row)."""
    names = ("R² x", "R² y", "R² mean", "RMS cm", "R² yaw", "cos near", "cos far", "cos f/b", "cos same")
    head = f"{'backbone':<18} {'layer':<9} {'map':<10} {'view':<4} {'dim':>6} " + " ".join(f"{n:>8}" for n in names)
    lines = [head, "-" * len(head)]
    for row in result["rows"]:
        r2, cos = row["r2"], row["cosine"]
        layer = row["layer"] + (" *" if row["policy_layer"] else "")
        values = (r2["x"], r2["y"], r2["mean"], row["rms_m"] * 100, r2["yaw"], cos["near"], cos["far"],
                  cos["front_back"], cos["same_side"])
        lines.append(f"{row['backbone']:<18} {layer:<9} {'x'.join(map(str, row['map'])):<10} {row['view']:<4} "
                     f"{row['dim']:>6} " + " ".join(f"{_num(v):>8}" for v in values))
    return lines


def render_table(result: dict, print_line: Callable[[str], None] = print) -> None:
    """The table, what its columns mean, and one timing line per backbone."""
    print_line(f"encoder probe: {result['frames']} frames from {result['source']}, {result['image_size']}x"
               f"{result['image_size']}, {result['folds']}-fold held-out R² of a ridge probe")
    for line in table_lines(result):
        print_line(line)
    near, far, split = result["near_m"] * 100, result["far_m"] * 100, result["front_back_split_x"] * 100
    print_line("* the map the policy reads (efficientnet_lite0: backbone_trim_head=true, as in the shipped configs)")
    print_line("RMS cm: held-out error of the position probe, x and y together; R² yaw: of cos 4θ and sin 4θ")
    print_line(f"cos: mean cosine similarity of centred features over pairs of frames whose cubes are < {near:.0f} cm "
               f"apart (near), > {far:.0f} cm apart (far), on either side of x = {split:+.1f} cm (f/b: front vs "
               f"back) or on the same side (same)")
    cpu = result["cpu"]
    for name, t in result["timing"].items():
        print_line(f"{name}: {t['ms_per_frame']:.1f} ms per {result['image_size']}px frame ({t['dtype']}, "
                   f"{cpu['torch_threads']} thread(s), weights: {t['weights'] or 'none'})")
    print_line(f"CPU: {cpu['model']}; AVX512-BF16: {'yes' if cpu['avx512_bf16'] else 'no'}")
