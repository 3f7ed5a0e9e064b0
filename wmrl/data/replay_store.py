"""Append-only chunk files that persist a :class:`wmrl.data.replay.Replay` in the run directory.

Design (the run directory must never be corrupted, and a resumed run must keep its data):

* A chunk file holds a contiguous range of steps ``[start, end)`` and is named
  ``chunk_{start:012d}_{end:012d}_w{write:08d}.npz``. ``write`` is a sequence number that grows with
  every file written to the directory, so the file names alone say which data is newer.
* A chunk is written to a hidden temporary file in the same directory, fsynced, then ``os.replace``d
  into place. ``os.replace`` is atomic on POSIX, so a crash leaves either the old directory or the old
  directory plus one complete chunk; never a half-written ``chunk_*.npz``. Stray temporaries are
  ignored by readers and removed by the next writer.
* Resuming from an older checkpoint rewinds the timeline: the resumed run writes chunks that start
  before the end of chunks flushed by the abandoned run. Rule: a chunk's steps are valid only up to
  the ``start`` of every chunk written after it (``valid_end`` below). Valid ranges are therefore
  disjoint, and data flushed after a checkpoint that was later resumed from can never leak back in,
  even before the resumed run has overwritten all of it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from wmrl.errors import WmrlError

COLUMNS = ("obs", "action", "reward", "terminal", "is_first")
_NAME = re.compile(r"^chunk_(\d{12})_(\d{12})_w(\d{8})\.npz$")
_TMP_PREFIX = ".tmp-chunk_"

_INCOMPLETE_FIX = "start a new run, or resume from an intact copy of the run directory"


@dataclasses.dataclass(frozen=True)
class ChunkInfo:
    path: Path
    start: int  # first step held
    end: int  # one past the last step held
    write: int  # write sequence number: larger = written later
    valid_end: int  # steps >= valid_end were superseded by a later (rewound) write; may be < start


def chunk_name(start: int, end: int, write: int) -> str:
    return f"chunk_{start:012d}_{end:012d}_w{write:08d}.npz"


def list_chunks(directory: Path) -> list[ChunkInfo]:
    """All complete chunk files in ``directory`` with their valid ranges, sorted by write order."""
    if not directory.is_dir():
        return []
    raw = []
    for path in directory.iterdir():
        m = _NAME.match(path.name)
        if m:
            raw.append((int(m[3]), int(m[1]), int(m[2]), path))
    raw.sort()
    infos: list[ChunkInfo] = []
    newer_min_start = None  # min start over chunks written after the current one
    for write, start, end, path in reversed(raw):
        valid_end = end if newer_min_start is None else min(end, newer_min_start)
        infos.append(ChunkInfo(path, start, end, write, valid_end))
        newer_min_start = start if newer_min_start is None else min(newer_min_start, start)
    infos.reverse()
    return infos


def next_write(chunks: list[ChunkInfo]) -> int:
    return max((c.write for c in chunks), default=0) + 1


def write_chunk(directory: Path, start: int, write: int, columns: dict[str, np.ndarray]) -> Path:
    """Atomically write steps ``[start, start + len)``; returns the final path."""
    length = len(columns["action"])
    final = directory / chunk_name(start, start + length, write)
    tmp = directory / (_TMP_PREFIX + final.name)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, start=np.int64(start), **columns)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)  # make the rename itself durable
    return final


def remove_temporaries(directory: Path) -> None:
    # Leftovers of a crash mid-write; a run directory has a single writer, so none is in progress.
    for path in directory.glob(_TMP_PREFIX + "*"):
        path.unlink(missing_ok=True)


def prune(directory: Path, before: int) -> None:
    """Delete chunks whose valid steps all lie before ``before``, and chunks superseded entirely.

    Deleting these never changes a surviving chunk's ``valid_end``, so no stale step can come back:
    the chunk that bounds a survivor starts at the survivor's valid end (> ``before``), and if that
    chunk is itself superseded, a chunk written later starts no later and bounds the survivor too.
    Zero-length chunks are rewind markers (see ``Replay.flush``): kept until they are old.
    """
    for c in list_chunks(directory):
        superseded = c.valid_end <= c.start and c.valid_end < c.end
        if c.valid_end <= before or superseded:
            c.path.unlink(missing_ok=True)
    _fsync_dir(directory)


def plan(chunks: list[ChunkInfo], directory: Path, lo: int, hi: int) -> list[tuple[ChunkInfo, int, int]]:
    """Which chunk supplies which steps of ``[lo, hi)``: a list of ``(chunk, seg_start, seg_end)``.

    Uses file names only (no reads), so a gap is reported before the buffer is touched.
    """
    segments = []
    for c in chunks:
        s, e = max(c.start, lo), min(c.valid_end, hi)
        if s < e:
            segments.append((c, s, e))
    segments.sort(key=lambda seg: seg[1])
    cursor = lo
    for c, s, e in segments:
        if s > cursor:
            _missing(directory, cursor, s)
        if s < cursor:  # valid ranges are disjoint by construction; overlap means a foreign file
            raise WmrlError(
                f"replay chunks {c.path.name} and another file in {directory} both claim step {s}; "
                "the run directory's replay is inconsistent",
                _INCOMPLETE_FIX,
            )
        cursor = e
    if cursor < hi:
        _missing(directory, cursor, hi)
    return segments


def read_chunk(info: ChunkInfo, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
               action_shape: tuple[int, ...] = (), action_dtype: np.dtype = np.dtype(np.int64)) -> dict[str, np.ndarray]:
    """Read and check one chunk; any damage becomes a WmrlError naming the file."""
    try:
        with np.load(info.path, allow_pickle=False) as z:
            start = int(z["start"])
            columns = {k: z[k] for k in COLUMNS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        _unreadable(info.path, f"{type(e).__name__}: {e}")
    length = info.end - info.start
    if start != info.start or any(len(v) != length for v in columns.values()):
        _unreadable(info.path, f"contents do not hold steps [{info.start}, {info.end})")
    obs = columns["obs"]
    if obs.shape[1:] != obs_shape or obs.dtype != obs_dtype:
        _unreadable(
            info.path,
            f"obs are {obs.dtype}{list(obs.shape[1:])}, this replay stores {obs_dtype}{list(obs_shape)}",
        )
    action = columns["action"]
    if action.shape[1:] != action_shape or action.dtype != action_dtype:
        _unreadable(
            info.path,
            f"actions are {action.dtype}{list(action.shape[1:])}, this replay stores {action_dtype}{list(action_shape)}",
        )
    return columns


def _missing(directory: Path, lo: int, hi: int) -> None:
    raise WmrlError(
        f"no replay chunk file in {directory} holds steps [{lo}, {hi}) (expected a file like "
        f"chunk_{lo:012d}_*.npz); the run directory's replay is incomplete",
        _INCOMPLETE_FIX,
    )


def _unreadable(path: Path, why: str) -> None:
    raise WmrlError(
        f"replay chunk file {path} is unreadable ({why}); the run directory's replay is incomplete",
        _INCOMPLETE_FIX,
    )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open directories (Windows): rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
