"""Plots: pure functions that return matplotlib Figures."""

from .density import density_heatmap, density_vs_data
from .energy import energy_heatmap
from .images import image_grid
from .latent import latent_space
from .layers import bijector_steps, layer_by_layer, layer_by_layer_gif, layer_outputs
from .samples import loss_curves, samples_scatter

__all__ = ["density_heatmap", "density_vs_data", "energy_heatmap", "image_grid", "latent_space",
           "bijector_steps", "layer_outputs", "layer_by_layer", "layer_by_layer_gif",
           "loss_curves", "samples_scatter"]
