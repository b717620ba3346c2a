"""UCI loaders: MAF preprocessing step by step on format-faithful fixtures, split arithmetic,
the real MINIBOONE splits in shared/data, and clear errors on bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
from uci_fixtures import gas_table, power_raw, write_hepmass

import normalizingflows.data as nfd
from normalizingflows.data import uci
from normalizingflows.data.files import record_verified

SHARED = Path(os.environ.get("NF_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("name,n", [("power", 2_049_280), ("gas", 1_052_065),
                                    ("miniboone", 36_488)])
def test_split_arithmetic_gives_published_sizes(name, n):
    assert uci.maf_split_sizes(n) == uci.PUBLISHED[name][1:]


def test_hepmass_validation_arithmetic():
    n_train_file_positives = 315_123 + 35_013
    assert int(0.1 * n_train_file_positives) == 35_013


def test_miniboone_full_size_fixture(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone/data.npy", rng.normal(size=(36_488, 43)))
    s = nfd.load("miniboone", data_dir=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (29_556, 3_284, 3_648)
    assert s.info["sizes"] == s.info["published_sizes"]
    assert s.info["features"] == 43 and s.train.dtype == np.float32


def test_miniboone_committed_fixture_every_step(tmp_path):
    raw = np.load(FIXTURES / "miniboone/data_first200rows.npy")
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone/data.npy", raw)
    s = nfd.load("miniboone", data_dir=tmp_path, dtype=np.float64)
    assert (len(s.train), len(s.val), len(s.test)) == (162, 18, 20)
    trval = raw[:180]
    mu, sd = trval.mean(0), trval.std(0)
    np.testing.assert_allclose(s.train, (raw[:162] - mu) / sd)
    np.testing.assert_allclose(s.val, (raw[162:180] - mu) / sd)
    np.testing.assert_allclose(s.test, (raw[180:] - mu) / sd)
    both = np.concatenate([s.train, s.val])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-10)
    assert s.info["layout"] == "maf"


@pytest.mark.skipif(not (SHARED / "miniboone/val.npy").is_file(), reason="shared/data absent")
def test_real_miniboone_split_layout():
    with pytest.raises(nfd.MissingDataError, match="train.npy"):
        nfd.load("miniboone", data_dir=SHARED)
    s = nfd.load("miniboone", data_dir=SHARED, allow_missing_splits=True)
    assert s.train.shape == (0, 43)
    assert s.val.shape == (3_284, 43) and s.test.shape == (3_648, 43)
    assert s.info["missing_splits"] == ["train"] and s.info["layout"] == "split"
    assert np.abs(s.test.mean(0)).max() < 0.04
    sd = s.test.std(0)
    assert 0.85 < sd.min() and sd.max() < 1.1
    assert np.isfinite(s.val).all()


def test_power_every_step(tmp_path):
    raw = power_raw(1000)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", raw)
    s = nfd.load("power", data_dir=tmp_path, dtype=np.float64)
    # replay the published recipe by hand
    rng = np.random.RandomState(42)
    x = raw.copy()
    rng.shuffle(x)
    kept = x[:, [0, 2, 4, 5, 6, 7]]
    volt_u = 0.01 * rng.rand(1000, 1)
    gap_u = 0.001 * rng.rand(1000, 1)
    sm_u = rng.rand(1000, 3)
    noisy = kept + np.hstack([gap_u, volt_u, sm_u, np.zeros((1000, 1))])
    assert (noisy - kept)[:, 0].max() < 0.001 and (noisy - kept)[:, 1].max() < 0.01
    assert np.all(noisy[:, 5] == kept[:, 5])  # no noise on time
    assert uci.maf_split_sizes(1000) == (810, 90, 100)
    trval = noisy[:900]
    expect = (noisy - trval.mean(0)) / trval.std(0)
    np.testing.assert_allclose(np.concatenate([s.train, s.val, s.test]), expect)
    assert s.info["features"] == 6 and s.info["rng"] == "np.random.RandomState(42)"
    # reproducible, and exact=False uses the seed
    s2 = nfd.load("power", data_dir=tmp_path, exact=False, seed=3)
    s3 = nfd.load("power", data_dir=tmp_path, exact=False, seed=3)
    np.testing.assert_array_equal(s2.train, s3.train)
    assert not np.allclose(s2.train, s.train.astype(np.float32))


def test_power_bad_inputs(tmp_path):
    with pytest.raises(nfd.MissingDataError) as e:
        nfd.load("power", data_dir=tmp_path)
    assert str(tmp_path / "power/data.npy") in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", power_raw(50)[:, :7])
    with pytest.raises(nfd.DataFormatError, match=r"\(N, 8\)"):
        nfd.load("power", data_dir=tmp_path)
    np.save(tmp_path / "power/data.npy", power_raw(500))
    blob = (tmp_path / "power/data.npy").read_bytes()
    (tmp_path / "power/data.npy").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(nfd.DataFormatError, match="truncated"):
        nfd.load("power", data_dir=tmp_path)


def test_gas_every_step():
    values, columns = gas_table(2000)
    (tr, va, te), info = uci.preprocess_gas(values, columns)
    assert tr.shape[1] == 10 and len(info["columns"]) == 10
    assert not {"Time", "Meth", "Eth"} & set(info["columns"])
    assert len(info["dropped_correlated"]) == 6
    x = np.concatenate([tr, va, te])
    assert np.abs(np.corrcoef(x, rowvar=False) - np.eye(10)).max() < 0.98
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(0, ddof=1), 1, atol=1e-12)  # all rows, ddof=1
    assert (len(tr), len(va), len(te)) == uci.maf_split_sizes(2000) == (1620, 180, 200)
    with pytest.raises(nfd.DataFormatError, match="Meth"):
        uci.preprocess_gas(values[:, 1:], columns[1:])


def test_gas_pickle_is_checksum_gated(tmp_path):
    (tmp_path / "gas").mkdir()
    path = tmp_path / "gas/ethylene_CO.pickle"
    # a DataFrame pickle references pandas; this one is a minimal stand-in
    path.write_bytes(b"\x80\x02cpandas.core.frame\nDataFrame\n)\x81.")
    with pytest.raises(nfd.PickleRefusedError, match="trust_pickle"):
        nfd.load("gas", data_dir=tmp_path)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(nfd.DataFormatError, match="pandas"):
            nfd.load("gas", data_dir=tmp_path, trust_pickle=True)
        # a verified extraction (manifest) also opens the gate
        from normalizingflows.data.files import file_digest
        record_verified(tmp_path, {"gas/ethylene_CO.pickle": file_digest(path)}, "test")
        with pytest.raises(nfd.DataFormatError, match="pandas"):
            nfd.load("gas", data_dir=tmp_path)
    # a pickle that would run code is refused even when trusted
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(nfd.DataFormatError, match="refusing"):
        nfd.load("gas", data_dir=tmp_path, trust_pickle=True)


def test_gas_real_dataframe_pickle(tmp_path):
    pd = pytest.importorskip("pandas")
    values, columns = gas_table(1000)
    (tmp_path / "gas").mkdir()
    pd.DataFrame(values, columns=columns).to_pickle(tmp_path / "gas/ethylene_CO.pickle")
    s = nfd.load("gas", data_dir=tmp_path, trust_pickle=True)
    assert s.train.shape == (810, 10)


def test_hepmass_every_step(tmp_path):
    write_hepmass(tmp_path / "hepmass", 2000, 600)
    s = nfd.load("hepmass", data_dir=tmp_path, dtype=np.float64)
    info = s.info
    assert info["removed_features"] == [2, 5, 9, 13, 17, 21]
    assert s.train.shape[1] == 21 and info["features"] == 21
    assert (len(s.train), len(s.val), len(s.test)) == (900, 100, 300)  # positives only
    raw = np.loadtxt(tmp_path / "hepmass/1000_train.csv", delimiter=",", skiprows=1)
    pos = raw[raw[:, 0] == 1, 1:][:, info["kept_features"]]
    expect = (pos - pos.mean(0)) / pos.std(0, ddof=1)  # train stats before the val split
    np.testing.assert_allclose(np.concatenate([s.train, s.val]), expect, atol=1e-12)
    assert info["test_columns"].startswith("dropped")
    neg = nfd.load("hepmass", data_dir=tmp_path, label=0)
    assert len(neg.train) + len(neg.val) == 1000


def test_hepmass_wrong_columns(tmp_path):
    write_hepmass(tmp_path / "hepmass", 100, 50)
    bad = tmp_path / "hepmass/1000_test.csv"
    a = np.loadtxt(bad, delimiter=",", skiprows=1)
    np.savetxt(bad, a[:, :20], delimiter=",", header="x", fmt="%.6g")
    with pytest.raises(nfd.DataFormatError, match="columns"):
        nfd.load("hepmass", data_dir=tmp_path)
    bad.write_text("# h\n1,2,3\n1,2\n")
    with pytest.raises(nfd.DataFormatError, match=str(bad)):
        nfd.load("hepmass", data_dir=tmp_path)


def test_unknown_name_and_layout():
    with pytest.raises(ValueError, match="unknown dataset"):
        nfd.load("powerr")
    with pytest.raises(ValueError, match="layout"):
        nfd.load("power", layout="zip")


def test_split_layout_wrong_columns(tmp_path):
    (tmp_path / "gas").mkdir()
    for f in ("train", "val", "test"):
        np.save(tmp_path / f"gas/{f}.npy", np.zeros((5, 7)))
    with pytest.raises(nfd.DataFormatError, match=r"\(N, 8\)"):
        nfd.load("gas", data_dir=tmp_path)
    for f in ("train", "val", "test"):
        np.save(tmp_path / f"gas/{f}.npy", np.ones((5, 8)))
    s = nfd.load("gas", data_dir=tmp_path)
    assert s.info["layout"] == "split" and s.train.shape == (5, 8)


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_DATA_DIR", str(tmp_path))
    assert nfd.data_dir() == tmp_path
    assert nfd.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("NF_DATA_DIR")
    assert nfd.data_dir().name == "data"


def test_pickle_roundtrip_not_used_for_arrays(tmp_path):
    # object arrays in .npy are refused (allow_pickle=False)
    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone/data.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    with pytest.raises(nfd.DataFormatError):
        nfd.load("miniboone", data_dir=tmp_path)


@pytest.mark.slow
def test_power_full_size(tmp_path):
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", power_raw(2_049_280))
    s = nfd.load("power", data_dir=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (1_659_917, 184_435, 204_928)
