"""Datasets: toy sets, energies and real benchmark data behind one ``load(name)``.

``load(name, data_dir=..., seed=..., **options)`` returns :class:`Splits`; ``names()`` lists
the datasets. Toy sets (:mod:`.toy`: ``moons``, ``checkerboard``, ``8gaussians``, ...,
exact densities and best log-likelihoods where known), energies (:mod:`.energy`: Rezende &
Mohamed's U1-U4, U8 as ``energy.get(name)``, and ``energy_u1`` ... ``energy_u8``: samples of a
Gaussian mixture fitted to each). Real data: ``power``, ``gas``, ``hepmass``, ``miniboone``
(:mod:`.uci`), ``bsds300`` (:mod:`.bsds300`), ``mnist`` (:mod:`.mnist`), ``celeba``
(:mod:`.celeba`). :mod:`.images` gives image sets as flow-ready rows (``mnist``,
``celeba64``, ``celeba32``, ``shapes``) with bits/dim. Image preprocessing (dequantisation,
logit, bits/dim) is in :mod:`.preprocess`; :func:`as_dataset` turns arrays or splits into
batched ``tf.data`` pipelines. Files, sources and checksums are listed in ``data/README.md``.
"""

from . import bsds300, celeba, download, energy, files, images, mnist, preprocess, shapes, toy, uci
from .files import (
    ChecksumError,
    DataError,
    DataFormatError,
    MissingDataError,
    PickleRefusedError,
    UnsafeArchiveError,
)
from .pipeline import as_dataset
from .registry import Splits, data_dir, load, names, register

__all__ = [
    "Splits", "data_dir", "load", "names", "register", "as_dataset",
    "toy", "energy", "uci", "bsds300", "mnist", "celeba", "images", "preprocess", "download",
    "files", "shapes",
    "DataError", "MissingDataError", "ChecksumError", "DataFormatError", "UnsafeArchiveError",
    "PickleRefusedError",
]
