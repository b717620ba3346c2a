"""UCI tabular benchmarks POWER, GAS, HEPMASS and MINIBOONE with the MAF preprocessing.

The recipes follow Papamakarios et al. (2017), "Masked Autoregressive Flow for Density
Estimation", appendix D (https://arxiv.org/abs/1705.07057), and the published data-preparation
behaviour of its archive (Zenodo record 1161203). The split rule is shared by all four:

    n_test = int(0.1 * N)                 test       = last n_test rows
    n_val  = int(0.1 * (N - n_test))      validation = last n_val rows of the rest
    train  = the remaining rows

which gives the published sizes (train / validation / test):

    POWER      6 dims  1,659,917 / 184,435 / 204,928   (N = 2,049,280)
    GAS        8 dims    852,174 /  94,685 / 105,206   (N = 1,052,065)
    HEPMASS   21 dims    315,123 /  35,013 / 174,987   (test from 1000_test.csv)
    MINIBOONE 43 dims     29,556 /   3,284 /   3,648   (N = 36,488)

Two folder layouts are read (``layout="auto"`` picks the first present):

* ``"maf"``: the files of the MAF archive, preprocessed here:
  ``power/data.npy``, ``gas/ethylene_CO.pickle``, ``hepmass/1000_train.csv`` +
  ``hepmass/1000_test.csv``, ``miniboone/data.npy``.
* ``"split"``: already preprocessed ``<name>/{train,val,test}.npy`` (the layout of NSF/AEM-style
  repositories); loaded as stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .download import MAF_MEMBERS, fetch_maf
from .files import (
    DataFormatError,
    MissingDataError,
    load_guarded_pickle,
    load_npy,
    require_files,
)
from .registry import Splits, register

__all__ = [
    "PUBLISHED",
    "maf_split_sizes",
    "split_tail",
    "preprocess_power",
    "preprocess_gas",
    "preprocess_hepmass",
    "preprocess_miniboone",
    "read_hepmass_csv",
    "load_uci",
]

#: Published (features, train, validation, test) of each dataset (MAF paper, table 4).
PUBLISHED: dict[str, tuple[int, int, int, int]] = {
    "power": (6, 1_659_917, 184_435, 204_928),
    "gas": (8, 852_174, 94_685, 105_206),
    "hepmass": (21, 315_123, 35_013, 174_987),
    "miniboone": (43, 29_556, 3_284, 3_648),
}

#: Known checksum of the GAS pickle: none is published, so it is read only after a verified
#: archive extraction (manifest) or with ``trust_pickle=True``.
GAS_PICKLE_CHECKSUM: str | None = None

_HINT = ("Get them with load(..., download=True) (MAF archive, Zenodo record 1161203, "
         "data.tar.gz) or see data/README.md.")


def maf_split_sizes(n: int) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` of the MAF split rule for ``n`` rows.

    Example:
        >>> maf_split_sizes(36488)
        (29556, 3284, 3648)
    """
    n_test = int(0.1 * n)
    n_val = int(0.1 * (n - n_test))
    return n - n_test - n_val, n_val, n_test


