"""tf_keras conditioners: MADE for autoregressive flows, MLPs for coupling flows."""

from .made import MADE, hidden_degrees, input_degrees
from .mlp import MLP

__all__ = ["MADE", "MLP", "hidden_degrees", "input_degrees"]
