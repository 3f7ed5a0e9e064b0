"""Names of the state dimensions of Gymnasium's vector envs, for labelling plots (`wmrl dream`); an env
not listed gets obs[i]. The order is each env's observation order as Gymnasium documents it."""

from __future__ import annotations

STATE_NAMES = {
    "CartPole": ["cart position", "cart velocity", "pole angle", "pole angular velocity"],
    "Acrobot": ["cos(theta1)", "sin(theta1)", "cos(theta2)", "sin(theta2)", "theta1 velocity", "theta2 velocity"],
    "MountainCar": ["position", "velocity"],
    "LunarLander": ["x", "y", "x velocity", "y velocity", "angle", "angular velocity", "left leg contact",
                    "right leg contact"],
}


def state_names(env_id: str, dims: int) -> list[str]:
    """Labels for the `dims` observation dimensions of env `env_id` (e.g. "CartPole-v1")."""
    base = env_id.split(":")[-1].split("/")[-1].split("-v")[0]
    names = STATE_NAMES.get(base, [])
    return names if len(names) == dims else [f"obs[{d}]" for d in range(dims)]
