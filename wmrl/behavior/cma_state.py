"""The state of a `cma.CMAEvolutionStrategy` as plain tensors and numbers, so a checkpoint holds no
pickled object (a pickle runs whatever code it names when loaded; cma also evaluates option strings).

What is saved: every attribute holding numbers, booleans, None, arrays, or lists, tuples and dicts of
them, of the strategy and of the parts that change during a search (its sampler, step-size
adaptation, diagonal decoding, best solution, fitness history, stagnation test and sent solutions).
Everything else (options, parameters derived from them, loggers, timers) is rebuilt from the same
options. Restoring writes those attributes into a new strategy made with the same options, so the
next `ask` and `tell` give exactly what they would have given without the interruption (numpy's
global RNG, from which cma draws, is restored with the run's other RNGs).
"""

from __future__ import annotations

import numpy as np
import torch

PARTS = ("", "sm", "adapt_sigma", "sigma_vec", "best", "fit", "_stoptolxstagnation", "sent_solutions")


def _encode(value):
    """A plain value as tensors, numbers and containers of them, or raise TypeError."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object array")
        return torch.from_numpy(value.copy())
    if type(value) in (list, tuple):  # exact types: cma's option and solution dicts subclass these
        return {"__seq__": type(value).__name__, "items": [_encode(v) for v in value]}
    if type(value) is dict and all(isinstance(k, (int, str)) for k in value):
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    raise TypeError(type(value).__name__)


def _decode(value, like):
    """Back to the original types; `like` is the fresh strategy's value of the same attribute."""
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict) and "__seq__" in value:
        items = [_decode(v, None) for v in value["items"]]
        return tuple(items) if value["__seq__"] == "tuple" else items
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _decode(v, None) for k, v in value["__dict__"].items()}
    if isinstance(like, np.generic) and isinstance(value, (int, float, bool)):
        return type(like)(value)
    return value


def _part(es, name: str):
    return es if not name else getattr(es, name)


def es_state(es) -> dict:
    """{part: {attribute: plain value}} of the strategy (see the module docstring). An array that two
    parts share (the strategy's C is its sampler's) is saved once and marked {"__alias__": [part, key]}."""
    owner: dict[int, tuple[str, str]] = {}
    for name in PARTS:
        for key, value in vars(_part(es, name)).items():
            if isinstance(value, np.ndarray):
                owner.setdefault(id(value), (name, key))
    state = {}
    for name in PARTS:
        attrs = {}
        for key, value in vars(_part(es, name)).items():
            first = owner.get(id(value)) if isinstance(value, np.ndarray) else None
            if first is not None and first != (name, key):
                attrs[key] = {"__alias__": list(first)}
                continue
            try:
                attrs[key] = _encode(value)
            except TypeError:
                continue  # an object rebuilt from the options
        state[name] = attrs
    return state


def load_es_state(es, state: dict) -> None:
    """Write `state` (from es_state) into `es`, a strategy created with the same options."""
    aliases = []
    for name, attrs in state.items():
        part = _part(es, name)
        for key, value in attrs.items():
            if isinstance(value, dict) and "__alias__" in value:
                aliases.append((part, key, value["__alias__"]))
            else:
                setattr(part, key, _decode(value, getattr(part, key, None)))
    for part, key, (name, other) in aliases:
        setattr(part, key, getattr(_part(es, name), other))
    if not hasattr(es, "timer"):  # made by the first `ask`; it only measures wall time
        from cma.utilities.utils import ElapsedWCTime

        es.timer = ElapsedWCTime()
