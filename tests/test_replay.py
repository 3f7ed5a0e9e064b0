"""Replay buffer: sampled rows against the rows added, ring-buffer edges, and crash-safe persistence.

Observations encode their own step number (obs = [step]), so every sampled row can be checked
against a plain Python list of what was added.
"""

import time
from pathlib import Path

import numpy as np
import pytest

from wmrl.data import replay_store
from wmrl.data.replay import Replay, ReplayConfig
from wmrl.data.streams import StreamReplay
from wmrl.errors import WmrlError


def make(capacity=1000, directory=None, save_chunk=16, prune_margin=None, **kw):
    cfg = ReplayConfig(capacity=capacity, save_chunk=save_chunk, prune_margin=prune_margin)
    return Replay(cfg, (1,), np.int64, directory=directory, **kw)


def reference_rows(n, seed=0, offset=0):
    """Rows for steps 0..n-1; episodes of random length, some terminated, some truncated."""
    rng = np.random.default_rng(seed)
    rows, first = [], True
    for step in range(n):
        ends = rng.random() < 0.1
        terminal = bool(ends and rng.random() < 0.5)  # otherwise ends by truncation
        rows.append(dict(obs=[step + offset], action=int(rng.integers(6)), reward=float(rng.normal()),
                         terminal=terminal, is_first=first))
        first = ends
    return rows


def fill(replay, rows, flush_at=()):
    for i, row in enumerate(rows):
        replay.add(**row)
        if replay.total_added in flush_at:
            replay.flush()


def check_against(batch, rows, offset=0):
    """Every sampled row equals the added row with that step number; windows are contiguous."""
    steps = batch["obs"][..., 0] - offset  # (B, T)
    assert (np.diff(steps, axis=1) == 1).all()
    for b, t in np.ndindex(steps.shape):
        row = rows[steps[b, t]]
        assert batch["action"][b, t] == row["action"]
        assert batch["reward"][b, t] == np.float32(row["reward"])
        assert batch["terminal"][b, t] == row["terminal"]
        assert batch["is_first"][b, t] == (row["is_first"] or t == 0)


def whole(replay):
    """The whole buffer, oldest first (only one window of length len fits)."""
    return replay.sample(1, len(replay), np.random.default_rng(0))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def chunk_files(d: Path):
    return sorted(p.name for p in d.iterdir())


def test_config_validate_names_bad_value():
    for bad in (dict(capacity=0), dict(save_chunk=-1), dict(prune_margin=-5), dict(capacity=2.5)):
        with pytest.raises(WmrlError, match=next(iter(bad))):
            ReplayConfig(**bad).validate()


def test_sample_equals_added_rows_and_forces_is_first():
    rows = reference_rows(300)
    replay = make()
    fill(replay, rows)
    batch = replay.sample(64, 20, np.random.default_rng(1))
    assert batch["obs"].shape == (64, 20, 1) and batch["action"].shape == (64, 20)
    assert batch["action"].dtype == np.int64 and batch["reward"].dtype == np.float32
    assert batch["terminal"].dtype == bool and batch["is_first"].dtype == bool
    check_against(batch, rows)
    assert batch["is_first"][:, 0].all()
    assert batch["is_first"][:, 1:].any()  # episode starts inside windows are kept, not cleared
    # Uniform over all 281 starts: each start is hit with a large sample.
    starts = replay.sample(20_000, 20, np.random.default_rng(2))["obs"][:, 0, 0]
    assert set(starts) == set(range(281))


def test_wraparound_never_crosses_write_position():
    rows = reference_rows(130)
    replay = make(capacity=50)
    fill(replay, rows)
    assert len(replay) == 50 and replay.total_added == 130
    batch = replay.sample(500, 10, np.random.default_rng(0))
    check_against(batch, rows)  # contiguity: 129 -> 80 would be a crossing
    assert batch["obs"].min() >= 80 and batch["obs"].max() <= 129
    assert set(batch["obs"][:, 0, 0]) == set(range(80, 121))  # all valid starts reachable
    assert list(whole(replay)["obs"][0, :, 0]) == list(range(80, 130))


