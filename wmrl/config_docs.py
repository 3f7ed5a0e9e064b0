"""Every config key with its value, type, choices and docstring, for `wmrl config`: the attribute
docstrings of the config dataclasses (the string literal under a field), read from their source."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing

from wmrl.behavior.actor_critic import BOOTSTRAPS
from wmrl.behavior.cmaes import WHERE
from wmrl.config import BEHAVIORS, DEVICES, PRECISIONS, WORLD_MODELS, Config
from wmrl.nets.encoders import VECTOR_SCALINGS
from wmrl.run.evaluate import POLICIES
from wmrl.worldmodels.mdnrnn import TRAINING

# Keys whose values are names: the tuples their validators check against.
CHOICES = {"device": DEVICES, "precision": PRECISIONS, "world_model": WORLD_MODELS, "behavior": BEHAVIORS,
           "train.eval_policy": POLICIES, "encoder.vector_scaling": VECTOR_SCALINGS, "mdnrnn.training": TRAINING,
           "cmaes.where": WHERE, "actor_critic.bootstrap": BOOTSTRAPS}


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
    """{field: docstring} of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(hint) -> str:
    args = typing.get_args(hint)
    if args:
        return " | ".join("null" if a is type(None) else a.__name__ for a in args)
    return getattr(hint, "__name__", str(hint))


def describe(cfg: Config) -> list[dict]:
    """One row per leaf key: {key, value, type, choices, doc}, in the dataclasses' order."""
    rows = []

    def walk(obj, prefix: str) -> None:
        hints = typing.get_type_hints(type(obj))
        docs = _docstrings(type(obj))
        for f in dataclasses.fields(obj):
            value, key = getattr(obj, f.name), prefix + f.name
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
                continue
            choices = next((c for k, c in CHOICES.items() if key == k or key.endswith("." + k)), None)
            rows.append({"key": key, "value": value, "type": _type_name(hints[f.name]),
                         "choices": list(choices) if choices else None, "doc": docs.get(f.name, "")})

    walk(cfg, "")
    return rows


def render(cfg: Config) -> str:
    lines = []
    for r in describe(cfg):
        value = "null" if r["value"] is None else r["value"]
        extra = f" one of {'|'.join(r['choices'])}" if r["choices"] else ""
        lines.append(f"{r['key']} = {value}    ({r['type']}{extra})" + (f"\n    {r['doc']}" if r["doc"] else ""))
    return "\n".join(lines)
