"""Downloads against a local HTTP server on 127.0.0.1: full, resumed (Range), interrupted,
wrong checksum, offline; safe extraction of the MAF archive layout; unsafe members."""

import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

import normalizingflows.data as nfd
from normalizingflows.data.download import download, fetch_maf, safe_extract
from normalizingflows.data.files import MANIFEST_NAME, read_manifest


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    log: list = []
    cut_after: int | None = None  # close the connection after this many body bytes

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.cut_after is not None:
            self.wfile.write(part[: self.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


@pytest.fixture
def server():
    _Handler.files, _Handler.log, _Handler.cut_after = {}, [], None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield _Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):  # (type, linkname)
                info.type, info.linkname = data
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_and_checksum(server, tmp_path):
    h, url = server
    body = np.random.default_rng(0).bytes(300_000)
    h.files["/f.bin"] = body
    out = download(url + "/f.bin", tmp_path / "f.bin", checksum=_sha(body), progress=False)
    assert out.read_bytes() == body
    assert not (tmp_path / "f.bin.part").exists()
    n = len(h.log)
    download(url + "/f.bin", tmp_path / "f.bin", checksum=_sha(body), progress=False)
    assert len(h.log) == n  # verified file kept, no request


def test_resume_with_range(server, tmp_path):
    h, url = server
    body = np.random.default_rng(1).bytes(200_000)
    h.files["/a.bin"] = body
    (tmp_path / "a.bin.part").write_bytes(body[:70_000])
    download(url + "/a.bin", tmp_path / "a.bin", checksum=_sha(body), progress=False)
    assert h.log[-1] == ("/a.bin", "bytes=70000-")
    assert (tmp_path / "a.bin").read_bytes() == body


def test_interrupted_download_keeps_part_then_resumes(server, tmp_path):
    h, url = server
    body = np.random.default_rng(2).bytes(150_000)
    h.files["/b.bin"] = body
    h.cut_after = 50_000
    with pytest.raises(nfd.MissingDataError, match="resumes"):
        download(url + "/b.bin", tmp_path / "b.bin", checksum=_sha(body), progress=False)
    assert not (tmp_path / "b.bin").exists()
    assert (tmp_path / "b.bin.part").stat().st_size == 50_000
    h.cut_after = None
    download(url + "/b.bin", tmp_path / "b.bin", checksum=_sha(body), progress=False)
    assert h.log[-1][1] == "bytes=50000-"
    assert (tmp_path / "b.bin").read_bytes() == body


def test_checksum_failure_leaves_nothing(server, tmp_path):
    h, url = server
    h.files["/c.bin"] = b"not what you expected"
    with pytest.raises(nfd.ChecksumError, match="expected"):
        download(url + "/c.bin", tmp_path / "c.bin", checksum=_sha(b"other"), progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="checksum"):
        download(url + "/c.bin", tmp_path / "c.bin", checksum="crc:00", progress=False)


def test_offline_message_names_the_file(tmp_path):
    with pytest.raises(nfd.MissingDataError) as e:
        download("http://127.0.0.1:9/none.tar.gz", tmp_path / "x.tar.gz", timeout=2,
                 progress=False)
    assert str(tmp_path / "x.tar.gz") in str(e.value)


def test_fetch_maf_then_load(server, tmp_path):
    h, url = server
    raw = np.random.default_rng(3).normal(size=(100, 43))
    npy = io.BytesIO()
    np.save(npy, raw)
    archive = _tar({"data/miniboone/data.npy": npy.getvalue(), "data/power/data.npy": b"x"})
    h.files["/data.tar.gz"] = archive
    md5 = "md5:" + hashlib.md5(archive).hexdigest()
    fetch_maf(tmp_path, ["miniboone"], url=url + "/data.tar.gz", checksum=md5, progress=False)
    assert (tmp_path / "miniboone/data.npy").is_file()
    assert not (tmp_path / "power").exists()  # only the requested dataset
    assert "miniboone/data.npy" in read_manifest(tmp_path)
    s = nfd.load("miniboone", data_dir=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (81, 9, 10)
    with pytest.raises(nfd.ChecksumError):
        fetch_maf(tmp_path / "other", ["miniboone"], url=url + "/data.tar.gz",
                  checksum="md5:" + "0" * 32, progress=False)
    assert not (tmp_path / "other" / "miniboone").exists()


def test_load_with_download_true(server, tmp_path, monkeypatch):
    import functools

    from normalizingflows.data import uci

    h, url = server
    npy = io.BytesIO()
    np.save(npy, np.random.default_rng(4).normal(size=(50, 43)))
    archive = _tar({"data/miniboone/data.npy": npy.getvalue()})
    h.files["/data.tar.gz"] = archive
    monkeypatch.setattr(uci, "fetch_maf", functools.partial(
        fetch_maf, url=url + "/data.tar.gz", checksum=_sha(archive)))
    with pytest.raises(nfd.MissingDataError):
        nfd.load("miniboone", data_dir=tmp_path)
    s = nfd.load("miniboone", data_dir=tmp_path, download=True, progress=False)
    assert s.info["sizes"] == {"train": 41, "val": 4, "test": 5}


def test_fetch_maf_offline_lists_files(tmp_path):
    with pytest.raises(nfd.MissingDataError) as e:
        fetch_maf(tmp_path, ["hepmass"], url="http://127.0.0.1:9/data.tar.gz", progress=False)
    msg = str(e.value)
    assert str(tmp_path / "hepmass/1000_train.csv") in msg
    assert str(tmp_path / "hepmass/1000_test.csv") in msg


@pytest.mark.parametrize("members", [
    {"data/../evil.txt": b"x"},
    {"/abs/evil.txt": b"x"},
    {"data/link": (tarfile.SYMTYPE, "../../outside")},
    {"data/hard": (tarfile.LNKTYPE, "/etc/passwd")},
    {"data/fifo": (tarfile.FIFOTYPE, "")},
])
def test_unsafe_members_rejected(tmp_path, members):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar({"data/ok.txt": b"fine", **members}))
    dest = tmp_path / "out"
    with pytest.raises(nfd.UnsafeArchiveError):
        safe_extract(archive, dest, strip=1)
    assert not (dest / "ok.txt").exists()  # nothing extracted
    assert not (tmp_path / "evil.txt").exists()


def test_unsafe_archive_via_fetch(server, tmp_path):
    h, url = server
    archive = _tar({"data/../../escape.txt": b"x"})
    h.files["/data.tar.gz"] = archive
    with pytest.raises(nfd.UnsafeArchiveError, match=r"\.\."):
        fetch_maf(tmp_path / "d", ["power"], url=url + "/data.tar.gz",
                  checksum=_sha(archive), progress=False)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "d" / MANIFEST_NAME).exists()


def test_safe_extract_missing_member_and_bad_archive(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar({"data/x.txt": b"1"}))
    with pytest.raises(nfd.MissingDataError, match="y.txt"):
        safe_extract(archive, tmp_path / "o", members=["y.txt"], strip=1)
    archive.write_bytes(b"garbage")
    with pytest.raises(nfd.ChecksumError, match="not a readable tar"):
        safe_extract(archive, tmp_path / "o")
