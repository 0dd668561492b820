"""What sample.py's sub-commands compute, without the command line: latents and styles for
seeds, latent paths, style-mixing grids, projection targets and reports, truncation curves.

Every function takes a model's spec (`models.ModelSpec`), its G_ema and config, and goes
through the spec's functions: no model is named here. Errors name this library's parameters;
sample.py translates them into its options.

Lesson: lessons/00_reading_this_repo.md
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from nanogan import models
from nanogan.images import make_grid, save_gif, save_grid
from nanogan.interpolate import key_path, lerp, slerp, smoothed_walk
from nanogan.randomness import derive_seed

Spec = models.ModelSpec


def mapped(spec: Spec, G: torch.nn.Module, cfg: Any, seeds: list[int],
           labels: torch.Tensor | None, truncation: float | None) -> torch.Tensor:
    """ws (b, num_ws, d) for seeds: the spec's mapping, then truncation in W."""
    device = models.device_of(G)
    z = spec.sample_latents(cfg, seeds).to(device)
    return spec.styles.map(G, z, None if labels is None else labels.to(device),
                           truncation=truncation)


def generated(spec: Spec, G: torch.nn.Module, cfg: Any, seeds: list[int],
              labels: torch.Tensor | None) -> torch.Tensor:
    """What G makes for seeds with fresh noise inputs (each seed its own), as a user sees them."""
    gens = [torch.Generator().manual_seed(derive_seed(s, "noise")) for s in seeds]
    ws = mapped(spec, G, cfg, seeds, labels, None)

    def noise(i, shape):  # each seed's noise from its own generator: batch-independent
        return torch.cat([torch.randn(1, *shape[1:], generator=g) for g in gens]).to(ws.device)

    return spec.styles.synthesize(G, ws, "random", noise=noise).float().cpu()


def latent_path(spec: Spec, G: torch.nn.Module, cfg: Any, kind: str, seeds: list[int], *,
                labels_for, truncation: float | None, options: dict, frames: int = 24,
                loop: bool = True, num_frames: int = 1, sigma: float = 1.0) -> torch.Tensor:
    """Images along a path: "slerp" between the seeds' z, "lerp-w" between their (truncated) w,
    or "walk", a smoothed random walk of num_frames from the first seed (sigma in frames).
    `labels_for(n)` gives the labels of n images (None: unconditional)."""
    if kind == "walk":
        z = smoothed_walk(num_frames, cfg.z_dim, sigma, torch.Generator().manual_seed(seeds[0]))
        return models.render(spec, G, z, labels_for(len(z)), truncation=truncation, **options)
    if kind == "slerp":
        z = key_path(spec.sample_latents(cfg, seeds, truncation), frames, slerp, loop=loop)
        return models.render(spec, G, z, labels_for(len(z)), truncation=truncation, **options)
    # lerp in W after truncation: truncating the path is lerping the truncated keys
    ws = mapped(spec, G, cfg, seeds, labels_for(len(seeds)), truncation)
    return models.render_ws(spec, G, key_path(ws[:, 0], frames, lerp, loop=loop), **options)


def style_layers(spec: Spec, cfg: Any, name: str) -> tuple[int, int]:
    """A named group of styles ("coarse", …) as [start, stop) within the model's styles."""
    start, stop = spec.styles.layer_names[name]
    n = spec.styles.num_ws(cfg)
    return start, n if stop is None else min(stop, n)


def mixing_grid(spec: Spec, G: torch.nn.Module, ws_a: torch.Tensor, ws_b: torch.Tensor,
                start: int, stop: int, **options: Any) -> torch.Tensor:
    """StyleGAN Fig. 3: a blank corner, B along the top, A down the left, and each cell A's
    styles with B's in [start, stop); images in row-major order ((1 + a) × (1 + b))."""
    n = ws_a.shape[1]
    from_b = (torch.arange(n) >= start) & (torch.arange(n) < stop)
    cells = torch.where(from_b[None, None, :, None].to(ws_a.device), ws_b[None], ws_a[:, None])
    a, b = models.render_ws(spec, G, ws_a, **options), models.render_ws(spec, G, ws_b, **options)
    mixed = models.render_ws(spec, G, cells.flatten(0, 1), **options).unflatten(0, (len(a), len(b)))
    blank = torch.ones_like(a[:1])  # white: the corner has no source
    return torch.cat([blank, b] + [torch.cat([a[i : i + 1], mixed[i]]) for i in range(len(a))])