def test_too_few_steps_is_an_error():
    replay = make()
    fill(replay, reference_rows(5))
    with pytest.raises(ValueError, match="only 5 steps"):
        replay.sample(2, 6, np.random.default_rng(0))
    assert replay.sample(2, 5, np.random.default_rng(0))["obs"].shape == (2, 5, 1)


def test_uint8_images_stay_uint8_and_bad_obs_rejected():
    replay = Replay(ReplayConfig(capacity=20), (3, 8, 8), np.uint8)
    for i in range(20):
        replay.add(np.full((3, 8, 8), i * 10, np.uint8), 0, 0.0, False, i == 0)
    batch = replay.sample(4, 5, np.random.default_rng(0))
    assert batch["obs"].dtype == np.uint8 and batch["obs"].shape == (4, 5, 3, 8, 8)
    with pytest.raises(ValueError, match="cannot be stored"):
        replay.add(np.zeros((3, 8, 8), np.float32), 0, 0.0, False, False)
    with pytest.raises(ValueError, match="shape"):
        replay.add(np.zeros((8, 8, 3), np.uint8), 0, 0.0, False, False)


@pytest.mark.parametrize("flush_at", [(130,), (7, 40, 89, 130), (20, 70, 130)])
def test_flush_load_round_trip_after_wrap(tmp_path, flush_at):
    rows = reference_rows(130)
    replay = make(capacity=50, directory=tmp_path)
    fill(replay, rows, flush_at)
    restored = make(capacity=50, directory=tmp_path)
    restored.load(130)
    assert len(restored) == 50 and restored.total_added == 130
    assert_same(whole(restored), whole(replay))
    assert_same(replay.sample(32, 8, np.random.default_rng(3)), restored.sample(32, 8, np.random.default_rng(3)))
    # The restored buffer keeps going exactly like the original.
    more = reference_rows(170)[130:]
    fill(replay, more)
    fill(restored, more)
    assert_same(whole(restored), whole(replay))


def test_load_ignores_data_flushed_after_the_checkpoint(tmp_path):
    rows = reference_rows(100)
    replay = make(directory=tmp_path)
    fill(replay, rows, flush_at=(60, 100))
    for k in (60, 45, 0):  # a chunk boundary, mid-chunk, nothing
        restored = make(directory=tmp_path)
        restored.load(k)
        assert restored.total_added == k and len(restored) == k
        if k:
            check_against(whole(restored), rows)
            assert list(whole(restored)["obs"][0, :, 0]) == list(range(k))


def test_resume_from_older_checkpoint_supersedes_abandoned_data(tmp_path):
    old = reference_rows(100)
    replay = make(directory=tmp_path)
    fill(replay, old, flush_at=(50, 100))  # chunks up to 100; suppose the checkpoint said 45
    resumed = make(directory=tmp_path)
    resumed.load(45)
    new = reference_rows(80, seed=1, offset=1000)[45:]
    for row in new[:25]:
        resumed.add(**row)
    resumed.flush()  # steps 45..69 of the new timeline
    fresh = make(directory=tmp_path)
    fresh.load(70)
    steps = whole(fresh)["obs"][0, :, 0]
    assert list(steps) == list(range(45)) + list(range(1045, 1070))
    # Steps 70..99 of the abandoned run are stale: asking for them fails instead of mixing runs.
    with pytest.raises(WmrlError, match="incomplete"):
        make(directory=tmp_path).load(80)


def test_missing_chunk_is_a_user_error(tmp_path):
    replay = make(directory=tmp_path)
    fill(replay, reference_rows(64), flush_at=(64,))
    (tmp_path / chunk_files(tmp_path)[1]).unlink()  # steps 16..31
    with pytest.raises(WmrlError, match=r"\[16, 32\).*incomplete") as err:
        make(directory=tmp_path).load(64)
    assert "fix:" in str(err.value)
    make(directory=tmp_path).load(16)  # data before the hole is still usable


