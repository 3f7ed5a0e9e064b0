"""wmrl: sample-efficient reinforcement learning with learned world models."""

__version__ = "0.1.0"
