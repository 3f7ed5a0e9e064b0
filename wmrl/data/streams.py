"""Replay of N environments stepped together (`train.num_envs`): one `Replay` per env stream.

Each stream is a Replay of its own (its own ring buffer and chunk directory), so every sampled window
lies inside one env's timeline. With one stream this is exactly a Replay in `directory` (the layout and
the random draws of a single-env run stay as they were); with N > 1 stream i lives in
`directory/stream_{i}`. The streams are stepped together, so each holds total_added / N steps.

Sampling draws the stream of every window with probability proportional to the windows it holds, so
that a batch is a uniform draw over all windows of all streams, as one stream's is over its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from wmrl.data.replay import Replay, ReplayConfig


class StreamReplay:
    def __init__(self, cfg: ReplayConfig, obs_shape: tuple[int, ...], obs_dtype: npt.DTypeLike,
                 directory: Path | None, streams: int = 1, action_shape: tuple[int, ...] = (),
                 action_dtype: npt.DTypeLike = np.int64):
        if streams < 1:
            raise ValueError(f"streams={streams} must be >= 1")
        actions = {"action_shape": action_shape, "action_dtype": action_dtype}
        if streams == 1:
            self.streams = [Replay(cfg, obs_shape, obs_dtype, directory, **actions)]
        else:
            per = ReplayConfig(**{**vars(cfg), "capacity": max(1, cfg.capacity // streams)})
            self.streams = [Replay(per, obs_shape, obs_dtype, None if directory is None else Path(directory) / f"stream_{i}",
                                   **actions) for i in range(streams)]
        self.cfg = cfg

    def __len__(self) -> int:
        return sum(len(s) for s in self.streams)

    @property
    def shortest_stream(self) -> int:
        """Steps held by the shortest stream: the longest window `sample` can always draw."""
        return min(len(s) for s in self.streams)

    @property
    def total_added(self) -> int:
        return sum(s.total_added for s in self.streams)

    def add(self, obs, action, reward: float, terminal: bool, is_first: bool, stream: int = 0) -> None:
        """Append a row to one stream (see Replay.add)."""
        self.streams[stream].add(obs, action, reward, terminal, is_first)

    def sample(self, batch: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`batch` windows of `length` steps, each inside one stream (see Replay.sample), in random order
        (a caller taking the first rows gets no stream more often than another)."""
        if len(self.streams) == 1:
            return self.streams[0].sample(batch, length, rng)
        windows = np.array([max(len(s) - length + 1, 0) for s in self.streams], np.float64)
        if windows.sum() == 0:
            raise ValueError(f"cannot sample sequences of length {length}: no stream holds that many steps")
        counts = rng.multinomial(batch, windows / windows.sum())
        parts = [s.sample(int(n), length, rng) for s, n in zip(self.streams, counts) if n]
        order = rng.permutation(batch)
        return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def load(self, total_added: int) -> None:
        """Restore the first `total_added` steps of the run (total_added / N per stream)."""
        n = len(self.streams)
        if total_added % n:
            raise ValueError(f"total_added={total_added} is not a multiple of the {n} streams")
        for s in self.streams:
            s.load(total_added // n)
