"""Plots: pure functions that return matplotlib Figures."""

from .density import density_heatmap, density_vs_data

__all__ = ["density_heatmap", "density_vs_data"]