def flat_values(results) -> dict[str, float]:
    """{"fid": 12.3, "precision": 0.7, "recall": 0.5, "kid_mean": …} from MetricResults."""
    out = {}
    for name, result in results.items():
        if isinstance(result.value, dict):
            for key, value in result.value.items():
                out[key if name == "pr" else f"{name}_{key}"] = value
        else:
            out[name] = result.value
    return out


def save_curve(folder: Path, points: list[dict], protocol: dict, *, model: str, symbol: str,
               title: str) -> None:
    """truncation-curve.csv, .json (with the protocol) and .png in folder."""
    fields = ["truncation", "fid", "precision", "recall"]
    with (folder / "truncation-curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row[k] for k in fields} for row in points)
    (folder / "truncation-curve.json").write_text(json.dumps(
        {"model": model, "truncation": symbol, "points": points,
         "protocol": {k: v for k, v in protocol.items() if k not in ("metric", "value")}},
        indent=2))
    plot_curve(folder / "truncation-curve.png", points, symbol, title)


def plot_curve(path: Path, rows: list[dict], symbol: str, title: str) -> None:
    """FID against truncation, and precision (fidelity) against recall (variety)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["truncation"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(t, [r["fid"] for r in rows], "o-")
    left.set(xlabel=f"truncation {symbol}", ylabel="FID (lower is better)")
    right.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "o-")
    for r in rows:
        right.annotate(f"{r['truncation']:g}", (r["recall"], r["precision"]), fontsize=8,
                       xytext=(3, 3), textcoords="offset points")
    right.set(xlabel="recall (variety)", ylabel="precision (fidelity)", xlim=(-0.02, 1.02),
              ylim=(-0.02, 1.02))
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


DISTANCE = "classifier features (LPIPS form) + pixel MSE"


def save_projection(folder: Path, result, targets: torch.Tensor, names: list[str], *,
                    space: str, steps: int, model: str) -> None:
    """projected.safetensors (ws, noise maps, distances, targets), projection.png (targets over
    reconstructions) and projection.gif (the optimisation) for the first len(names) targets."""
    from safetensors.torch import save_file

    n = len(names)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"ws": result.ws[:n].cpu().contiguous(), "distance": result.distance[:n],
               "target": targets[:n].cpu().contiguous()}
    tensors |= {f"noise.{i}": m[:n].cpu().contiguous() for i, m in result.noise.items()}
    save_file(tensors, str(folder / "projected.safetensors"), metadata={
        "space": space, "steps": str(steps), "targets": json.dumps(names),
        "distance": DISTANCE, "model": model})
    save_grid(folder / "projection.png", torch.cat([targets[:n], result.images[:n]]), nrow=n)
    video = [make_grid(torch.cat([targets[:n], frame[:n]]), nrow=n) for frame in result.frames]
    save_gif(folder / "projection.gif", video, fps=12)


def detection_report(distance: torch.Tensor, names: list[str], threshold: float, *,
                     calibrate: int, space: str, steps: int) -> dict:
    """Each target called generated (distance <= threshold) or real (§5.1); distances past the
    first len(names) are the calibration's, `calibrate` generated then the real ones."""
    n = len(names)
    report = {"threshold": threshold, "space": space, "steps": steps, "distance": DISTANCE,
              "targets": [{"target": names[i], "distance": distance[i].item(),
                           "verdict": "generated" if distance[i] <= threshold else "real"}
                          for i in range(n)]}
    if len(distance) > n:
        calib = distance[n:].tolist()
        report["calibration"] = {"generated": calib[:calibrate], "real": calib[calibrate:]}
    return report
