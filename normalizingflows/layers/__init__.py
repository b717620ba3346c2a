"""Bayesian tf_keras layers built from the catalog's flows: multiplicative normalizing flows
(MNF, Louizos & Welling 2017), LeNet-5 classifiers around them, and uncertainty metrics."""

from .lenet import LeNet, MNFLeNet, parameter_counts
from .mnf import KLAnnealing, MNFConv2D, MNFDense, MNFLayer, mnf_layers, split_seed
from .uncertainty import accuracy, expected_calibration_error, predictive_entropy

__all__ = ["KLAnnealing", "LeNet", "MNFConv2D", "MNFDense", "MNFLayer", "MNFLeNet", "accuracy",
           "expected_calibration_error", "mnf_layers", "parameter_counts", "predictive_entropy",
           "split_seed"]
