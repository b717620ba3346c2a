"""Resumable, checksum-verified downloads and safe archive extraction.

:func:`download` writes to ``<file>.part``, resumes it with an HTTP ``Range`` request, checks
the checksum and only then renames it to the final name. :func:`safe_extract` refuses absolute
paths, ``..`` components and links, and writes every member through a temporary file.
:func:`fetch_maf` gets the MAF data archive (Zenodo record 1161203) and extracts the members a
dataset needs into the data folder.
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .files import (
    ChecksumError,
    MissingDataError,
    UnsafeArchiveError,
    _split_checksum,
    atomic_write,
    file_digest,
    record_verified,
    verify_checksum,
)

__all__ = [
    "MAF_ARCHIVE_URL",
    "MAF_ARCHIVE_CHECKSUM",
    "MAF_MEMBERS",
    "download",
    "safe_extract",
    "fetch_maf",
]

MAF_ARCHIVE_URL = "https://zenodo.org/record/1161203/files/data.tar.gz"
#: Zenodo publishes only the MD5 of data.tar.gz; no SHA256 is published (see data/README.md).
MAF_ARCHIVE_CHECKSUM = "md5:9b9c9b0375315ad270eba4ce80c093ab"
#: Files each dataset needs from the archive (paths inside it start with ``data/``).
MAF_MEMBERS: dict[str, tuple[str, ...]] = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
    "mnist": ("mnist/mnist.pkl.gz",),
}


class _Progress:
    """A dependency-free progress bar on stderr."""

    def __init__(self, total: int | None, start: int, label: str, enabled: bool) -> None:
        self.total, self.done, self.label, self.enabled = total, start, label, enabled
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        mb = self.done / 2**20
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * frac)
            tot = self.total / 2**20
            msg = f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% {mb:,.1f}/{tot:,.1f} MiB"
        else:
            msg = f"\r{self.label} {mb:,.1f} MiB"
        sys.stderr.write(msg)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")


def download(url: str, dest: str | os.PathLike, *, checksum: str | None = None,
             progress: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and verifying a checksum.

    Args:
        url: HTTP(S) address (``file://`` works too, without resume).
        dest: Final file name. An existing file whose checksum matches is kept as is.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"``; ``None`` skips verification.
        progress: Draw a progress bar on stderr.
        timeout: Socket timeout in seconds.
        chunk_size: Bytes read per iteration.

    Returns:
        ``Path(dest)``.

    Raises:
        MissingDataError: If the download fails (offline, HTTP error); the message names the
            URL and the file to place by hand.
        ChecksumError: If the downloaded bytes do not have ``checksum`` (the partial file is
            deleted; ``dest`` is never created).
    """
    dest = Path(dest)
    if checksum is not None:
        _split_checksum(checksum)  # validate early
    if dest.is_file() and (checksum is None or verify_checksum(dest, checksum)):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "normalizingflows"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            resp = None
        else:
            raise _offline_error(url, dest, e) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _offline_error(url, dest, e) from e
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            mode = "ab" if (have and status == 206) else "wb"
            if mode == "wb":
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            bar = _Progress(total, have, dest.name, progress)
            try:
                with open(part, mode) as f:
                    for chunk in iter(lambda: resp.read(chunk_size), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                bar.close()
                raise _offline_error(url, dest, e, partial=part) from e
            bar.close()
            if total is not None and bar.done < total:
                raise _offline_error(url, dest, OSError(
                    f"connection closed after {bar.done:,} of {total:,} bytes"), partial=part)
    if checksum is not None and not verify_checksum(part, checksum):
        algo, want = _split_checksum(checksum)
        got = file_digest(part, algo)
        part.unlink()
        raise ChecksumError(f"downloaded {url} has {algo} {got}, expected {want}; the partial "
                            f"file was deleted and {dest} was not written. Try again, or place a "
                            "correct copy there by hand.")
    os.replace(part, dest)
    return dest


def _offline_error(url: str, dest: Path, err: BaseException,
                   partial: Path | None = None) -> MissingDataError:
    msg = (f"could not download {url} ({err}). Download it by hand and place it at:\n  {dest}\n"
           "or put the extracted files in the data folder (see data/README.md).")
    if partial is not None:
        msg += f"\nThe partial download {partial} is kept; calling again resumes it."
    return MissingDataError(msg)


def _check_member(m: tarfile.TarInfo, dest: Path) -> PurePosixPath:
    name = PurePosixPath(m.name)
    if name.is_absolute() or m.name.startswith(("/", "\\")) or ":" in name.parts[0]:
        raise UnsafeArchiveError(f"archive member {m.name!r} has an absolute path; refusing")
    if ".." in name.parts:
        raise UnsafeArchiveError(f"archive member {m.name!r} contains '..'; refusing")
    if m.issym() or m.islnk():
        target = PurePosixPath(m.linkname)
        base = name.parent if m.issym() else PurePosixPath()
        root = dest.resolve()
        resolved = os.path.normpath(str(root / base / target))
        if target.is_absolute() or not resolved.startswith(str(root) + os.sep):
            raise UnsafeArchiveError(
                f"archive member {m.name!r} links to {m.linkname!r}, outside {dest}; refusing")
    elif not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(f"archive member {m.name!r} is not a regular file; refusing")
    return name


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *,
                 members: Iterable[str] | None = None, strip: int = 0) -> list[Path]:
    """Extract a tar archive into ``dest`` without writing outside it.

    Every member is checked before anything is written: absolute names, ``..`` components,
    links pointing outside ``dest`` and device/FIFO members raise. Links inside ``dest`` are
    skipped (data archives do not need them). Each file is written to a temporary name and
    renamed when complete.

    Args:
        archive: A ``.tar``, ``.tar.gz`` or ``.tgz`` file.
        dest: Target folder (created).
        members: If given, extract only these names (after ``strip``), e.g.
            ``["power/data.npy"]``; a listed name absent from the archive raises.
        strip: Number of leading path components to remove (like ``tar --strip-components``).

    Returns:
        Paths of the extracted files.

    Raises:
        UnsafeArchiveError: On an unsafe member (nothing is extracted then).
        MissingDataError: If a requested member is not in the archive.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = None if members is None else set(members)
    out: list[Path] = []
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ChecksumError(f"{archive} is not a readable tar archive ({e}); delete it and "
                            "download it again") from e
    with tf:
        infos = tf.getmembers()
        plan = []
        for m in infos:
            name = _check_member(m, dest)
            if len(name.parts) <= strip:
                continue
            rel = PurePosixPath(*name.parts[strip:])
            if wanted is not None and str(rel) not in wanted:
                continue
            plan.append((m, rel))
        if wanted is not None:
            absent = wanted - {str(rel) for _, rel in plan}
            if absent:
                raise MissingDataError(f"{archive} does not contain {sorted(absent)}")
        for m, rel in plan:
            target = dest / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not m.isfile():
                continue
            src = tf.extractfile(m)
            with src, atomic_write(target) as f:
                shutil.copyfileobj(src, f, 1 << 20)
            out.append(target)
    return out


def fetch_maf(data_dir: str | os.PathLike, datasets: Iterable[str] | None = None, *,
              url: str = MAF_ARCHIVE_URL, checksum: str | None = MAF_ARCHIVE_CHECKSUM,
              progress: bool = True, keep_archive: bool = True) -> list[Path]:
    """Download the MAF data archive and extract the files of ``datasets`` into ``data_dir``.

    The archive (roughly 1 GB) lands in ``data_dir/data.tar.gz`` and is verified against the
    published checksum before extraction. The sha256 of each extracted file is recorded in
    ``data_dir/.nf-verified.json``, which is what allows the GAS and MNIST pickles to be read.

    Args:
        data_dir: The data folder.
        datasets: Names from :data:`MAF_MEMBERS`; ``None`` extracts all of them.
        url: Where to fetch the archive (a mirror, or a local server in tests).
        checksum: Expected checksum of the archive.
        progress: Draw a progress bar.
        keep_archive: Keep ``data.tar.gz`` after extraction.

    Returns:
        The extracted files.

    Raises:
        MissingDataError: If offline; the message lists the exact files to place.
        ChecksumError: If the archive's checksum differs.
        UnsafeArchiveError: If the archive has unsafe members.
    """
    root = Path(data_dir)
    names = list(MAF_MEMBERS) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in MAF_MEMBERS]
    if unknown:
        raise ValueError(f"datasets={unknown} are not in the MAF archive; expected some of "
                         f"{sorted(MAF_MEMBERS)}")
    wanted = [m for n in names for m in MAF_MEMBERS[n]]
    archive = root / "data.tar.gz"
    try:
        download(url, archive, checksum=checksum, progress=progress)
    except MissingDataError as e:
        files = "\n".join(f"  {root / m}" for m in wanted)
        raise MissingDataError(f"{e}\nAlternatively place the extracted files:\n{files}") from e
    extracted = safe_extract(archive, root, members=wanted, strip=1)
    if checksum is not None:
        record_verified(root, {str(p.relative_to(root).as_posix()): file_digest(p)
                               for p in extracted}, source=f"{url} ({checksum})")
    if not keep_archive:
        archive.unlink()
    return extracted
