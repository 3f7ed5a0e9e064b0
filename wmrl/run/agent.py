"""The agent: a world model and a behaviour learner, acting in the real env and training from replay."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmrl.behavior.registry import build_behavior
from wmrl.data.streams import StreamReplay
from wmrl.envs.factory import EnvSpec
from wmrl.errors import WmrlError
from wmrl.nets.optim import make_optimizer, optimizer_step
from wmrl.worldmodels.registry import build_world_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WmrlError("--device cuda was asked for but no CUDA device is visible", "use --device cpu or auto")
    return torch.device(name)


@dataclass
class AgentState:
    """What the agent carries between real steps for B streams: the world model's state and the
    behaviour's memory (behavior/protocol.py; None or a tensor with the streams first)."""

    wm: Any
    memory: Any = None

    def select(self, wm, idx: torch.Tensor) -> "AgentState":
        return AgentState(wm.select(self.wm, idx), None if self.memory is None else self.memory[idx])


class Agent:
    def __init__(self, cfg, spec: EnvSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.wm, self.wm_optim_cfg = build_world_model(
            cfg.world_model, getattr(cfg, cfg.world_model), spec.obs_shape, spec.is_image, spec.action)
        self.wm.to(device)
        self.wm_opt = make_optimizer(self.wm, self.wm_optim_cfg)
        self.behavior = build_behavior(cfg, self.wm.feat_dim, spec.action).to(device)
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        # Acting autocasts on CUDA only: one act's small ops cost more under CPU autocast than they save
        # (MinAtar preset, threads=1: 0.80x per STORM act, 0.63x per RSSM act; updates 1.47x / 1.37x faster).
        self.act_autocast_dtype = self.autocast_dtype if device.type == "cuda" else None

    def autocast(self, acting: bool = False):
        """The autocast context of updates, or of acting."""
        dtype = self.act_autocast_dtype if acting else self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, state: AgentState, obs: np.ndarray, prev_action: np.ndarray, is_first: np.ndarray, greedy: bool
            ) -> tuple[AgentState, np.ndarray]:
        """One real step for N envs: obs (N, *obs_shape), prev_action (N, *action shape), is_first (N,) ->
        the new agent state and actions (N, *action shape) as a numpy array. Until the model is ready to imagine (V-M-C's V
        phase) the actions are uniform at random, as the paper's V learns from random rollouts."""
        if self.wm.training:  # Module.eval() walks every submodule: a visible cost per env step
            self.wm.eval()
        o = torch.as_tensor(np.asarray(obs), device=self.device)
        a = torch.as_tensor(np.asarray(prev_action, dtype=self.spec.action.np_dtype), device=self.device)
        f = torch.as_tensor(np.asarray(is_first, dtype=bool), device=self.device)
        memory = self.behavior.forget(state.memory, f)
        with self.autocast(acting=True):
            wm_state, feat = self.wm.observe(state.wm, o, a, f)
            if not self.wm.ready_to_imagine:  # planning in an untrained dream repeats one arbitrary action
                action = self.spec.action.uniform(f.shape[0], self.device)
            else:
                action, memory = self.behavior.act(self.wm, wm_state, feat, greedy, memory)
        return AgentState(wm_state, memory), action.cpu().numpy()

    def initial_state(self, batch: int = 1) -> AgentState:
        return AgentState(self.wm.initial(batch))

    def select(self, state: AgentState, rows: list[int]) -> AgentState:
        """The state of the given batch rows (envs leaving a batch)."""
        return state.select(self.wm, torch.as_tensor(rows, dtype=torch.long, device=self.device))

    # ------------------------------------------------------------------------------------- learning
    def to_tensors(self, data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.device) for k, v in data.items()}

    def update(self, replay: StreamReplay, rng: np.random.Generator) -> dict[str, float]:
        """One world-model step on replay sequences, then one behaviour step from replayed start states."""
        tc = self.cfg.train
        from_loss = self.behavior.starts is not None and getattr(self.wm.cfg, "imagine_from", "replay") == "loss"
        self.wm.train()
        with self.autocast():
            data = self.to_tensors(replay.sample(tc.wm_batch, tc.wm_seq, rng))
            if from_loss:  # the loss's own filtered states start the imagination (rssm.imagine_from)
                count = self.behavior.starts[0]
                loss, metrics, start = self.wm.loss_and_starts(data, -(-count // tc.wm_batch))
                start = self.wm.select(start, torch.arange(count, device=self.device))
            else:
                loss, metrics = self.wm.loss(data)
        metrics["wm/grad_norm"] = optimizer_step(loss, self.wm, self.wm_opt, self.wm_optim_cfg)
        self.wm.eval()
        # Readiness only after the step: a model's loss may be what makes it ready (V-M-C's V phase).
        if self.behavior.starts is not None and self.wm.ready_to_imagine:
            if not from_loss:
                batch, context = self.behavior.starts
                ctx = self.to_tensors(replay.sample(batch, self.wm.start_length(context), rng))
                with torch.no_grad(), self.autocast():
                    start = self.wm.observe_sequence(ctx["obs"], ctx["action"], ctx["is_first"])
            with self.autocast():
                metrics.update(self.behavior.learn(self.wm, start))
        return metrics

    # ------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"wm": self.wm.state_dict(), "wm_opt": self.wm_opt.state_dict(),
                "behavior": self.behavior.state_dict(), "behavior_opt": self.behavior.optim_state_dict()}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.wm.load_state_dict(state["wm"])
            self.wm_opt.load_state_dict(state["wm_opt"])
            self.behavior.load_state_dict(state["behavior"])
            self.behavior.load_optim_state_dict(state["behavior_opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise WmrlError(f"the checkpoint's weights do not fit the model its config.yaml describes ({first})",
                            "the run was made by another wmrl version or its config.yaml was edited: "
                            "restore the original config.yaml, or start a new run") from e
