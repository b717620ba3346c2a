"""normalizingflows: a catalog of normalizing flows for TensorFlow Probability.

Every flow is a TFP bijector or distribution (``flow.bijector``, ``flow.distribution``) and a
``tf_keras.Model`` that trains with ``compile``/``fit``.
"""

from . import bijectors, data

__all__ = ["bijectors", "data", "__version__"]
__version__ = "0.1.0"
