"""tf_keras conditioners: MADE for autoregressive flows, MLPs for coupling flows, conv nets
for image flows."""

from .conv import ConvNet
from .made import MADE, hidden_degrees, input_degrees
from .mlp import MLP

__all__ = ["ConvNet", "MADE", "MLP", "hidden_degrees", "input_degrees"]
