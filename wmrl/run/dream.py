"""`wmrl dream`: the model's open-loop imagination beside the real future under the same actions.

From a real context as long as an imagination start (WorldModel.start_length) taken from the run's replay, the
world model imagines `horizon` steps fed with the actions that were really taken; the predicted
observations are shown beside the real ones (GIF/MP4 for images, one PNG panel per state dimension for
vectors) with the per-step prediction error (mean squared error, images in [0, 1] units).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from wmrl.envs.state_names import state_names
from wmrl.errors import WmrlError
from wmrl.run.files import atomic_write, atomic_write_text, unwritable_reason
from wmrl.run.horizon import faithful_horizon, open_loop, prediction_mse
from wmrl.run.inference import load_run

# Colours for MinAtar-style object channels (C not 1 or 3); channel i is drawn in PALETTE[i % len].
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.uint8)


def _pick_segment(replay, length: int, rng: np.random.Generator) -> tuple[dict, int]:
    """A replay sequence of `length` rows; prefers one inside a single episode. Returns (seq, usable rows)."""
    seqs = replay.sample(512, length, rng)
    firsts = seqs["is_first"][:, 1:]
    usable = np.where(firsts.any(1), firsts.argmax(1) + 1, length)  # rows before the next episode start
    best = int(np.argmax(usable))
    return {k: v[best:best + 1] for k, v in seqs.items()}, int(usable[best])


def _to_rgb(frames: np.ndarray) -> np.ndarray:
    """(T, C, H, W) uint8 -> (T, H, W, 3) uint8."""
    C = frames.shape[1]
    if C == 3:
        return frames.transpose(0, 2, 3, 1)
    if C == 1:
        return np.repeat(frames.transpose(0, 2, 3, 1), 3, -1)
    on = frames.astype(np.float32) / 255.0  # (T, C, H, W)
    colours = PALETTE[np.arange(C) % len(PALETTE)].astype(np.float32)  # (C, 3)
    return np.clip(np.einsum("tchw,cx->thwx", on, colours), 0, 255).astype(np.uint8)


def _label(frames: np.ndarray, columns: list[str], title: str, context: int) -> np.ndarray:
    """(T, H, W, 3) frames of equal-width columns -> the same with a caption band above them: the title,
    the frame's open-loop step and the column names."""
    from PIL import Image, ImageDraw

    T, H, W, _ = frames.shape
    band = 40
    out = []
    for t in range(T):
        img = Image.new("RGB", (W, H + band), (255, 255, 255))
        img.paste(Image.fromarray(frames[t]), (0, band))
        draw = ImageDraw.Draw(img)
        draw.text((2, 1), title, fill=(0, 0, 0))
        draw.text((2, 13), f"open loop: step {t + 1} of {T}, after {context} real steps", fill=(0, 0, 0))
        for i, name in enumerate(columns):
            draw.text((2 + i * W // len(columns), 26), name, fill=(0, 0, 0))
        out.append(np.asarray(img))
    return np.stack(out)


def _write_video(real: np.ndarray, pred: np.ndarray, out: Path, title: str = "", context: int = 0) -> None:
    import imageio.v2 as imageio

    real_rgb, pred_rgb = _to_rgb(real), _to_rgb(pred)
    diff = np.abs(real_rgb.astype(np.int16) - pred_rgb.astype(np.int16)).astype(np.uint8)
    scale = max(1, 96 // real_rgb.shape[1])
    real_rgb, pred_rgb, diff = (x.repeat(scale, 1).repeat(scale, 2) for x in (real_rgb, pred_rgb, diff))
    gap = np.full((*real_rgb.shape[:2], 4, 3), 255, np.uint8)
    frames = np.concatenate([real_rgb, gap, pred_rgb, gap, diff], 2)  # real | imagined | |difference|
    frames = _label(frames, ["real", "imagined", "|error|"], title, context)
    if out.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as e:
            raise WmrlError("writing MP4 needs the imageio-ffmpeg package", "pip install imageio-ffmpeg, or use --out x.gif") from e
        atomic_write(out, lambda tmp: imageio.mimwrite(tmp, list(frames), format="mp4", fps=4))
    else:
        atomic_write(out, lambda tmp: imageio.mimwrite(tmp, list(frames), format="gif", duration=250, loop=0))


def _write_plot(context: np.ndarray, real: np.ndarray, pred: np.ndarray, out: Path, title: str = "",
                names: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C, H, D = len(context), len(real), real.shape[-1]
    fig, axes = plt.subplots(D, 1, figsize=(7, 1.8 * D), sharex=True, squeeze=False)
    t_ctx, t_fut = np.arange(-C + 1, 1), np.arange(1, H + 1)
    for d, ax in enumerate(axes[:, 0]):
        ax.plot(t_ctx, context[:, d], "k.-", label="real context")
        ax.plot(t_fut, real[:, d], "k-", label="real future")
        ax.plot(t_fut, pred[:, d], "r--", label="imagined (open loop)")
        ax.set_ylabel(names[d] if names else f"obs[{d}]", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="best", fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("steps after the last real observation")
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)


IMAGE_SUFFIXES, PLOT_SUFFIXES = (".gif", ".mp4"), (".png",)


def _check_out(out: Path, is_image: bool) -> None:
    """Refuse an output the dream cannot write, before writing anything."""
    allowed = IMAGE_SUFFIXES if is_image else PLOT_SUFFIXES
    if out.suffix.lower() not in allowed:
        kind = "an image" if is_image else "a vector"
        raise WmrlError(f"--out {out}: a dream of {kind} env is written as {' or '.join(allowed)}, not '{out.suffix}'",
                        f"name the file e.g. dream{allowed[0]}")
    if out.is_dir():
        raise WmrlError(f"--out {out} is a directory", f"pass a file name such as {out / ('dream' + allowed[0])}")
    reason = unwritable_reason(out)
    if reason:
        raise WmrlError(f"cannot write --out {out}: {reason}", "pass a file in a writable directory")


@torch.no_grad()
def dream(run_dir: Path, horizon: int, out: Path | None, seed: int = 0, device: str = "auto", held_out: int = 0) -> dict:
    """Write the dream of a replay context to `out` and return its per-step errors; with `held_out` > 0 the
    result also holds the faithful horizon over that many new episodes (run/horizon.py)."""
    cfg, agent, replay = load_run(run_dir, device)
    context = agent.wm.start_length(cfg.actor_critic.imag_context)
    stored = replay.shortest_stream  # a window lies inside one training env's stream
    if stored < context + 1:
        raise WmrlError(f"the run's replay holds {stored} steps per training env, too few for a dream",
                        "train the run longer first")
    length = min(context + horizon, stored)
    seq, usable = _pick_segment(replay, length, np.random.default_rng(seed))
    if horizon > usable - context:
        raise WmrlError(f"--horizon {horizon} is longer than the replay's longest stretch of one episode after a "
                        f"{context}-step context ({usable - context} steps)", f"pass --horizon {usable - context} or less")
    batch = agent.to_tensors(seq)
    wm = agent.wm.eval()
    torch.manual_seed(seed)
    with agent.autocast():  # as the faithful horizon imagines (and behaviours learn)
        pred = open_loop(wm, batch, context, horizon)[0].cpu().numpy()  # (H, *obs_shape)
    real = seq["obs"][0, context: context + horizon]
    H = min(len(real), horizon)
    pred, real = pred[:H], real[:H]
    per_step = prediction_mse(pred, real, agent.spec.is_image).tolist()
    if out is None:
        out = run_dir / ("dream.gif" if agent.spec.is_image else "dream.png")
    _check_out(out, agent.spec.is_image)
    title = f"{cfg.world_model} on {cfg.env.id}, step {replay.total_added}"  # the checkpoint's step
    if agent.spec.is_image:
        _write_video(real, pred, out, title, context)
    else:
        _write_plot(seq["obs"][0, :context], real, pred, out, f"{title}: {H} steps open loop after {context} real",
                    state_names(cfg.env.id, real.shape[-1]))
    result = {"out": str(out), "context": context, "horizon": H, "mse_per_step": per_step,
              "mse_mean": float(np.mean(per_step))}
    if held_out:
        result["held_out"] = faithful_horizon(agent, cfg, context, horizon, held_out, seed=seed)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1))
    return result
