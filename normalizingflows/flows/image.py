"""Image flows: multiscale RealNVP and Glow on flattened channels-last images.

Both take rows ``[N, H * W * C]`` (images flattened row-major, channels last, as the image
loaders return them) with ``image_shape=(H, W, C)``, reshape them inside the bijector, and
have a standard normal base over all ``H * W * C`` latent values. ``Flow.as_images`` turns
samples back into ``[n, H, W, C]``. Train them on dequantised, logit-transformed pixels
(``nf.data.load("mnist", form="logit")``) and report bits/dim with
``nf.data.preprocess.bits_per_dim``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from ..bijectors import ActNorm, ChannelSplit, ImageCoupling, Squeeze, invertible_1x1_conv
from ..nn import ConvNet
from ._parts import context_embedding, normal_base
from .core import Flow
from .registry import image_shape_tuple, register

tfb = tfp.bijectors

__all__ = ["realnvp_image", "glow", "image_bijector"]


def image_bijector(image_shape: Sequence[int], body: tfb.Bijector) -> tfb.Bijector:
    """``body`` (on ``[..., H, W, C]``) as a bijector on flattened rows ``[..., H * W * C]``."""
    h, w, c = (int(s) for s in image_shape)
    return tfb.Chain([tfb.Reshape([h * w * c], [h, w, c], name="to_rows"), body,
                      tfb.Reshape([h, w, c], [h * w * c], name="to_image")], name="image_flow")


def _check_levels(name: str, shape: tuple[int, int, int], levels: int, squeezes: int) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1; got {levels!r}")
    f = 2 ** squeezes
    if shape[0] % f or shape[1] % f:
        raise ValueError(f"{name} with levels={levels} squeezes {squeezes} time(s), so height "
                         f"and width must be divisible by {f}; got image_shape={shape}")


class _Nets:
    """Builds the conditioners of one flow with distinct seeds and names, and keeps them."""

    def __init__(self, *, hidden_units: int, blocks: int, activation: str,
                 context_width: int | None, seed: int, dtype: str) -> None:
        self.kw = {"hidden_channels": int(hidden_units), "blocks": int(blocks),
                   "activation": activation, "context_features": context_width, "dtype": dtype}
        self.seed = seed
        self.nets: list[ConvNet] = []

    def coupling(self, channels: int, mask: str, parity: int, scale: str = "tanh",
                 name: str = "coupling") -> ImageCoupling:
        i = len(self.nets)
        if mask == "channel":
            cut = channels // 2
            c_in, c_out = cut, 2 * (channels - cut)
        else:
            c_in, c_out = channels + 1, 2 * channels
        net = ConvNet(c_in, c_out, seed=self.seed * 1000 + i, name=f"coupling_net_{i}",
                      **self.kw)
        self.nets.append(net)
        return ImageCoupling(net, mask=mask, parity=parity, scale=scale, name=f"{name}_{i}")


def _chain(steps_data_to_base: list[tfb.Bijector], name: str) -> tfb.Bijector:
    """A ``tfb.Chain`` (base -> data) of steps listed in the data -> base order."""
    return tfb.Chain(list(steps_data_to_base), name=name)


def _flow(name: str, features: int, shape: tuple[int, int, int], body: tfb.Bijector,
          nets: _Nets, embed: Any, context_features: int | None, dtype: str) -> Flow:
    return Flow(features=features, bijector=image_bijector(shape, body),
                base=normal_base(features, dtype), nets=nets.nets,
                context_features=context_features, context_net=embed, fast_direction="both",
                image_shape=shape, dtype=dtype, name=name)


@register("realnvp_image", paper="Density estimation using Real NVP (multiscale, convolutional)",
          arxiv="https://arxiv.org/abs/1605.08803", fast_direction="both",
          image_shapes=((4, 4, 1), (4, 4, 3)))
def realnvp_image(features: int, *, image_shape: Sequence[int], layers: int = 3, levels: int = 2,
                  hidden_units: int = 64, blocks: int = 2, activation: str = "relu",
                  context_features: int | None = None, context_net: Any = None, seed: int = 0,
                  dtype: str = "float32") -> Flow:
    """Multiscale RealNVP on images: checkerboard and channel couplings, squeeze, factor-out.

    In the data -> base direction each of the ``levels - 1`` scales applies ``layers``
    checkerboard couplings (alternating parity) on ``[H, W, C]``, squeezes to
    ``[H/2, W/2, 4C]``, applies ``layers`` channel couplings (alternating), and factors out
    half of the channels; the last scale applies ``layers + 1`` checkerboard couplings. Each
    coupling is preceded by an ActNorm with data-dependent initialisation (first
    ``training=True`` batch), which plays the role of the paper's batch normalisation.
    Conditioners are residual conv nets (:class:`~normalizingflows.nn.ConvNet`, ``blocks``
    residual blocks of ``hidden_units`` channels) with a zero-initialised output.

    Args:
        features: ``H * W * C``.
        image_shape: ``(H, W, C)``; ``H`` and ``W`` divisible by ``2 ** (levels - 1)``.
        layers: Couplings per stage.
        levels: Number of scales.
        hidden_units: Channels of the conditioners' hidden convolutions.
        blocks: Residual blocks per conditioner.
        activation: Hidden activation.
        context_features: Width of a condition (e.g. one-hot classes), else ``None``.
        context_net: Widths of a context embedding MLP, a ``tf_keras`` layer, or ``None``.
        seed: Seed of every initialiser.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("realnvp_image", 16, image_shape=(4, 4, 1), layers=1,
        ...                       hidden_units=8, blocks=0)
        >>> flow.as_images(flow.sample(2, seed=0)).shape
        TensorShape([2, 4, 4, 1])

    References:
        Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP",
        https://arxiv.org/abs/1605.08803.
    """
    shape = image_shape_tuple(features, image_shape)
    _check_levels("realnvp_image", shape, levels, levels - 1)
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    nets = _Nets(hidden_units=hidden_units, blocks=blocks, activation=activation,
                 context_width=width, seed=seed, dtype=dtype)
    tf_dtype = tf.as_dtype(dtype)
    counter = [0]

    def couple(channels: int, mask: str, parity: int) -> list[tfb.Bijector]:
        counter[0] += 1
        norm = ActNorm.new(channels, dtype=tf_dtype, event_ndims=3,
                           name=f"act_norm_{counter[0]}")
        return [norm, nets.coupling(channels, mask, parity)]

    def level(channels: int, remaining: int) -> tfb.Bijector:
        if remaining == 1:
            steps = [s for i in range(layers + 1) for s in couple(channels, "checkerboard", i % 2)]
            return _chain(steps, name=f"level_{levels}")
        steps = [s for i in range(layers) for s in couple(channels, "checkerboard", i % 2)]
        steps.append(tfb.Invert(Squeeze(), name="squeeze"))
        steps += [s for i in range(layers) for s in couple(4 * channels, "channel", i % 2)]
        deeper = level(2 * channels, remaining - 1)
        steps += [ChannelSplit(deeper, 2 * channels, name=f"split_{levels - remaining + 1}"),
                  Squeeze(name="unsqueeze")]
        return _chain(steps, name=f"level_{levels - remaining + 1}")

    body = level(shape[2], levels)
    return _flow("realnvp_image", features, shape, body, nets, embed, context_features, dtype)


@register("glow", paper="Glow: Generative Flow with Invertible 1x1 Convolutions",
          arxiv="https://arxiv.org/abs/1807.03039", fast_direction="both",
          image_shapes=((4, 4, 1), (4, 4, 3)),
          test_variants=({}, {"coupling_scale": "tanh", "split_prior": False}))
def glow(features: int, *, image_shape: Sequence[int], layers: int = 8, levels: int = 2,
         hidden_units: int = 64, blocks: int = 1, activation: str = "relu",
         coupling_scale: str = "sigmoid", split_prior: bool = True,
         context_features: int | None = None, context_net: Any = None, seed: int = 0,
         dtype: str = "float32") -> Flow:
    """Glow: per scale, squeeze and ``layers`` steps of ActNorm, invertible 1x1 convolution and
    affine coupling; half the channels are factored out between scales.

    Data -> base: at each of ``levels`` scales, squeeze ``[H, W, C] -> [H/2, W/2, 4C]``, then
    ``layers`` steps (ActNorm with data-dependent initialisation, LU-parameterised 1x1
    convolution, affine channel coupling with a zero-initialised residual conv net), then
    (except at the last scale) factor out half of the channels. With ``split_prior`` (the
    paper's learned prior at each split) the factored-out half ``z_2`` is Gaussian given the
    kept half ``z_1``, ``z_2 ~ N(mu(z_1), sigma(z_1)^2)``: written as a bijector, one more
    channel coupling just before the split maps ``z_2`` to ``(z_2 - mu) / sigma``, which then
    gets the standard normal base. It is an inverted sigmoid-scale coupling, so
    ``sigma = sigmoid(r + 2)`` lies in (0, 1) (a conditional spread at most the base's) and
    sampling never amplifies through it; a tanh-bounded ``sigma`` up to ``e^3`` sent the
    samples of randomly perturbed test Glows up to 9e9 through the sigmoid couplings that
    follow. Its net is a coupling net like the others (the paper uses one zero-initialised 3x3
    convolution and an unbounded ``log sigma``). Without it the factored-out halves are
    independent standard normals, as in RealNVP.

    Args:
        features: ``H * W * C``.
        image_shape: ``(H, W, C)``; ``H`` and ``W`` divisible by ``2 ** levels``.
        layers: Steps per scale (``K`` in the paper).
        levels: Number of scales (``L``).
        hidden_units: Channels of the coupling nets' hidden convolutions.
        blocks: Residual blocks per coupling net.
        activation: Hidden activation.
        coupling_scale: ``"sigmoid"`` (the paper's ``sigmoid(r + 2)``; evaluating a density
            can only shrink through a coupling's scale, so inputs unlike the training data
            keep sane log-likelihoods) or ``"tanh"`` (``exp(3 tanh(r / 3))``, the RealNVP-style
            bound, the default before flow files of version 2; a trained MNIST Glow with it
            sent 4 of the 10,000 test digits past 100 bits/dim); see
            :class:`~normalizingflows.bijectors.ImageCoupling`.
        split_prior: Learn the prior of each factored-out half given the kept half (above);
            ``False`` was the only form before flow files of version 3.
        context_features: Width of a condition (e.g. one-hot classes), else ``None``.
        context_net: Widths of a context embedding MLP, a ``tf_keras`` layer, or ``None``.
        seed: Seed of every initialiser.
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        The :class:`Flow`.

    Example:
        >>> import normalizingflows as nf
        >>> flow = nf.flows.build("glow", 16, image_shape=(4, 4, 1), layers=1, levels=1,
        ...                       hidden_units=8)
        >>> flow.log_prob(tf.zeros([3, 16])).shape
        TensorShape([3])

    References:
        Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions",
        https://arxiv.org/abs/1807.03039.
    """
    shape = image_shape_tuple(features, image_shape)
    _check_levels("glow", shape, levels, levels)
    if not isinstance(split_prior, bool):
        raise TypeError(f"split_prior must be True or False; got {split_prior!r}")
    embed, width = context_embedding(context_features, context_net, activation=activation,
                                     seed=seed, dtype=dtype)
    nets = _Nets(hidden_units=hidden_units, blocks=blocks, activation=activation,
                 context_width=width, seed=seed, dtype=dtype)
    tf_dtype = tf.as_dtype(dtype)

    def level(channels: int, index: int) -> tfb.Bijector:
        c = 4 * channels
        steps: list[tfb.Bijector] = [tfb.Invert(Squeeze(), name="squeeze")]
        for k in range(layers):
            n = len(nets.nets)
            steps += [ActNorm.new(c, dtype=tf_dtype, event_ndims=3, name=f"act_norm_{n}"),
                      invertible_1x1_conv(c, dtype=tf_dtype, seed=seed * 1000 + n,
                                          name=f"conv1x1_{n}"),
                      nets.coupling(c, "channel", k % 2, coupling_scale)]
        if index < levels:
            if split_prior:  # z_2 given z_1: the kept half is the first c // 2 channels
                prior = nets.coupling(c, "channel", 0, "sigmoid", name="split_prior_coupling")
                steps.append(tfb.Invert(prior, name=f"split_prior_{index}"))
            steps.append(ChannelSplit(level(c // 2, index + 1), c // 2, name=f"split_{index}"))
        steps.append(Squeeze(name="unsqueeze"))
        return _chain(steps, name=f"level_{index}")

    body = level(shape[2], 1)
    return _flow("glow", features, shape, body, nets, embed, context_features, dtype)
