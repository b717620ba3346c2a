"""The flow catalog: thin constructors that wire bijectors, conditioners and a base into a Flow."""

from . import (  # noqa: F401
    autoregressive,
    coupling,
    image,
    mixture,
    mixture_cdf,
    pixelcnn,
    planar,
    radial,
    spline,
)
from .core import Flow, load
from .registry import Entry, build, catalog, entries

__all__ = ["Flow", "Entry", "build", "catalog", "entries", "load"]
