"""Replay buffer for one environment stream: a numpy ring buffer with crash-safe persistence.

Time alignment of one stored row t (one step of the agent-environment loop):

    step:        t-1            t              t+1
    obs:       obs_{t-1} --a_{t-1}--> obs_t --a_t--> obs_{t+1}
    row t:     obs_t        the observation the agent saw
               action_t     the action taken at obs_t
               reward_t     reward received as a result of action_t
               terminal_t   the episode terminated as a result of action_t (obs_{t+1} never exists
                            in that episode; the next row starts a new one)
               is_first_t   obs_t is the first observation of an episode

An episode truncated by a time limit ends with terminal=False; the next row simply has is_first=True.
Departure from dreamerv3's layout: there row t holds the reward and is_terminal of *arriving* at
obs_t; here reward_t and terminal_t are consequences of action_t, so one row is one full transition.
A world model that wants ``prev_action`` / arrival rewards shifts by one itself, masking with is_first.

Sequences may cross episode boundaries (the world model resets / masks attention on is_first) but
never the ring buffer's write position, where the newest step sits next to the oldest one.
Persistence lives in :mod:`wmrl.data.replay_store`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt

from wmrl.data import replay_store as store
from wmrl.errors import WmrlError


@dataclasses.dataclass
class ReplayConfig:
    capacity: int = 100_000
    """Steps kept in memory; the oldest are overwritten (ring buffer)."""
    save_chunk: int = 1024
    """Most steps per chunk file written by flush (1024 steps of 3x64x64 uint8 images = 12.6 MB)."""
    prune_margin: int | None = 100_000
    """flush deletes chunk files holding only steps older than total_added - capacity - prune_margin.
    Safe as long as the checkpoint you may resume from recorded total_added at most prune_margin steps
    before the newest flush. None keeps every chunk."""

    def validate(self) -> None:
        if not isinstance(self.capacity, int) or self.capacity < 1:
            raise WmrlError(
                f"replay.capacity={self.capacity!r} must be a positive integer",
                "set replay.capacity to the number of steps to keep, e.g. replay.capacity=100000",
            )
        if not isinstance(self.save_chunk, int) or self.save_chunk < 1:
            raise WmrlError(
                f"replay.save_chunk={self.save_chunk!r} must be a positive integer",
                "set replay.save_chunk to the steps per chunk file, e.g. replay.save_chunk=1024",
            )
        if self.prune_margin is not None and (not isinstance(self.prune_margin, int) or self.prune_margin < 0):
            raise WmrlError(
                f"replay.prune_margin={self.prune_margin!r} must be a non-negative integer or None",
                "set replay.prune_margin to at least your checkpoint interval in steps, or None to never prune",
            )


class Replay:
    """Ring buffer of steps from one environment stream; see the module docstring for alignment.

    Step number s (0-based, counted over the whole run) lives in slot ``s % capacity``; the buffer
    holds steps ``[total_added - len, total_added)``.
    """

    def __init__(
        self,
        cfg: ReplayConfig,
        obs_shape: tuple[int, ...],
        obs_dtype: npt.DTypeLike,
        directory: Path | None = None,
        action_shape: tuple[int, ...] = (),
        action_dtype: npt.DTypeLike = np.int64,
    ):
        """action_shape and action_dtype: () int64 for discrete actions, (A,) float32 for Box actions
        (envs/spaces.py); float actions are stored exactly as given."""
        cfg.validate()
        self.cfg = cfg
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_shape = tuple(int(d) for d in action_shape)
        self.action_dtype = np.dtype(action_dtype)
        self.directory = Path(directory) if directory is not None else None
        C = cfg.capacity
        # np.zeros maps lazily-zeroed pages, so a large unfilled buffer costs no resident memory.
        self._obs = np.zeros((C, *self.obs_shape), self.obs_dtype)  # (C, *obs_shape)
        self._action = np.zeros((C, *self.action_shape), self.action_dtype)
        self._reward = np.zeros(C, np.float32)
        self._terminal = np.zeros(C, bool)
        self._is_first = np.zeros(C, bool)
        self._total = 0  # steps ever added
        self._flushed = 0  # steps [0, _flushed) are on disk (or were lost to a gap, see flush)
        # False until this object owns `directory`'s timeline (first flush into an empty directory,
        # or any load); guards against a fresh run silently superseding an old run's data.
        self._attached = False

    def __len__(self) -> int:
        return min(self._total, self.cfg.capacity)

    @property
    def total_added(self) -> int:
        return self._total

    def add(self, obs: npt.ArrayLike, action: npt.ArrayLike, reward: float, terminal: bool, is_first: bool) -> None:
        """Append row t = (obs_t, action_t, reward_t, terminal_t, is_first_t); see module docstring."""
        obs = np.asarray(obs)
        if obs.shape != self.obs_shape:
            raise ValueError(f"obs shape {obs.shape} != replay obs_shape {self.obs_shape}")
        if not np.can_cast(obs.dtype, self.obs_dtype, "same_kind"):
            # e.g. float images into a uint8 buffer: a silent cast would wrap values, not scale them.
            raise ValueError(f"obs dtype {obs.dtype} cannot be stored as {self.obs_dtype}")
        action = np.asarray(action)
        if action.shape != self.action_shape or not np.can_cast(action.dtype, self.action_dtype, "same_kind"):
            # e.g. a float action into an int64 (discrete) buffer, which would truncate it
            raise ValueError(f"action {action.dtype}{list(action.shape)} cannot be stored as "
                             f"{self.action_dtype}{list(self.action_shape)}")
        i = self._total % self.cfg.capacity
        self._obs[i] = obs
        self._action[i] = action
        self._reward[i] = reward
        self._terminal[i] = terminal
        self._is_first[i] = is_first
        self._total += 1

    def sample(self, batch: int, length: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniformly sample ``batch`` windows of ``length`` consecutive stored steps.

        Returns: obs (B, T, *obs_shape) stored dtype, action (B, T, *action_shape), reward float32 (B, T),
        terminal bool (B, T), is_first bool (B, T). is_first[:, 0] is forced True: the model sees
        nothing before a window, so its first row must start a fresh recurrent state.
        """
        n = len(self)
        if batch < 1 or length < 1:
            raise ValueError(f"batch={batch} and length={length} must be positive")
        if length > n:
            raise ValueError(f"cannot sample sequences of length {length}: only {n} steps stored")
        # Work in absolute step numbers: every window inside [oldest, total) is contiguous in time,
        # so none can straddle the write position. There are n - length + 1 valid starts.
        oldest = self._total - n
        starts = oldest + rng.integers(0, n - length + 1, size=batch)  # (B,)
        idx = (starts[:, None] + np.arange(length)) % self.cfg.capacity  # (B, T) ring slots
        out = {
            "obs": self._obs[idx],  # (B, T, *obs_shape)
            "action": self._action[idx],
            "reward": self._reward[idx],
            "terminal": self._terminal[idx],
            "is_first": self._is_first[idx],
        }
        out["is_first"][:, 0] = True  # fancy indexing copied, the stored flags are untouched
        return out

    # ----------------------------------------------------------------------------------- persistence

    def flush(self) -> None:
        """Write every step added since the last flush (or load) to ``directory`` as chunk files.

        Call it before recording ``total_added`` in a checkpoint, so ``load`` can restore that count.
        """
        d = self._require_directory()
        d.mkdir(parents=True, exist_ok=True)
        store.remove_temporaries(d)
        chunks = store.list_chunks(d)
        if not self._attached and chunks:
            raise WmrlError(
                f"replay directory {d} already holds chunk files from another run",
                "resume that run (Replay.load), or start the new run in an empty directory",
            )
        self._attached = True
        write = store.next_write(chunks)
        start = max(self._flushed, self._total - len(self))
        if start > self._flushed:
            # More than `capacity` steps since the last flush: steps [_flushed, start) were
            # overwritten before reaching disk. A zero-length chunk at _flushed still marks every
            # older chunk's data from _flushed on as superseded (a rewound run's stale data
            # must not fill the gap). Loading a count that needs the gap fails loudly instead.
            store.write_chunk(d, self._flushed, write, self._columns(self._flushed, self._flushed))
            write += 1
            self._flushed = start
        for s in range(start, self._total, self.cfg.save_chunk):
            e = min(s + self.cfg.save_chunk, self._total)
            store.write_chunk(d, s, write, self._columns(s, e))
            write += 1
            self._flushed = e  # advance per chunk, so a retry after a failed write resumes here
        # Superseded chunks (stale data of an abandoned timeline) are always deleted; old ones only
        # with a prune_margin. Using this flush's count, not the caller's checkpoint (which flush
        # cannot see), is why the margin must cover the checkpoint interval.
        margin = self.cfg.prune_margin
        store.prune(d, before=-1 if margin is None else self._total - self.cfg.capacity - margin)

    def load(self, total_added: int) -> None:
        """Restore exactly the first ``total_added`` steps ever added from ``directory``.

        Keeps the last ``capacity`` of them, as if they had just been added. Chunks flushed after that
        count (by this run or an abandoned one) are ignored. ``load(0)`` takes over the directory for a
        run restarting from scratch. Raises WmrlError if a needed chunk is missing or unreadable.
        """
        d = self._require_directory()
        if total_added < 0:
            raise ValueError(f"total_added={total_added} must be >= 0")
        n = min(total_added, self.cfg.capacity)
        # Plan from file names before touching the buffer, so a gap leaves the buffer as it was.
        segments = store.plan(store.list_chunks(d), d, total_added - n, total_added)
        self._total = self._flushed = 0  # a damaged file found while reading leaves an empty buffer
        for info, s, e in segments:
            columns = store.read_chunk(info, self.obs_shape, self.obs_dtype, self.action_shape, self.action_dtype)
            slots = np.arange(s, e) % self.cfg.capacity
            for name, array in self._arrays().items():
                array[slots] = columns[name][s - info.start : e - info.start]
        self._total = self._flushed = total_added
        self._attached = True

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise ValueError("this Replay has no directory; pass directory= to persist it")
        return self.directory

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "obs": self._obs,
            "action": self._action,
            "reward": self._reward,
            "terminal": self._terminal,
            "is_first": self._is_first,
        }

    def _columns(self, start: int, end: int) -> dict[str, np.ndarray]:
        slots = np.arange(start, end) % self.cfg.capacity  # (end - start,), steps still in memory
        return {name: array[slots] for name, array in self._arrays().items()}
