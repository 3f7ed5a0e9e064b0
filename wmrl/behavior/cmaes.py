"""World Models' controller C: a linear policy on the features [z, h], evolved with CMA-ES (the `cma`
package), either entirely inside the world model's dream or in the real environment.

Parameters: W (A, F) and b (A); a discrete action is argmax(W f + b), a Box action tanh(W f + b) in
[-1, 1]^A, which the env maps affinely onto its bounds. Departure on CarRacing: World Models' controller
maps gas as (tanh + 1) / 2, as here, but brake as clip(tanh, 0, 1); the affine map gives brake
(tanh + 1) / 2 too, so the search's starting mean (zero parameters) brakes at 0.5 where theirs brakes at 0.
The controller is deterministic, as in World Models: W f + b are not trained as logits (their scale is whatever the search found), so a
softmax of them would explore by an accident of scale, near uniform for small parameters. The search's
own population is the exploration: in the real env each candidate plays; in the dream the real episodes
are played by the mean. Fitness of a candidate is its mean undiscounted return over
`rollouts` episodes (World Models: population 64, 16 rollouts):
- where="dream": every `every`-th update, one generation: all candidates start from the same `rollouts`
  replay states and are imagined for `horizon` steps as one batch; the return counts predicted rewards
  while the model predicts the episode goes on (returns.py). The dream's randomness is the model's
  (the MDN-RNN's `temperature`).
- where="real": training episodes are played by the candidates in turn, `rollouts` each, and a
  generation ends when every candidate has played; nothing is learned from the model.
Greedy acting (evaluation) uses the mean of the search distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cma
import numpy as np
import torch

from wmrl.behavior.cma_state import es_state, load_es_state
from wmrl.behavior.protocol import Behavior
from wmrl.behavior.returns import discounted_return
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError, require_positive

WHERE = ("dream", "real")


@dataclass
class CmaesConfig:
    where: str = "dream"
    """dream (imagined rollouts in the world model) or real (training episodes)."""
    population: int = 64
    """Candidates per generation (World Models: 64)."""
    rollouts: int = 16
    """Episodes (dream: start states) per candidate."""
    horizon: int = 200
    """Dream rollout length."""
    context: int = 8
    """Replay steps the model observes before a dream starts."""
    every: int = 1
    """Dream: one generation per this many world-model updates."""
    sigma0: float = 0.1
    """Initial step size of the search (parameters start at zero)."""
    diagonal: bool = False
    """Diagonal covariance (cheaper for large feature sizes); World Models used the full one."""

    def validate(self) -> None:
        require_positive("cmaes", self, "population", "rollouts", "horizon", "context", "every", "sigma0")
        if self.where not in WHERE:
            raise WmrlError(f"cmaes.where={self.where!r} is not known", "use dream or real")
        if self.population < 2:
            raise WmrlError(f"cmaes.population={self.population} is too small", "use at least 2 (paper: 64)")


class CmaesController(Behavior):
    def __init__(self, cfg: CmaesConfig, feat_dim: int, action: ActionSpace, seed: int = 0):
        super().__init__()
        self.cfg, self.feat_dim, self.action = cfg, feat_dim, action
        self.starts = (cfg.rollouts, cfg.context) if cfg.where == "dream" else None
        size = action.size * (feat_dim + 1)
        # cma reads seed 0 as "seed from the clock", hence seed + 1.
        opts = {"popsize": cfg.population, "seed": seed + 1, "verbose": -9, "CMA_diagonal": cfg.diagonal}
        self.es = cma.CMAEvolutionStrategy(np.zeros(size), cfg.sigma0, opts)
        self.register_buffer("mean", torch.zeros(size))
        self.calls = 0
        # real: the generation being played, (P, size), and its episode returns in the order played
        # (candidate p plays episodes p * rollouts ... (p + 1) * rollouts - 1).
        self.candidates = np.asarray(self.es.ask()) if cfg.where == "real" else None
        self.scores: list[float] = []

    def _linear(self, params: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """params (P, size), feat (P, R, F) -> actions (P, R) int64 or (P, R, A) in [-1, 1]."""
        A, Fd = self.action.size, self.feat_dim
        weight, bias = params[:, :A * Fd].reshape(-1, A, Fd), params[:, A * Fd:]
        out = torch.einsum("prf,paf->pra", feat.float(), weight) + bias[:, None]  # (P, R, A)
        return out.argmax(-1) if self.action.is_discrete else torch.tanh(out)

    def _current(self) -> torch.Tensor:
        """(1, size) the parameters acting now: the candidate on turn (real) or the mean."""
        if self.candidates is not None:
            turn = len(self.scores) // self.cfg.rollouts
            return torch.as_tensor(self.candidates[turn], dtype=torch.float32, device=self.mean.device)[None]
        return self.mean[None]

    @torch.no_grad()
    def act(self, wm, state, feat, greedy, memory=None):
        params = self.mean[None] if greedy else self._current()
        return self._linear(params, feat[None])[0], None  # (B,) or (B, A)

    def _tell(self, candidates: np.ndarray, fitness: np.ndarray) -> dict[str, float]:
        self.es.tell(list(candidates), list(-fitness))  # cma minimises
        self.mean.copy_(torch.as_tensor(self.es.mean, dtype=torch.float32))
        return {"cmaes/fitness_mean": float(fitness.mean()), "cmaes/fitness_best": float(fitness.max()),
                "cmaes/sigma": float(self.es.sigma), "cmaes/generation": float(self.es.countiter)}

    @torch.no_grad()
    def learn(self, wm, start):
        self.calls += 1
        if self.cfg.where != "dream" or self.calls % self.cfg.every:
            return {}
        P, R = self.cfg.population, self.cfg.rollouts
        candidates = np.asarray(self.es.ask())
        params = torch.as_tensor(candidates, dtype=torch.float32, device=self.mean.device)
        tiled = wm.select(start, torch.arange(R, device=params.device).repeat(P))  # row p * R + r

        def policy(feat: torch.Tensor) -> torch.Tensor:
            return self._linear(params, feat.reshape(P, R, -1)).flatten(0, 1)  # (P * R, ...)

        rollout = wm.imagine(tiled, policy, self.cfg.horizon)
        fitness = discounted_return(rollout.reward.float(), rollout.cont.float(), 1.0).reshape(P, R).mean(1)
        return self._tell(candidates, fitness.cpu().numpy().astype(np.float64))

    def episode_end(self, episode_return: float) -> dict[str, float]:
        """Real mode: credit a finished training episode to the candidate that played it."""
        if self.candidates is None:
            return {}
        self.scores.append(episode_return)
        if len(self.scores) < self.cfg.population * self.cfg.rollouts:
            return {}
        fitness = np.asarray(self.scores).reshape(self.cfg.population, self.cfg.rollouts).mean(1)
        metrics = self._tell(self.candidates, fitness)
        self.candidates, self.scores = np.asarray(self.es.ask()), []
        return metrics

    def optim_state_dict(self) -> dict:
        """The search's state as tensors and numbers (cma_state.py): a checkpoint holds no pickle."""
        candidates = None if self.candidates is None else torch.from_numpy(self.candidates.copy())
        return {"es": es_state(self.es), "calls": self.calls, "candidates": candidates,
                "scores": list(self.scores)}

    def load_optim_state_dict(self, state: dict) -> None:
        load_es_state(self.es, state["es"])  # self.es was made from the same config and seed
        candidates = state["candidates"]
        self.calls, self.scores = int(state["calls"]), [float(v) for v in state["scores"]]
        self.candidates = None if candidates is None else candidates.numpy().copy()
