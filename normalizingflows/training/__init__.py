"""Training: maximum likelihood (forward KL) on data, reverse KL on energies, resumable runs.

:func:`fit` wraps Keras ``fit`` with validation, early stopping and best weights, learning-rate
schedules, gradient clipping, weight decay, per-epoch checkpoints that a killed run resumes
from, and a guard that stops on a non-finite loss and names the failing step.
:func:`fit_reverse_kl` fits a flow to exp(-U) from its own samples and estimates log Z.
:func:`make_strategy` and ``fit(..., strategy=...)`` train on several devices or machines
(``tf.distribute``).

Example:
    >>> import normalizingflows as nf
    >>> flow = nf.flows.build("maf", 2, layers=1, hidden_units=8)
    >>> r = nf.training.fit(flow, nf.data.toy.moons(128), epochs=1, batch_size=64, verbose=0,
    ...                     jit_compile=False)
    >>> r.epochs_run
    1
"""

from . import distribute
from .batch_norm import BatchNormStatistics, batch_norm_layers, set_batch_norm_statistics
from .callbacks import NonFiniteGuard, first_nonfinite_step, leaf_bijectors
from .distribute import STRATEGIES, make_strategy
from .forward import SCHEDULES, FitResult, check_array, epoch_batches, fit, make_optimizer
from .reverse import ReverseKLResult, fit_reverse_kl, importance_estimates
from .state import (
    CheckpointError,
    ResumeConfigError,
    atomic_write_json,
    atomic_write_text,
    check_run_config,
    fingerprint,
)

__all__ = [
    "fit", "FitResult", "fit_reverse_kl", "ReverseKLResult", "importance_estimates",
    "NonFiniteGuard", "first_nonfinite_step", "leaf_bijectors", "CheckpointError",
    "ResumeConfigError", "atomic_write_json", "atomic_write_text", "check_run_config",
    "fingerprint", "check_array", "epoch_batches", "make_optimizer", "SCHEDULES",
    "distribute", "make_strategy", "STRATEGIES", "BatchNormStatistics", "batch_norm_layers",
    "set_batch_norm_statistics",
]
