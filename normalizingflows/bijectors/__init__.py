"""Bijectors that TensorFlow Probability lacks (math only; no Keras)."""

__all__: list[str] = []
