"""Format-faithful stand-ins of the MAF archive's POWER, GAS and HEPMASS files (made at test
time: the real files are not redistributable here and not in ../shared)."""

import numpy as np


def power_raw(n, seed=1):
    rng = np.random.default_rng(seed)
    gap = rng.integers(0, 5000, n) / 1000.0
    grp = np.where(rng.random(n) < 0.3, 0.0, rng.integers(0, 500, n) / 1000.0)
    volt = rng.integers(22000, 25000, n) / 100.0
    inten = rng.integers(2, 400, n) / 10.0
    sm = rng.integers(0, 40, (n, 3)).astype(float)
    time = np.arange(n) % 1440 + rng.random(n)
    return np.column_stack([gap, grp, volt, inten, sm, time])


def gas_table(n, seed=2):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 10))
    sensors = [base[:, i] for i in range(10)]
    # 6 near-duplicates (corr > 0.98) of existing sensors, interleaved
    sensors.insert(2, base[:, 1] * 3 + 0.01 * rng.normal(size=n))
    sensors.insert(5, base[:, 3] + 0.05 * rng.normal(size=n))
    sensors += [base[:, 7] * 2 + 0.02 * rng.normal(size=n),
                base[:, 0] - 1e-3 * rng.normal(size=n),
                base[:, 9] + 0.03 * rng.normal(size=n),
                base[:, 4] * 0.5 + 0.001 * rng.normal(size=n)]
    columns = ["Time", "Meth", "Eth"] + [f"s{i}" for i in range(16)]
    values = np.column_stack([np.arange(n) * 0.01, rng.random(n), rng.random(n), *sensors])
    return values, columns


def write_hepmass(folder, n_train, n_test, seed=3):
    rng = np.random.default_rng(seed)

    def table(n):
        label = (np.arange(n) % 2 == 0).astype(float)
        cont = rng.normal(size=(n, 27))
        for j in (5, 9, 13, 17, 21):  # discrete: number of jets, b-tags
            cont[:, j] = rng.integers(0, 3, n)
        cont[:, 2] = np.maximum(cont[:, 2], -0.5)  # clipped: minimum repeats
        return np.column_stack([label, cont])

    folder.mkdir()
    header = "# label," + ",".join(f"f{i}" for i in range(27))
    np.savetxt(folder / "1000_train.csv", table(n_train), delimiter=",", header=header,
               comments="", fmt="%.6g")
    test = table(n_test)
    test = np.column_stack([test, np.full(n_test, 1000.0)])  # the test file's extra column
    np.savetxt(folder / "1000_test.csv", test, delimiter=",", header=header + ",mass",
               comments="", fmt="%.6g")