def split_tail(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows by the MAF rule: test = last 10%, validation = last 10% of the rest."""
    n_train, n_val, _ = maf_split_sizes(len(x))
    return x[:n_train], x[n_train:n_train + n_val], x[n_train + n_val:]


def _standardise(train: np.ndarray, *others: np.ndarray, stats_from: np.ndarray,
                 ddof: int) -> tuple[list[np.ndarray], dict]:
    mu = stats_from.mean(axis=0)
    s = stats_from.std(axis=0, ddof=ddof)
    if np.any(s == 0):
        raise DataFormatError(f"columns {np.flatnonzero(s == 0).tolist()} are constant; "
                              "cannot standardise (wrong file?)")
    out = [(a - mu) / s for a in (train, *others)]
    return out, {"mean": mu.tolist(), "std": s.tolist(), "ddof": ddof}


def preprocess_power(raw: np.ndarray, *, rng: Any = None) -> tuple[list[np.ndarray], dict]:
    """MAF POWER preprocessing of the archive's ``power/data.npy`` (N x 8).

    Columns of ``data.npy``: global active power, global reactive power, voltage, global
    intensity, sub-metering 1-3, time of day in minutes (date already discarded). Steps:
    shuffle the rows; drop global reactive power (many exact zeros) and global intensity;
    add uniform noise to break ties: U[0, 0.01) to voltage, U[0, 0.001) to global active power,
    U[0, 1) to each sub-metering, none to time; split; standardise with the mean and std
    (ddof=0) of train+validation.

    Args:
        raw: ``(N, 8)`` array.
        rng: Source of the shuffle and the noise (drawn in the published order: shuffle,
            voltage, active power, sub-metering). ``None`` uses ``np.random.RandomState(42)``,
            which reproduces the published arrays row for row.

    Returns:
        ``([train, val, test], info)``; each split has 6 columns: active power, voltage,
        sub-metering 1-3, time.
    """
    if raw.ndim != 2 or raw.shape[1] != 8:
        raise DataFormatError(f"POWER data.npy has shape {raw.shape}; expected (N, 8): "
                              "global active/reactive power, voltage, intensity, sub-metering "
                              "1-3, time")
    rng = np.random.RandomState(42) if rng is None else rng
    x = np.array(raw, dtype=np.float64)
    rng.shuffle(x)
    x = np.delete(x, [1, 3], axis=1)
    n = len(x)
    voltage_noise = 0.01 * rng.random((n, 1))
    power_noise = 0.001 * rng.random((n, 1))
    metering_noise = rng.random((n, 3))
    x[:, 0:1] += power_noise
    x[:, 1:2] += voltage_noise
    x[:, 2:5] += metering_noise
    tr, va, te = split_tail(x)
    splits, stats = _standardise(tr, va, te, stats_from=np.concatenate([tr, va]), ddof=0)
    info = {"columns": ["global_active_power", "voltage", "sub_metering_1", "sub_metering_2",
                        "sub_metering_3", "time_minutes"],
            "standardisation": dict(stats, source="train+validation"),
            "preprocessing": [
                "shuffle rows (np.random.RandomState(42) unless exact=False)",
                "drop global_reactive_power (column 1) and global_intensity (column 3)",
                "add noise U[0,0.001) active power, U[0,0.01) voltage, U[0,1) sub-meterings",
                "split: test = last 10%, validation = last 10% of the rest",
                "standardise with train+validation mean/std (ddof=0)"]}
    return splits, info


def preprocess_gas(values: np.ndarray, columns: list[str]) -> tuple[list[np.ndarray], dict]:
    """MAF GAS preprocessing of the ethylene/CO table.

    Steps: drop the ``Meth``, ``Eth`` (concentrations) and ``Time`` columns; repeatedly drop
    the first column whose Pearson correlation exceeds 0.98 with some other column, until no
    such pair is left; standardise with the mean and std (ddof=1) of all rows; split.

    Args:
        values: ``(N, C)`` numeric table.
        columns: The ``C`` column names.

    Returns:
        ``([train, val, test], info)``; 8 sensor columns for the real file.
    """
    columns = [str(c) for c in columns]
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise DataFormatError(f"GAS table has shape {values.shape} but {len(columns)} names")
    missing = [c for c in ("Meth", "Eth", "Time") if c not in columns]
    if missing:
        raise DataFormatError(f"GAS table lacks columns {missing}; got {columns}")
    keep = [i for i, c in enumerate(columns) if c not in ("Meth", "Eth", "Time")]
    x = np.asarray(values, dtype=np.float64)[:, keep]
    names = [columns[i] for i in keep]
    dropped = []
    while True:
        over = (np.corrcoef(x, rowvar=False) > 0.98).sum(axis=1)
        bad = np.flatnonzero(over > 1)
        if len(bad) == 0:
            break
        dropped.append(names.pop(bad[0]))
        x = np.delete(x, bad[0], axis=1)
    (x,), stats = _standardise(x, stats_from=x, ddof=1)
    info = {"columns": names, "dropped_correlated": dropped,
            "standardisation": dict(stats, source="all rows"),
            "preprocessing": [
                "drop Meth, Eth, Time",
                "drop, one at a time, the first column correlated > 0.98 with another",
                "standardise with the mean/std (ddof=1) of all rows",
                "split: test = last 10%, validation = last 10% of the rest"]}
    return list(split_tail(x)), info


def read_hepmass_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a HEPMASS CSV (one header line, label in column 0) as a float64 array."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"HEPMASS file not found: {path}")
    try:
        return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"{path} is not a numeric CSV with a constant column count "
                              f"({e}); replace it with the archive's copy") from e


def preprocess_hepmass(train_raw: np.ndarray, test_raw: np.ndarray, *,
                       label: int = 1) -> tuple[list[np.ndarray], dict]:
    """MAF HEPMASS preprocessing of ``1000_train.csv`` and ``1000_test.csv``.

    Steps: keep the rows of class ``label`` (the paper uses the positive, signal class 1) and
    drop the label column; the test file has one trailing column more than the training file,
    which is dropped; standardise both with the training mean and std (ddof=1); drop every
    feature whose smallest training value occurs more than 5 times (features with too many
    repeated values, which cause density spikes: 6 of the 27 in the real file, leaving 21);
    validation = last 10% of the training rows.

    Args:
        train_raw: Training table, label first.
        test_raw: Test table, label first.
        label: Class to keep (1 = signal, as published).

    Returns:
        ``([train, val, test], info)``.
    """
    tr = train_raw[train_raw[:, 0] == label, 1:]
    te = test_raw[test_raw[:, 0] == label, 1:]
    if len(tr) == 0:
        raise DataFormatError(f"no training rows with label {label}")
    note = "test file has as many columns as train; nothing dropped"
    if te.shape[1] == tr.shape[1] + 1:
        te = te[:, :-1]
        note = "dropped the test file's extra trailing column"
    elif te.shape[1] != tr.shape[1]:
        raise DataFormatError(f"HEPMASS test has {te.shape[1] + 1} columns, train "
                              f"{tr.shape[1] + 1}; expected equal or one more in test")
    repeats = np.array([(col == col.min()).sum() for col in tr.T])
    removed = np.flatnonzero(repeats > 5)
    keep = np.flatnonzero(repeats <= 5)
    tr, te = tr[:, keep], te[:, keep]
    (tr, te), stats = _standardise(tr, te, stats_from=tr, ddof=1)
    n_val = int(0.1 * len(tr))
    info = {"label_kept": label, "removed_features": removed.tolist(),
            "kept_features": keep.tolist(), "test_columns": note,
            "standardisation": dict(stats, source="train (before the validation split)"),
            "preprocessing": [
                f"keep rows with label {label}, drop label column", note,
                "standardise with train mean/std (ddof=1)",
                "drop features whose minimum value occurs > 5 times in train",
                "validation = last 10% of train; test = the test file"]}
    return [tr[:len(tr) - n_val], tr[len(tr) - n_val:], te], info


def preprocess_miniboone(raw: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """MAF MINIBOONE preprocessing of the archive's ``miniboone/data.npy`` (36,488 x 43).

    The archive file already holds the signal events with the outliers removed (rows with
    value -1000 in many features) and the 7 features with many repeated values dropped, so all
    43 columns are kept. Steps: split; standardise with the mean and std (ddof=0) of
    train+validation.
    """
    if raw.ndim != 2 or raw.shape[1] != 43:
        raise DataFormatError(f"MINIBOONE data.npy has shape {raw.shape}; expected (N, 43)")
    tr, va, te = split_tail(np.asarray(raw, dtype=np.float64))
    splits, stats = _standardise(tr, va, te, stats_from=np.concatenate([tr, va]), ddof=0)
    info = {"standardisation": dict(stats, source="train+validation"),
            "preprocessing": ["rows as in the archive (outliers already removed)",
                              "split: test = last 10%, validation = last 10% of the rest",
                              "standardise with train+validation mean/std (ddof=0)"]}
    return splits, info


_SPLIT_FILES = ("train.npy", "val.npy", "test.npy")


def _load_split_layout(name: str, root: Path, features: int, allow_missing_splits: bool):
    folder = root / name
    present = [f for f in _SPLIT_FILES if (folder / f).is_file()]
    missing = [f for f in _SPLIT_FILES if f not in present]
    if missing and not allow_missing_splits:
        lines = "\n".join(f"  {folder / f}" for f in missing)
        raise MissingDataError(
            f"{name}: pre-split layout in {folder} lacks:\n{lines}\nPlace them, use the MAF "
            f"archive files ({', '.join(MAF_MEMBERS[name])}; download=True fetches them), or "
            "pass allow_missing_splits=True to load the splits that exist (missing ones come "
            f"back empty, shape (0, {features})).")
    arrays = []
    for f in _SPLIT_FILES:
        if f in present:
            arrays.append(load_npy(folder / f, columns=features, what=f"{name} {f}"))
        else:
            arrays.append(np.zeros((0, features)))
    info = {"layout": "split", "files": [str(folder / f) for f in present],
            "missing_splits": [f[:-4] for f in missing],
            "preprocessing": ["as stored: pre-split, already MAF-preprocessed (standardised)"]}
    return arrays, info


def _maf_present(name: str, root: Path) -> bool:
    return all((root / m).is_file() for m in MAF_MEMBERS[name])


def _load_maf_layout(name: str, root: Path, *, seed: int, exact: bool, trust_pickle: bool,
                     label: int):
    require_files(name, root, MAF_MEMBERS[name], hint=_HINT)
    files = [str(root / m) for m in MAF_MEMBERS[name]]
    if name == "power":
        raw = load_npy(root / "power/data.npy", columns=8, what="POWER data.npy")
        rng = None if exact else np.random.default_rng(seed)
        arrays, info = preprocess_power(raw, rng=rng)
        info["rng"] = "np.random.RandomState(42)" if exact else f"default_rng({seed})"
    elif name == "gas":
        frame = load_guarded_pickle(root / "gas/ethylene_CO.pickle", root=root,
                                    relative="gas/ethylene_CO.pickle",
                                    known_checksum=GAS_PICKLE_CHECKSUM,
                                    trust_pickle=trust_pickle, allow_pandas=True)
        if not (hasattr(frame, "columns") and hasattr(frame, "to_numpy")):
            raise DataFormatError(f"{files[0]} does not hold a pandas DataFrame")
        arrays, info = preprocess_gas(frame.to_numpy(), list(frame.columns))
    elif name == "hepmass":
        arrays, info = preprocess_hepmass(read_hepmass_csv(root / "hepmass/1000_train.csv"),
                                          read_hepmass_csv(root / "hepmass/1000_test.csv"),
                                          label=label)
    else:
        raw = load_npy(root / "miniboone/data.npy", columns=43, what="MINIBOONE data.npy")
        arrays, info = preprocess_miniboone(raw)
    info.update(layout="maf", files=files, missing_splits=[])
    return arrays, info


def load_uci(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
             layout: str = "auto", download: bool = False, dtype: Any = np.float32,
             allow_missing_splits: bool = False, trust_pickle: bool = False,
             exact: bool = True, label: int = 1, progress: bool = True) -> Splits:
    """Load one of ``power``, ``gas``, ``hepmass``, ``miniboone``.

    Args:
        name: Dataset name.
        data_dir: Data folder (default: ``$NF_DATA_DIR`` or the checkout's ``data/``).
        seed: Used only by POWER with ``exact=False`` (the noise and shuffle).
        layout: ``"auto"``, ``"maf"`` (archive files, preprocessed here) or ``"split"``
            (``<name>/{train,val,test}.npy``, loaded as stored).
        download: Fetch the MAF archive when the files are absent.
        dtype: Output dtype (computation is float64).
        allow_missing_splits: In the split layout, return absent splits as empty arrays
            instead of raising (``info["missing_splits"]`` lists them).
        trust_pickle: Read the GAS pickle even though its checksum cannot be verified.
        exact: POWER: use ``RandomState(42)`` as published (True) or ``default_rng(seed)``.
        label: HEPMASS: class kept (1 = signal, as published).
        progress: Progress bar while downloading.

    Returns:
        :class:`Splits` of ``(N, D)`` arrays; ``info`` has ``features``, ``sizes``,
        ``published_sizes``, ``layout``, ``files``, ``preprocessing`` and the statistics.

    Raises:
        MissingDataError: If the files are absent (the message lists them).
        DataFormatError: If a file is truncated or has the wrong columns.
        PickleRefusedError: GAS pickle with unverifiable checksum and ``trust_pickle=False``.
    """
    if name not in PUBLISHED:
        raise ValueError(f"name={name!r}: expected one of {sorted(PUBLISHED)}")
    if layout not in ("auto", "maf", "split"):
        raise ValueError(f"layout={layout!r}: expected 'auto', 'maf' or 'split'")
    root = registry.data_dir(data_dir)
    features = PUBLISHED[name][0]
    split_present = any((root / name / f).is_file() for f in _SPLIT_FILES)
    if layout == "auto":
        if _maf_present(name, root):
            layout = "maf"
        elif split_present:
            layout = "split"
        else:
            layout = "maf"
    if layout == "maf" and download and not _maf_present(name, root):
        fetch_maf(root, [name], progress=progress)
    if layout == "maf":
        arrays, info = _load_maf_layout(name, root, seed=seed, exact=exact,
                                        trust_pickle=trust_pickle, label=label)
    else:
        arrays, info = _load_split_layout(name, root, features, allow_missing_splits)
    arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
    for a in arrays:
        if a.size and not np.all(np.isfinite(a)):
            raise DataFormatError(f"{name}: non-finite values after preprocessing")
    tr, va, te = arrays
    info = {"name": name, "features": int(tr.shape[1]),
            "sizes": {"train": len(tr), "val": len(va), "test": len(te)},
            "published_sizes": dict(zip(("train", "val", "test"), PUBLISHED[name][1:],
                                        strict=True)),
            "data_dir": str(root), **info}
    return Splits(tr, va, te, info)


def _register(name: str) -> None:
    @register(name)
    def _load(*, data_dir=None, seed: int = 0, **options: Any) -> Splits:
        return load_uci(name, data_dir=data_dir, seed=seed, **options)

    _load.__doc__ = f"Load {name.upper()} (see :func:`load_uci`)."


for _name in PUBLISHED:
    _register(_name)
