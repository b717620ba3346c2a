"""tf_keras conditioners: MADE for autoregressive flows, MLPs for coupling flows, conv nets
and PixelCNNs for image flows."""

from .conv import ConvNet
from .made import MADE, hidden_degrees, input_degrees
from .mlp import MLP
from .pixelcnn import PixelCNN, channel_groups, pixelcnn_mask
from .precision import MIXED_POLICIES, precision_scope

__all__ = ["ConvNet", "MADE", "MLP", "MIXED_POLICIES", "PixelCNN", "channel_groups",
           "hidden_degrees", "input_degrees", "pixelcnn_mask", "precision_scope"]
