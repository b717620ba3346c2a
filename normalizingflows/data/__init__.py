"""Datasets: toy sets, energies and real benchmark data behind one ``load(name)``."""

from . import toy
from .registry import Splits, data_dir, load, names, register

__all__ = ["Splits", "data_dir", "load", "names", "register", "toy"]
