"""normalizingflows: a catalog of normalizing flows for TensorFlow Probability.

Every flow is a TFP bijector or distribution (``flow.bijector``, ``flow.distribution``) and a
``tf_keras.Model`` that trains with ``compile``/``fit``.

Example:
    >>> import normalizingflows as nf
    >>> flow = nf.flows.build("maf", 2, layers=2, hidden_units=8)
    >>> flow.sample(3, seed=0).shape
    TensorShape([3, 2])
"""

from . import bijectors, data, diagnostics, flows, layers, nn, plot, training
from .flows import Flow, load

__all__ = ["Flow", "bijectors", "data", "diagnostics", "flows", "layers", "load", "nn", "plot",
           "training", "__version__"]
__version__ = "0.1.0"
