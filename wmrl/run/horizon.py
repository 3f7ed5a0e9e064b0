"""How far ahead a world model's open-loop imagination stays faithful, on episodes it never trained on.

The faithful horizon: the first open-loop step k at which the model's prediction error (mean squared
error per observation, images in [0, 1] units) exceeds the error of the trivial prediction "the future
looks like the mean of the context's observations". Before k the model knows more about the future
than that average does; from k on it knows less. A model that beats the baseline at every step of the
window gets the window's length (reported as reaching the end).

Held-out episodes are played by the run's own agent (its sampled policy, as in training) in envs
seeded apart from training and evaluation; from each, windows of `context + horizon` consecutive steps
are cut (the context observed as imagination starts are, then `horizon` steps imagined under the actions
really taken). Reported: the per-step mean errors of the model and of the baseline over all windows,
the faithful horizon of those mean curves, and the median of the windows' own horizons.
"""

from __future__ import annotations

import numpy as np
import torch

from wmrl.run.evaluate import make_eval_envs, run_episodes

HELD_OUT_SEED_OFFSET = 20_000


def first_exceeding(model_err: np.ndarray, baseline_err: np.ndarray) -> np.ndarray:
    """(..., H) errors -> (...,) the first 1-based step where the model's error exceeds the baseline's,
    or H when it never does."""
    worse = model_err > baseline_err
    H = worse.shape[-1]
    return np.where(worse.any(-1), worse.argmax(-1) + 1, H)


def windows(episodes: list[dict[str, list]], length: int, stride: int) -> dict[str, np.ndarray]:
    """Windows of `length` steps inside single episodes, starting every `stride` steps: obs (N, L, ...),
    action (N, L, ...), is_first (N, L). Episodes shorter than `length` give none."""
    out: dict[str, list] = {"obs": [], "action": [], "is_first": []}
    for ep in episodes:
        T = len(ep["obs"])
        for s in range(0, T - length + 1, stride):
            for key in out:
                out[key].append(np.stack(ep[key][s:s + length]))
    if not out["obs"]:
        return {}
    batch = {key: np.stack(v) for key, v in out.items()}
    batch["is_first"] = np.zeros_like(batch["is_first"], dtype=bool)
    batch["is_first"][:, 0] = True  # nothing before a window is observed
    return batch


@torch.no_grad()
def faithful_horizon(agent, cfg, context: int, horizon: int, episodes: int, stride: int | None = None,
                     seed: int = 0, max_windows: int = 256) -> dict:
    """Play `episodes` held-out episodes with `agent` and measure its model's faithful horizon.

    Args:
        context: real steps observed before imagining (an imagination start's window).
        horizon: open-loop steps imagined per window.
        stride: steps between window starts (default: the window length, windows do not overlap).
    Returns:
        {"faithful_horizon", "median_window_horizon", "windows", "model_mse", "baseline_mse", ...}; the
        horizons are None when no held-out episode is long enough for one window.
    """
    length = context + horizon
    envs = make_eval_envs(cfg.env, cfg.seed + HELD_OUT_SEED_OFFSET, episodes)
    record: list[dict[str, list]] = [{} for _ in envs]
    seeds = np.random.SeedSequence([cfg.seed, HELD_OUT_SEED_OFFSET, seed]).generate_state(episodes).tolist()
    run_episodes(agent, envs, greedy=False, seeds=seeds, record=record)
    for env in envs:
        env.close()
    data = windows(record, length, stride or length)
    result = {"context": context, "horizon": horizon, "episodes": episodes,
              "episode_lengths": [len(r.get("obs", [])) for r in record]}
    if not data:
        return {**result, "windows": 0, "faithful_horizon": None, "median_window_horizon": None}
    keep = np.random.default_rng(seed).permutation(len(data["obs"]))[:max_windows]
    data = {k: v[np.sort(keep)] for k, v in data.items()}
    batch = agent.to_tensors(data)
    wm = agent.wm.eval()
    torch.manual_seed(seed)
    with agent.autocast():
        state = wm.observe_sequence(batch["obs"][:, :context], batch["action"][:, :context],
                                    batch["is_first"][:, :context])
        rollout = wm.imagine(state, batch["action"][:, context - 1: length - 1], horizon)
        pred = wm.predict_obs(rollout.feat[:, 1:]).float().cpu().numpy()  # (N, H, *obs_shape)
    scale = 255.0 if agent.spec.is_image else 1.0
    real = data["obs"][:, context:].astype(np.float32) / scale  # (N, H, *obs_shape)
    mean_frame = data["obs"][:, :context].astype(np.float32).mean(1, keepdims=True) / scale  # (N, 1, ...)
    N = real.shape[0]
    model_err = ((pred / scale - real) ** 2).reshape(N, horizon, -1).mean(-1)  # (N, H)
    base_err = ((mean_frame - real) ** 2).reshape(N, horizon, -1).mean(-1)  # (N, H)
    model_curve, base_curve = model_err.mean(0), base_err.mean(0)
    per_window = first_exceeding(model_err, base_err)
    return {**result, "windows": int(N), "faithful_horizon": int(first_exceeding(model_curve, base_curve)),
            "median_window_horizon": float(np.median(per_window)),
            "reached_end": bool((model_curve <= base_curve).all()),
            "model_mse": model_curve.tolist(), "baseline_mse": base_curve.tolist()}
