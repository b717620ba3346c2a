"""The flow catalog: thin constructors that wire bijectors, conditioners and a base into a Flow."""

from . import autoregressive, coupling, mixture, mixture_cdf, planar, radial, spline  # noqa: F401
from .core import Flow, load
from .registry import Entry, build, catalog, entries

__all__ = ["Flow", "Entry", "build", "catalog", "entries", "load"]
