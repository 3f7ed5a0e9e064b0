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
the faithful horizon of those mean curves, and the median of the windows' own horizons; each for one
sampled rollout per window (imagination as behaviours see it; a sample's error includes its spread) and
under latent modes (`*_modes`: the model's single most likely future, compared like for like with the
baseline's single prediction).

Held-out episodes are whole games: where training treats a lost life as terminal (env.life_loss), a
window may span one that the model was never trained to imagine across. The measure is meant for tasks
without lives (DMC, CarRacing, the classic-control envs); on Atari it errs towards shorter horizons.
"""

from __future__ import annotations

import numpy as np
import torch

from wmrl.run.evaluate import make_eval_envs, run_episodes

HELD_OUT_SEED_OFFSET = 20_000


def actions_taken_next(action: torch.Tensor, context: int, horizon: int) -> torch.Tensor:
    """action (B, T, ...) of replay sequences -> (B, horizon, ...): the actions really taken after a context of
    `context` steps, a_{C-1} .. a_{C+H-2}, i.e. what open-loop imagination from that context is fed.
    Where the sequences end early the last action is repeated (compare only the real steps there are)."""
    taken = action[:, context - 1: context - 1 + horizon]
    if taken.shape[1] < horizon:
        taken = torch.cat([taken] + [taken[:, -1:]] * (horizon - taken.shape[1]), 1)
    return taken


def open_loop(wm, batch: dict[str, torch.Tensor], context: int, horizon: int) -> torch.Tensor:
    """Rows obs, action, is_first (B, T, ...) -> (B, horizon, *obs_shape) the observations `wm` predicts
    after observing the first `context` rows, imagining under the actions really taken; as predict_obs gives
    them (fp32, or uint8 frames), also under bf16 autocast."""
    state = wm.observe_sequence(batch["obs"][:, :context], batch["action"][:, :context], batch["is_first"][:, :context])
    rollout = wm.imagine(state, actions_taken_next(batch["action"], context, horizon), horizon)
    return wm.predict_obs(rollout.feat[:, 1:])


def prediction_mse(pred: np.ndarray, real: np.ndarray, is_image: bool) -> np.ndarray:
    """(..., *obs_shape) predicted and real observations in the env's units -> (...) the mean squared error
    of each observation, images in [0, 1] units."""
    scale = 255.0 if is_image else 1.0
    err = ((pred.astype(np.float32) - real.astype(np.float32)) / scale) ** 2
    return err.reshape(*err.shape[:err.ndim - (3 if is_image else 1)], -1).mean(-1)


def first_exceeding(model_err: np.ndarray, baseline_err: np.ndarray) -> np.ndarray:
    """(..., H) errors -> (...,) the first 1-based step where the model's error exceeds the baseline's,
    or H when it never does."""
    worse = model_err > baseline_err
    H = worse.shape[-1]
    return np.where(worse.any(-1), worse.argmax(-1) + 1, H)


def windows(episodes: list[dict[str, list]], length: int, stride: int) -> dict[str, np.ndarray]:
    """Windows of `length` steps inside single episodes, starting every `stride` steps: obs (N, L, ...),
    action (N, L, ...), is_first (N, L), True only at each window's first row (nothing before it is
    observed). Episodes shorter than `length` give none."""
    out: dict[str, list] = {"obs": [], "action": []}
    for ep in episodes:
        T = len(ep["obs"])
        for s in range(0, T - length + 1, stride):
            for key in out:
                out[key].append(np.stack(ep[key][s:s + length]))
    if not out["obs"]:
        return {}
    batch = {key: np.stack(v) for key, v in out.items()}
    batch["is_first"] = np.zeros(batch["obs"].shape[:2], bool)
    batch["is_first"][:, 0] = True
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
        {"faithful_horizon", "median_window_horizon", "windows", "model_mse", "baseline_mse", ...} and the
        same under latent modes ("faithful_horizon_modes", ...); the horizons are None when no held-out
        episode is long enough for one window.
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
        return {**result, "windows": 0, **{f"{k}{s}": None for k in ("faithful_horizon", "median_window_horizon")
                                          for s in ("", "_modes")}}
    keep = np.random.default_rng(seed).permutation(len(data["obs"]))[:max_windows]
    return {**result, **window_horizons(agent, {k: v[np.sort(keep)] for k, v in data.items()}, context, horizon, seed)}


@torch.no_grad()
def window_horizons(agent, data: dict[str, np.ndarray], context: int, horizon: int, seed: int = 0) -> dict:
    """The faithful horizon of `agent`'s model on windows obs, action, is_first (N, context + horizon, ...):
    sampled (torch seeded by `seed`) and under latent modes (`*_modes`, the same whatever the seed)."""
    batch = agent.to_tensors(data)
    wm = agent.wm.eval()
    torch.manual_seed(seed)
    result: dict = {}
    real = data["obs"][:, context:]  # (N, H, *obs_shape)
    mean_frame = data["obs"][:, :context].astype(np.float32).mean(1, keepdims=True)  # (N, 1, *obs_shape)
    base_err = prediction_mse(np.broadcast_to(mean_frame, real.shape), real, agent.spec.is_image)  # (N, H)
    base_curve = base_err.mean(0)
    result.update(windows=int(real.shape[0]), baseline_mse=base_curve.tolist())
    for suffix, modes in (("", False), ("_modes", True)):
        with agent.autocast(), wm.latent_modes(modes):
            pred = open_loop(wm, batch, context, horizon).cpu().numpy()  # (N, H, *obs_shape)
        model_err = prediction_mse(pred, real, agent.spec.is_image)  # (N, H)
        model_curve = model_err.mean(0)
        result.update({f"faithful_horizon{suffix}": int(first_exceeding(model_curve, base_curve)),
                       f"median_window_horizon{suffix}": float(np.median(first_exceeding(model_err, base_err))),
                       f"reached_end{suffix}": bool((model_curve <= base_curve).all()),
                       f"model_mse{suffix}": model_curve.tolist()})
    return result
