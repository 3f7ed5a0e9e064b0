"""Reference scores that normalise returns across tasks (../shared/reference/protocols.md, systems.md).

- atari_hns: human-normalised score (score - random) / (human - random), with the Atari 100k table's
  random and human scores (atari100k_scores.csv, keyed by ALE game name).
- minatar_dqn: (score - random) / (DQN@5M - random), random and DQN at 5M frames read off the MinAtar
  paper's curves (approximate); DQN at 1M frames is kept for the tables.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

MINATAR = {  # game: (random, DQN at 1M frames, DQN at 5M frames)
    "Asterix": (0.4, 13.0, 17.0),
    "Breakout": (0.5, 9.5, 10.0),
    "Freeway": (0.1, 48.0, 50.0),
    "Seaquest": (0.1, 1.0, 20.0),
    "SpaceInvaders": (2.7, 30.0, 43.0),
}


def _game(env_id: str, prefix: str) -> str:
    m = re.match(rf"^{prefix}/([A-Za-z]+)-v\d+$", env_id)
    if not m:
        raise KeyError(f"{env_id} is not a {prefix}/<Game>-vN id")
    return m[1]


def atari_table() -> dict[str, dict[str, float]]:
    with open(Path(__file__).parent / "atari100k_scores.csv") as f:
        return {r["game"]: {k: float(v) for k, v in r.items() if k != "game"} for r in csv.DictReader(f)}


def normalizer(kind: str, env_id: str):
    """score -> normalised score for `env_id` under `kind` (none | atari_hns | minatar_dqn)."""
    if kind == "none":
        return lambda score: score
    if kind == "atari_hns":
        row = atari_table()[_game(env_id, "ALE")]
        return lambda score: (score - row["random"]) / (row["human"] - row["random"])
    random, _, dqn5 = MINATAR[_game(env_id, "MinAtar")]
    return lambda score: (score - random) / (dqn5 - random)


def published(kind: str, env_id: str) -> dict[str, float]:
    """Published per-task scores shown beside a suite's (raw returns)."""
    if kind == "atari_hns":
        row = atari_table()[_game(env_id, "ALE")]
        return {k: v for k, v in row.items() if k not in ("random", "human")}
    if kind == "minatar_dqn":
        random, dqn1, dqn5 = MINATAR[_game(env_id, "MinAtar")]
        return {"random": random, "DQN@1M": dqn1, "DQN@5M": dqn5}
    return {}
