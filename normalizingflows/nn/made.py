"""MADE: the masked autoencoder that conditions every autoregressive flow in the catalog.

Masks are applied inside the forward pass (a select of each kernel on its mask), never through
a Keras kernel constraint, so no update of any kind (a custom optimizer, ``assign_sub``, loaded
weights) can break the autoregressive property. Inputs, hidden units and outputs are sorted by
degree, so each mask is block-triangular; the units of each layer of 64 or more are split into
``blocks`` column groups whose kernels hold only the prefix of input rows the mask can reach, and
activations are kept feature-major (``[units, N]``) so that prefix is contiguous. The zero
blocks are neither stored nor multiplied: at D = 43 with 2 x 512 units, ``blocks=3`` stores 67%
of the dense kernels, and in an interleaved A/B against one dense kernel per layer (XLA, batch
256, this project's 2-core CPU) ran the MAF(5) train step 1.17x and ``log_prob`` 1.07x faster.

All of a MADE's weights (kernel blocks, biases, context kernel) are pieces of one packed
variable, cut by one ``tf.split`` in each call. A compiled call pays for every variable it
captures (about 2 us each here: 55 variables cost 100-110 us more per call than 5), so MAF(5)
captures 7 variables instead of 57; in two interleaved A/Bs (``benchmarks/made_layout.py``)
its XLA ``log_prob`` ran 2-7% faster and its train step level. Flow files before version 4
(one variable per piece) are read through :func:`legacy_layout`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from ._init import check_residual_widths, dropout_layer, seeded
from .precision import layer_dtype

__all__ = ["MADE", "input_degrees", "hidden_degrees", "ORDERS", "legacy_layout"]

#: Bytes of hidden-unit caches the incremental solve keeps per chunk of rows (see
#: :meth:`MADE.solve`): 4 MiB is 1,024 rows of 2 x 512 float32 units, the chunk size measured
#: fastest at D = 43 (8.7 us/row on 10,000 rows, against 20.5 unchunked and 16.4 with 4,096).
SOLVE_CACHE_BYTES = 4 * 2**20

#: Fewest units per column group of :class:`MADE` (``blocks``): narrower layers keep one dense
#: kernel, where splitting saves little and a small group of ReLUs can die together.
MIN_BLOCK_UNITS = 32

#: Build MADEs with one variable per piece (the layout before flow files of version 4), so
#: :func:`normalizingflows.load` can read an older file; see :func:`legacy_layout`.
_LEGACY_LAYOUT = False

ORDERS = ("left-to-right", "right-to-left", "random")


@contextlib.contextmanager
def legacy_layout() -> Iterator[None]:
    """MADEs built inside hold one variable per kernel block, bias and context kernel, as
    flow files before version 4 stored them: :func:`normalizingflows.load` builds such a flow
    to read an older file, then copies its weights into a flow of the packed layout."""
    global _LEGACY_LAYOUT
    before, _LEGACY_LAYOUT = _LEGACY_LAYOUT, True
    try:
        yield
    finally:
        _LEGACY_LAYOUT = before


@tf.custom_gradient
def _dense_gradient(t: tf.Tensor) -> tf.Tensor:
    """Identity whose gradient is a dense tensor (not ``tf.IndexedSlices``)."""
    return tf.identity(t), tf.convert_to_tensor


def input_degrees(features: int, order: str | Sequence[int] = "left-to-right", *, seed: int = 0
                  ) -> np.ndarray:
    """Degrees 1..D of the inputs: input ``i`` may depend on inputs of smaller degree only.

    Args:
        features: Number of inputs ``D``.
        order: ``"left-to-right"`` (degrees 1..D), ``"right-to-left"`` (D..1), ``"random"``
            (a seeded permutation) or an explicit permutation of ``1..D``.
        seed: Seed of the random order.

    Returns:
        ``int`` array of shape ``(D,)`` holding a permutation of ``1..D``.

    Raises:
        ValueError: If ``order`` is unknown or not a permutation of ``1..D``.

    Example:
        >>> input_degrees(3, "right-to-left").tolist()
        [3, 2, 1]
    """
    if isinstance(order, str):
        if order == "left-to-right":
            return np.arange(1, features + 1)
        if order == "right-to-left":
            return np.arange(features, 0, -1)
        if order == "random":
            return np.random.default_rng(seed).permutation(features) + 1
        raise ValueError(f"order must be one of {ORDERS} or a permutation of 1..{features}; "
                         f"got {order!r}")
    degrees = np.asarray(order, dtype=np.int64)
    if sorted(degrees.tolist()) != list(range(1, features + 1)):
        raise ValueError(f"order must be a permutation of 1..{features}; got {list(order)}")
    return degrees


def hidden_degrees(units: int, features: int, *, lowest: int = 1) -> np.ndarray:
    """Degrees of ``units`` hidden units, spread evenly over ``lowest..D-1`` and sorted.

    A hidden unit of degree ``k`` sees inputs of degree ``<= k``; one of degree 0 sees only the
    bias and the context. A conditional MADE uses ``lowest=0``, so that the first input's
    parameters depend on the context too. With ``D = 1`` every hidden unit has degree 0.

    Example:
        >>> hidden_degrees(4, 3).tolist()
        [1, 1, 2, 2]
        >>> hidden_degrees(6, 3, lowest=0).tolist()
        [0, 0, 1, 1, 2, 2]
    """
    if features == 1 or lowest >= features:
        return np.zeros(units, dtype=np.int64)
    return lowest + (np.arange(units) * (features - lowest)) // units


class MADE(tf_keras.layers.Layer):
    """Masked autoencoder for distribution estimation with an optional context input.

    Output ``params[..., i, :]`` depends only on inputs of smaller degree than input ``i``
    (and on the context): ``d out_i / d x_j = 0`` unless ``degree(j) < degree(i)``.

    Args:
        features: Number of inputs ``D``.
        params: Number of outputs per input (2 for shift and log-scale).
        hidden_units: Widths of the hidden layers.
        activation: Hidden activation (any ``tf_keras.activations`` name).
        order: Input order, see :func:`input_degrees`.
        context_features: Size of the context vector fed to every hidden layer, or ``None``.
        output_initializer: Initialiser of the output kernel (``"zeros"`` makes the flow start
            at the identity; mixtures need a random one to break symmetry).
        output_bias_initializer: Initialiser of the output bias (layout: unit ``i * params + p``
            is parameter ``p`` of input ``i``).
        seed: Seed of the initialisers, of a random order and of the dropout.
        residual: ResMADE (Nash & Durkan 2019, the NSF paper's autoregressive conditioner): a
            masked linear map to the common width of ``hidden_units``, then one pre-activation
            residual block per entry, ``h <- h + W2 act(W1 act(h))`` with masked ``W1``, ``W2``
            (every hidden layer has the same degrees, so the sum keeps the autoregressive
            property), and the output layer on ``act(h)``.
        dropout: Dropout rate on the hidden activations when called with ``training=True``
            (in a residual block, between ``act`` and ``W2``, as in the NSF paper). The
            incremental :meth:`solve` (the sequential direction) never drops units.
        blocks: Column groups per layer. The units of each layer are split into this many
            groups by degree, and each group's kernel holds only the prefix of input rows its
            mask can reach, so the zero blocks of the block-triangular masks are neither stored
            nor multiplied (``blocks=3`` skips about a third of the multiply-adds). ``1`` is
            one dense kernel per layer, as is any layer with fewer than ``2 * MIN_BLOCK_UNITS``
            units. The map, and the initial values drawn from ``seed``, do not depend on it.
        **kwargs: Passed to ``tf_keras.layers.Layer`` (``name``, ``dtype``). A mixed Keras
            policy (``dtype="mixed_bfloat16"``, see :mod:`normalizingflows.nn.precision`)
            keeps the variables in float32 and runs the matmuls in bfloat16; the parameters
            come out in float32 either way.

    Example:
        >>> made = MADE(3, params=2, hidden_units=(8,))
        >>> made(tf.zeros([5, 3])).shape
        TensorShape([5, 3, 2])

    References:
        MADE: Masked Autoencoder for Distribution Estimation, Germain et al. 2015,
        https://arxiv.org/abs/1502.03509
    """

    def __init__(self, features: int, *, params: int = 2, hidden_units: Sequence[int] = (64, 64),
                 activation: str = "relu", order: str | Sequence[int] = "left-to-right",
                 context_features: int | None = None, output_initializer: Any = "zeros",
                 output_bias_initializer: Any = "zeros", seed: int = 0, blocks: int = 3,
                 residual: bool = False, dropout: float = 0.0, **kwargs) -> None:
        kwargs["dtype"] = layer_dtype(kwargs.get("dtype"))
        super().__init__(**kwargs)
        self.features = int(features)
        self.params = int(params)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = tf_keras.activations.get(activation)
        self.context_features = context_features
        self.residual = bool(residual)
        check_residual_widths(self.residual, self.hidden_units)
        self.dropout = float(dropout)
        self._dropout = dropout_layer(self.dropout, seed, self.dtype_policy)
        #: Widths of the masked hidden layers: a residual MADE has an input map and two layers
        #: per block, all of one width.
        self._units = ((self.hidden_units[0],) * (1 + 2 * len(self.hidden_units))
                       if self.residual else self.hidden_units)
        self.degrees = input_degrees(self.features, order, seed=seed)
        lowest = 0 if context_features else 1
        degrees = [self.degrees] + [hidden_degrees(u, self.features, lowest=lowest)
                                    for u in self._units]
        self._hidden_degrees = degrees[1:]
        #: Rows the incremental solve takes at once; larger batches are solved in equal chunks
        #: of at most this many rows, one after the other (see :meth:`solve`).
        self.solve_rows = max(256, SOLVE_CACHE_BYTES // (
            tf.as_dtype(self.compute_dtype).size * max(1, sum(self._units))))
        out_degrees = np.repeat(self.degrees, self.params)
        masks = [d_out[None, :] >= d_in[:, None]
                 for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)]
        masks.append(out_degrees[None, :] > degrees[-1][:, None])
        self._masks = [m.astype(np.float32) for m in masks]
        self.blocks = int(blocks)
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1; got {blocks}")
        # Inputs and outputs sorted by degree (hidden units already are): every mask is then
        # block-triangular, and each column group reaches only a prefix of its input rows.
        self._in_order = np.argsort(self.degrees, kind="stable")
        self._out_order = np.argsort(out_degrees, kind="stable")
        self._out_inverse = np.argsort(self._out_order)
        # Every kernel block, bias and the context kernel, in this order, are pieces of one
        # packed variable (see the module docstring): ``_blocks`` holds each block's piece index.
        pieces: list[tuple[str, tf.Tensor]] = []
        self._blocks: list[list[tuple[int, np.ndarray | None, int, np.ndarray]]] = []
        self._bias_pieces: list[int] = []
        for i, mask in enumerate(self._masks):
            last = i == len(self._masks) - 1
            init = seeded(output_initializer if last else "glorot_uniform", seed * 7919 + i)
            rows = self._in_order if i == 0 else np.arange(mask.shape[0])
            cols = self._out_order if last else np.arange(mask.shape[1])
            sorted_mask = mask[rows][:, cols] > 0
            full = None  # the dense initial kernel, drawn once so blocks get its values
            layer_blocks = []
            groups = max(1, min(self.blocks, mask.shape[1] // MIN_BLOCK_UNITS))
            for g, group in enumerate(np.array_split(np.arange(mask.shape[1]), groups)):
                reach = sorted_mask[:, group].any(axis=1).nonzero()[0]
                if not reach.size:
                    continue  # a fully masked block would be a dead parameter: leave it out
                prefix = int(reach[-1]) + 1
                if full is None:
                    full = tf.gather(tf.gather(init(mask.shape, dtype=self.dtype), rows),
                                     cols, axis=1)
                # Stored [units, inputs]: the feature-major matmul is then ``K @ h``, which
                # XLA's CPU dot runs about 1.3-1.8x faster than ``K^T @ h`` (see call).
                pieces.append((f"kernel_{i}_{g}",
                               tf.transpose(full[:prefix, group[0]:group[-1] + 1])))
                block_mask = sorted_mask[:prefix, group].T
                layer_blocks.append((len(pieces) - 1, None if block_mask.all() else block_mask,
                                     prefix, group))
            self._blocks.append(layer_blocks)
            bias_init = tf_keras.initializers.get(output_bias_initializer if last else "zeros")
            pieces.append((f"bias_{i}", tf.convert_to_tensor(
                bias_init(mask.shape[1:], dtype=self.dtype), self.dtype)))
            self._bias_pieces.append(len(pieces) - 1)
        self._context_piece = None
        if context_features:
            pieces.append(("context_kernel", tf_keras.initializers.GlorotUniform(
                seed=seed * 7919 + 997)((int(context_features), degrees[1].size
                                          if self._units else out_degrees.size),
                                         dtype=self.dtype)))
            self._context_piece = len(pieces) - 1
        self._piece_shapes = [tuple(int(n) for n in value.shape) for _, value in pieces]
        self._legacy_variables = None
        if _LEGACY_LAYOUT:  # one variable per piece, as MADE stored them before (loading)
            self._legacy_variables = [
                self.add_weight(name, shape=value.shape,
                                initializer=lambda shape, dtype=None, v=value: v)
                for name, value in pieces]
        else:
            packed = tf.concat([tf.reshape(value, [-1]) for _, value in pieces], axis=0)
            self.packed = self.add_weight("packed", shape=packed.shape,
                                          initializer=lambda shape, dtype=None: packed)
        self.built = True

    def _pieces(self, dtype: Any = None) -> list[tf.Tensor]:
        """The kernel blocks, biases and context kernel as tensors in ``dtype`` (default: the
        compute dtype), cut from the packed variable by one ``tf.split``, whose gradient is
        one concat."""
        dtype = dtype or self.compute_dtype
        if self._legacy_variables is not None:
            return [tf.cast(v, dtype) for v in self._legacy_variables]
        flat = tf.cast(self.packed, dtype)
        sizes = [int(np.prod(shape)) for shape in self._piece_shapes]
        return [tf.reshape(piece, shape) for piece, shape in
                zip(tf.split(flat, sizes), self._piece_shapes, strict=True)]

    @property
    def kernel_blocks(self) -> list[list[tuple[tf.Tensor, np.ndarray | None, int, np.ndarray]]]:
        """Each layer's stored kernel blocks as ``(kernel [units, prefix], mask or None, prefix,
        units)``: the kernels unmasked, in the variable dtype."""
        pieces = self._pieces(self.dtype)
        return [[(pieces[p], mask, prefix, group) for p, mask, prefix, group in blocks]
                for blocks in self._blocks]

    def kernels(self) -> list[tf.Tensor]:
        """The stored kernel blocks, then the context kernel (if any), unmasked, in the variable
        dtype: what a weight penalty on the kernels sums over (called inside the loss, their
        gradient reaches :attr:`packed`)."""
        pieces = self._pieces(self.dtype)
        kernels = [pieces[p] for blocks in self._blocks for p, *_ in blocks]
        if self._context_piece is not None:
            kernels.append(pieces[self._context_piece])
        return kernels

    @property
    def biases(self) -> list[tf.Tensor]:
        """Each layer's bias (the output layer's in the original order), in the variable dtype."""
        pieces = self._pieces(self.dtype)
        return [pieces[p] for p in self._bias_pieces]

    @property
    def context_kernel(self) -> tf.Tensor | None:
        """The ``[context_features, units]`` kernel of the context, or ``None``."""
        if self._context_piece is None:
            return None
        return self._pieces(self.dtype)[self._context_piece]

    def masks(self) -> list[np.ndarray]:
        """The 0/1 masks of each layer, input to output (``float32`` arrays)."""
        return list(self._masks)

    def _hidden(self, j: int, pre: tf.Tensor, stream: tf.Tensor | None
                ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Hidden layer ``j``'s output for the next layer, from its pre-activation ``pre``, and
        the residual stream after it (``None`` for a plain MADE)."""
        if not self.residual:
            return self.activation(pre), None
        if j == 0:  # the input map starts the stream
            return self.activation(pre), pre
        if j % 2:  # the first layer of a block
            return self.activation(pre), stream
        stream = stream + pre
        return self.activation(stream), stream

    def call(self, inputs: tf.Tensor, context: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        """Map ``inputs [..., D]`` (and ``context [..., C]``) to ``params [..., D, params]``;
        ``training=True`` applies the dropout."""
        cd = self.compute_dtype
        x = tf.cast(tf.convert_to_tensor(inputs), cd)
        batch_shape = tf.shape(x)[:-1]
        if context is not None and self._context_piece is None:
            raise ValueError("context was given but this MADE has context_features=None")
        pieces = self._pieces()  # one read of the packed variable
        # Feature-major [units, N]: the prefix of input rows a block reaches is contiguous,
        # and with kernels stored [units, inputs] every matmul is the plain ``K @ h`` (the
        # ``K^T @ h`` of [inputs, units] kernels ran MAF(5)'s log_prob about 25% slower).
        h = tf.transpose(tf.reshape(x, [-1, self.features]))
        if not np.array_equal(self._in_order, np.arange(self.features)):
            h = tf.gather(h, self._in_order)
        ones = tf.ones_like(h[:1])
        n = len(self._masks)
        side = None  # the context's term of the first layer, [units, N]
        if context is not None:
            kernel = pieces[self._context_piece]
            context = tf.reshape(tf.cast(context, cd), [-1, kernel.shape[0]])
            side = tf.matmul(kernel, context,
                             transpose_a=True, transpose_b=True)
        stream = None
        for i, b in enumerate(self._bias_pieces):
            bias = pieces[b]
            units = self._masks[i].shape[1]
            last = i == n - 1
            sort = last and not np.array_equal(self._out_order, np.arange(units))
            if sort:  # in sorted order; a dense gradient, as through the gather of ``pre``
                bias = tf.gather(_dense_gradient(bias), self._out_order)
                if side is not None and i == 0:
                    side = tf.gather(side, self._out_order)
            # Bias, context and (in a plain MADE) the activation go on each group's product
            # before the concat, where XLA fuses them into the pass that writes the group.
            # Applied to the concatenated [units, N] they were passes of their own, and every
            # slice ``h[:prefix]`` of the next layer recomputed the activation. In an
            # interleaved A/B (XLA, batch 256, this project's 2-core CPU) MAF(5)'s log_prob
            # ran 7-17% faster and its train step 4-9%.
            parts, done = [], 0
            for kernel, prefix, size in self._column_groups(i, pieces):
                part = bias[done:done + size, None]
                part = (tf.matmul(kernel, h[:prefix]) + part if kernel is not None
                        else part * ones)  # units no input reaches: the bias alone
                if i == 0 and side is not None:
                    part = part + side[done:done + size]
                if not (last or self.residual):
                    part = self.activation(part)
                parts.append(part)
                done += size
            pre = parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)
            if sort:
                pre = tf.gather(pre, self._out_inverse)
            if last:
                h = pre
                break
            h, stream = self._hidden(i, pre, stream) if self.residual else (pre, None)
            if self._dropout is not None and (not self.residual or i % 2):
                h = self._dropout(h, training=training)  # Keras: a bool, a tensor or None
        shape = tf.concat([batch_shape, [self.features, self.params]], axis=0)
        # Parameters in the variable dtype: float32 under a mixed policy, for the transformer.
        return tf.reshape(tf.transpose(tf.cast(h, self.dtype)), shape)

    def _column_groups(self, i: int, pieces: list[tf.Tensor]
                       ) -> list[tuple[tf.Tensor | None, int, int]]:
        """Layer ``i``'s units in sorted order as ``(masked kernel, input prefix, units)``
        groups, kernels ``[units, prefix]`` from ``pieces`` (of :meth:`_pieces`, in their
        dtype); ``(None, 0, units)`` for a run of units no input reaches."""
        groups, done = [], 0
        for p, mask, prefix, group in self._blocks[i]:
            if group[0] > done:
                groups.append((None, 0, int(group[0]) - done))
            kernel = pieces[p]
            dtype = kernel.dtype
            if mask is not None:
                # a select on a boolean mask: a quarter of the bytes of a float mask to read
                # each call, and MAF(5)'s log_prob about 5% faster than ``kernel * mask``
                kernel = tf.where(tf.constant(mask), kernel, tf.zeros([], dtype))
            groups.append((kernel, prefix, len(group)))
            done = int(group[-1]) + 1
        if done < self._masks[i].shape[1]:
            groups.append((None, 0, self._masks[i].shape[1] - done))
        return groups

    def dense_kernels(self) -> list[tf.Tensor | None]:
        """The masked kernels as dense ``[inputs, units]`` tensors in the original order, in the
        variable dtype.

        ``None`` for a layer the masks leave empty (only the bias and the context reach it).
        """
        return [None if k is None else tf.transpose(k)
                for k in self._dense_kernels_t(self._pieces(self.dtype))]

    def _dense_kernels_t(self, pieces: list[tf.Tensor]) -> list[tf.Tensor | None]:
        """The masked kernels as dense ``[units, inputs]`` tensors in the original order, from
        ``pieces`` (of :meth:`_pieces`, in their dtype)."""
        out = []
        dtype = pieces[0].dtype
        for i, blocks in enumerate(self._blocks):
            if not blocks:
                out.append(None)
                continue
            rows, units = self._masks[i].shape
            dense = tf.concat([tf.pad(kernel, [[0, 0], [0, rows - prefix]]) if kernel is not None
                               else tf.zeros([size, rows], dtype)
                               for kernel, prefix, size in self._column_groups(i, pieces)],
                              axis=0)
            if i == 0 and not np.array_equal(self._in_order, np.arange(rows)):
                dense = tf.gather(dense, np.argsort(self._in_order), axis=1)
            if (i == len(self._blocks) - 1
                    and not np.array_equal(self._out_order, np.arange(units))):
                dense = tf.gather(dense, self._out_inverse)
            out.append(dense)
        return out

    def _masked_layers(self, pieces: list[tf.Tensor]) -> list[tuple[tf.Tensor | None, tf.Tensor]]:
        # The solve reads these by gathers, whose gradients are IndexedSlices: made dense
        # here, so the split's gradient (a concat) and the optimisers get dense tensors, as
        # from a network pass.
        return [(None if kernel is None else _dense_gradient(kernel),
                 _dense_gradient(pieces[b]))
                for kernel, b in zip(self._dense_kernels_t(pieces), self._bias_pieces,
                                     strict=True)]

    def solve(self, step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], z: tf.Tensor,
              context: tf.Tensor | None = None, *, return_params: bool = False
              ) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """Solve ``x_i = step(params_i(x), z_i)`` for every ``i`` in degree order, incrementally.

        This is the sequential direction of an autoregressive flow (MAF sampling, IAF density):
        input ``i`` needs the parameters that MADE computes from the inputs of smaller degree.
        Instead of ``D`` full network passes, step ``k`` (``k = 1..D``) computes only the hidden
        units of degree ``k - 1`` in every layer (one equal-size block; hidden units are sorted
        by degree), the parameters of the input of degree ``k``, and that input; the blocks are
        written in place into feature-major caches inside one ``tf.while_loop``. All ``D`` steps
        together do the multiply-adds of about one network pass. Each step reads the whole
        caches for a few rows of output, so the loop is bound by memory: batches larger than
        ``solve_rows`` are solved in equal chunks one after the other (``tf.map_fn``), whose
        caches stay in the processor's cache.
        Units a block window covers beyond its degree get provisional values that the masks
        keep from being read, and are rewritten at their own step, so the result equals ``D``
        full passes (to float rounding).

        Args:
            step: ``fn(params [N, 1, params], z_i [N, 1]) -> x_i [N, 1]``, the elementwise
                transformer applied with the parameters of one input.
            z: ``[..., D]`` values the transformer is applied to.
            context: ``[..., C]`` context (same batch shape as ``z``) or ``None``.
            return_params: Also return the parameters the steps used, ``[..., D, params]``
                (equal to ``self(x, context)`` to float rounding): the log-det of the solved
                direction without another network pass.

        Returns:
            ``x`` with the shape of ``z``, and the parameters if ``return_params``.
        """
        z = tf.convert_to_tensor(z, dtype=self.dtype)
        shape = tf.shape(z)
        z_t = tf.transpose(tf.reshape(z, [-1, self.features]))  # [D, N]
        context_pre = None
        pieces = self._pieces()
        if context is not None:
            if self._context_piece is None:
                raise ValueError("context was given but this MADE has context_features=None")
            kernel = pieces[self._context_piece]
            context = tf.reshape(tf.cast(context, self.compute_dtype), [-1, kernel.shape[0]])
            context_pre = tf.transpose(tf.matmul(context, kernel))  # [H0 or DP, N]
        layers = self._masked_layers(pieces)
        rows = tf.compat.dimension_value(z_t.shape[1])
        if rows is not None and rows <= self.solve_rows:
            x_t, params_t = self._solve_rows(step, layers, z_t, context_pre)
        else:
            x_t, params_t = self._solve_chunked(step, layers, z_t, context_pre)
        x = tf.reshape(tf.transpose(x_t), shape)
        if not return_params:
            return x
        params = tf.transpose(params_t, [2, 0, 1])  # [D, P, N] -> [N, D, P]
        return x, tf.reshape(params, tf.concat([shape, [self.params]], axis=0))

    def _solve_chunked(self, step, layers, z_t, context_pre):
        """Solve ``C`` equal chunks of at most ``solve_rows`` columns one after the other.

        Each step of the loop reads the caches of the whole batch for a few rows of output, so
        it is bound by memory: chunks whose caches stay in the processor's cache run about
        2x faster per row (see ``SOLVE_CACHE_BYTES``).
        """
        n = tf.shape(z_t)[1]
        chunks = tf.maximum((n + self.solve_rows - 1) // self.solve_rows, 1)
        size = (n + chunks - 1) // chunks
        pad = chunks * size - n

        def split(t):  # [R, N] -> [C, R, size], zero rows padded at the end
            t = tf.pad(t, [[0, 0], [0, pad]])
            return tf.transpose(tf.reshape(t, [t.shape[0], chunks, size]), [1, 0, 2])

        parts = (split(z_t),) if context_pre is None else (split(z_t), split(context_pre))
        x, params = tf.map_fn(lambda p: self._solve_rows(step, layers, *p), parts,
                              fn_output_signature=(z_t.dtype, z_t.dtype),
                              parallel_iterations=1)
        x = tf.reshape(tf.transpose(x, [1, 0, 2]), [self.features, chunks * size])
        params = tf.reshape(tf.transpose(params, [1, 2, 0, 3]),
                            [self.features, self.params, chunks * size])
        return x[:, :n], params[:, :, :n]

    def _solve_rows(self, step, layers, z_t, context_pre=None):
        """The incremental solve of ``z_t [D, N]`` (feature-major) in one ``tf.while_loop``;
        returns ``x_t [D, N]`` and the parameters ``[D, params, N]`` its steps used."""
        d = self.features
        n = tf.shape(z_t)[1]
        order = np.argsort(self.degrees, kind="stable").astype(np.int32)  # input of degree k+1
        # Window of each hidden layer at step k: the units of degree k, padded to a fixed size.
        windows = []
        for degrees in self._hidden_degrees:
            lo = np.searchsorted(degrees, np.arange(d), side="left")
            hi = np.searchsorted(degrees, np.arange(d), side="right")
            size = max(int((hi - lo).max()), 1)
            windows.append((tf.constant(np.minimum(lo, degrees.size - size), tf.int32), size))
        out_kernel, out_bias = layers[-1]
        if out_kernel is not None:
            out_kernel = tf.reshape(out_kernel, [d, self.params, out_kernel.shape[1]])
        out_bias = tf.reshape(out_bias, [d, self.params])
        if context_pre is not None and not self._units:
            context_pre = tf.reshape(context_pre, [d, self.params, n])
        order_t = tf.constant(order)

        cd = self.compute_dtype

        def body(k, x_t, params_t, *hidden):
            # Shapes come from tensors in the loop, not from a captured tf.shape: XLA needs them
            # static in the gradient loop too.
            ones = tf.ones_like(x_t[:1], dtype=cd)
            hidden = list(hidden)
            below = tf.cast(x_t, cd)
            stream = None  # a residual MADE's stream on this step's window
            for j, ((kernel, bias), (starts, size)) in enumerate(
                    zip(layers[:-1], windows, strict=True)):
                # gather, not a dynamic tf.slice: XLA cannot differentiate the latter.
                rows = (starts[k] + tf.range(size))[:, None]
                pre = tf.gather_nd(bias, rows)[:, None]
                if kernel is not None:
                    pre = pre + tf.matmul(tf.gather(kernel, rows[:, 0]), below)
                if j == 0 and context_pre is not None:
                    pre = pre + tf.gather_nd(context_pre, rows)
                pre = pre * ones  # [size, N]: the bias alone when the kernel is fully masked
                # Every layer of a residual MADE has the same degrees, so the window is the
                # same in each and the stream of its units is complete at this step.
                out, stream = self._hidden(j, pre, stream)
                hidden[j] = tf.tensor_scatter_nd_update(hidden[j], rows, out)
                below = hidden[j]
            i = order_t[k]
            params = tf.reshape(tf.gather(out_bias, i), [self.params, 1])
            if out_kernel is not None:
                params = params + tf.matmul(tf.gather(out_kernel, i), below)
            if context_pre is not None and not self._units:
                params = params + tf.gather(context_pre, i)
            params = tf.cast(params * ones, self.dtype)  # the transformer's dtype (float32)
            x_i = step(tf.transpose(params)[:, None, :], tf.gather(z_t, i)[:, None])
            x_t = tf.tensor_scatter_nd_update(x_t, [[i]], tf.transpose(x_i))
            params_t = tf.tensor_scatter_nd_update(params_t, [[i]], params[None])
            return (k + 1, x_t, params_t, *hidden)

        hidden0 = [tf.zeros([u, n], cd) for u in self._units]
        params0 = tf.zeros([d, self.params, n], self.dtype)
        loop = tf.while_loop(lambda k, *_: k < d, body, (tf.constant(0), tf.zeros_like(z_t),
                                                          params0, *hidden0),
                             maximum_iterations=d)
        return loop[1], loop[2]