@pytest.mark.parametrize("damage", [b"garbage", b""])
def test_corrupt_chunk_is_a_user_error_naming_the_file(tmp_path, damage):
    replay = make(directory=tmp_path)
    fill(replay, reference_rows(64), flush_at=(64,))
    victim = tmp_path / chunk_files(tmp_path)[2]
    victim.write_bytes(damage)
    with pytest.raises(WmrlError, match=victim.name):
        make(directory=tmp_path).load(64)


def test_truncated_chunk_is_a_user_error(tmp_path):
    replay = make(directory=tmp_path)
    fill(replay, reference_rows(64), flush_at=(64,))
    victim = tmp_path / chunk_files(tmp_path)[0]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(WmrlError, match=victim.name):
        make(directory=tmp_path).load(64)


def test_failed_write_leaves_only_complete_chunks(tmp_path, monkeypatch):
    rows = reference_rows(100)
    replay = make(directory=tmp_path)
    fill(replay, rows[:40], flush_at=(40,))
    before = chunk_files(tmp_path)
    fill(replay, rows[40:])
    real_savez, calls = np.savez, []

    def savez_dies_on_second_chunk(file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"PK\x03\x04 half a zip")
            raise OSError("disk full")
        real_savez(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez_dies_on_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        replay.flush()
    after = chunk_files(tmp_path)
    assert set(before) <= set(after) and len(after) == len(before) + 1  # one complete new chunk
    assert all(name.startswith("chunk_") for name in after)  # no temporary left behind
    restored = make(directory=tmp_path)
    restored.load(56)  # everything that did reach disk is intact
    check_against(whole(restored), rows)
    with pytest.raises(WmrlError):
        make(directory=tmp_path).load(100)
    monkeypatch.setattr(np, "savez", real_savez)
    replay.flush()  # retry picks up where the failure stopped
    restored = make(directory=tmp_path)
    restored.load(100)
    assert_same(whole(restored), whole(replay))


def test_prune_keeps_what_a_recent_checkpoint_needs(tmp_path):
    rows = reference_rows(200)
    replay = make(capacity=50, directory=tmp_path, save_chunk=10, prune_margin=20)
    fill(replay, rows, flush_at=range(10, 201, 10))
    # Kept: every chunk with a step >= 200 - 50 - 20 = 130; each load(k >= 180) works.
    assert len(chunk_files(tmp_path)) == 7
    for k in (200, 185, 180):
        restored = make(capacity=50, directory=tmp_path, save_chunk=10)
        restored.load(k)
        check_against(whole(restored), rows)
    with pytest.raises(WmrlError):
        make(capacity=50, directory=tmp_path).load(179)  # needs step 129: pruned, as documented


def test_gap_between_flushes_marks_stale_data(tmp_path):
    rows = reference_rows(60)
    replay = make(capacity=20, directory=tmp_path)
    fill(replay, rows, flush_at=(10, 60))  # steps 10..39 were overwritten before any flush
    restored = make(capacity=20, directory=tmp_path)
    restored.load(60)
    check_against(whole(restored), rows)
    with pytest.raises(WmrlError, match=r"\[25, 40\)"):
        make(capacity=20, directory=tmp_path).load(45)


def test_gap_after_resume_is_not_filled_with_the_abandoned_runs_data(tmp_path):
    fill(make(capacity=20, directory=tmp_path), reference_rows(100), flush_at=range(10, 101, 10))
    resumed = make(capacity=20, directory=tmp_path)
    resumed.load(10)
    fill(resumed, reference_rows(60, seed=1, offset=1000)[10:], flush_at=(60,))  # 10..39 never flushed
    restored = make(capacity=20, directory=tmp_path)
    restored.load(60)
    assert list(whole(restored)["obs"][0, :, 0]) == list(range(1040, 1060))
    with pytest.raises(WmrlError, match=r"\[25, 40\)"):  # not steps 25..39 of the abandoned run
        make(capacity=20, directory=tmp_path).load(45)


def test_new_run_refuses_to_supersede_an_old_runs_directory(tmp_path):
    fill(make(directory=tmp_path), reference_rows(30), flush_at=(30,))
    intruder = make(directory=tmp_path)
    fill(intruder, reference_rows(5))
    with pytest.raises(WmrlError, match="another run"):
        intruder.flush()
    restart = make(directory=tmp_path)
    restart.load(0)  # explicit take-over from scratch
    fill(restart, reference_rows(40, offset=500), flush_at=(40,))
    assert chunk_files(tmp_path) == sorted(
        replay_store.chunk_name(s, min(s + 16, 40), w) for s, w in ((0, 3), (16, 4), (32, 5))
    )


def test_sampling_100k_images_is_vectorised_and_fast():
    capacity = 100_000
    replay = Replay(ReplayConfig(capacity=capacity), (1, 16, 16), np.uint8)  # 25.6 MB of pixels
    # Fill the arrays directly: 100k Python add() calls would dominate the test's time budget.
    replay._obs[:] = np.arange(capacity, dtype=np.uint8)[:, None, None, None]
    replay._is_first[::1000] = True
    replay._total = capacity
    rng = np.random.default_rng(0)
    replay.sample(16, 64, rng)  # warm-up
    best = min(_timed(lambda: replay.sample(16, 64, rng)) for _ in range(5))
    assert best < 0.05, f"sample(16, 64) took {best * 1e3:.1f} ms"


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_stream_replay_samples_windows_inside_one_stream_uniformly_over_all_windows(tmp_path):
    """Three streams of 100, 200 and 40 steps (obs = 1000 * stream + step): every window lies inside one
    stream's timeline, and streams are drawn in proportion to the windows they hold; the streams persist
    in directories of their own and load back exactly."""
    cfg = ReplayConfig(capacity=3000, save_chunk=16, prune_margin=None)
    replay = StreamReplay(cfg, (1,), np.int64, tmp_path / "replay", streams=3)
    sizes = (100, 200, 40)
    for i, n in enumerate(sizes):
        for step, row in enumerate(reference_rows(n, seed=i, offset=1000 * i)):
            replay.add(**row, stream=i)
    assert len(replay) == replay.total_added == sum(sizes)
    batch = replay.sample(6000, 10, np.random.default_rng(0))
    obs = batch["obs"][..., 0]  # (B, T)
    stream = obs // 1000
    assert (stream == stream[:, :1]).all() and (np.diff(obs, axis=1) == 1).all()
    for i, n in enumerate(sizes):
        check_against({k: v[stream[:, 0] == i] for k, v in batch.items()}, reference_rows(n, seed=i), 1000 * i)
    windows = np.array([n - 9 for n in sizes])
    share = np.bincount(stream[:, 0], minlength=3) / len(obs)
    assert np.allclose(share, windows / windows.sum(), atol=0.02)
    replay.flush()
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == ["stream_0", "stream_1", "stream_2"]
    with pytest.raises(ValueError, match="multiple"):
        StreamReplay(cfg, (1,), np.int64, tmp_path / "replay", streams=3).load(100)


def test_one_stream_is_a_plain_replay_in_the_same_directory_with_the_same_draws(tmp_path):
    rows = reference_rows(300)
    single, plain = StreamReplay(ReplayConfig(), (1,), np.int64, tmp_path / "a"), make(directory=tmp_path / "b")
    fill(single, rows)
    fill(plain, rows)
    single.flush()
    assert list((tmp_path / "a").glob("chunk_*.npz"))
    a, b = single.sample(8, 20, np.random.default_rng(3)), plain.sample(8, 20, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
