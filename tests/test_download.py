"""Downloads and archives (data/download.py): MD5 checks, retries that resume, tarballs whose
members would escape or link."""

import hashlib
import http.server
import tarfile
import threading

import pytest

from cifarlab.data.download import download, safe_extract
from cifarlab.errors import DataError
from conftest import add_member, serve_cifar_tarball


def test_wrong_md5_is_refused_and_nothing_kept(tmp_path, http_server):
    base, www = http_server
    serve_cifar_tarball(tmp_path, www)
    dest = tmp_path / "dl" / "cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="MD5"):
        download(f"{base}/cifar-10-python.tar.gz", dest, md5="0" * 32)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_download_error_is_clear(tmp_path, http_server):
    base, _ = http_server
    with pytest.raises(DataError, match="could not download"):
        download(f"{base}/missing.tar.gz", tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz.part").exists()


def test_download_checks_md5_of_what_arrived(tmp_path, http_server):
    base, www = http_server
    (www / "f.bin").write_bytes(b"hello")
    dest = download(f"{base}/f.bin", tmp_path / "f.bin", hashlib.md5(b"hello").hexdigest())
    assert dest.read_bytes() == b"hello"


@pytest.mark.parametrize("member", [
    dict(name="../escaped.txt"),
    dict(name="cifar-10-batches-py/../../escaped.txt"),
    dict(name="/tmp/absolute-escape.txt"),
    dict(name="cifar-10-batches-py/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    dict(name="cifar-10-batches-py/hard", type=tarfile.LNKTYPE, linkname="../../x"),
    dict(name="cifar-10-batches-py/dev", type=tarfile.CHRTYPE),
])
def test_tarball_members_that_escape_or_link_are_refused(tmp_path, member):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/ok.txt")
        add_member(tar, **member)
    target = tmp_path / "a" / "b"
    with pytest.raises(DataError, match="refusing to extract"):
        safe_extract(archive, target)
    assert not (tmp_path / "a" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not target.exists()  # all or nothing: not even the good member landed


class FlakyServer(http.server.BaseHTTPRequestHandler):
    """Serves `payload`; the first response stops half-way (with the full Content-Length).
    With `ranges`, it honours "Range: bytes=N-" as servers of big files do."""

    payload, ranges, requests = b"", True, []

    def do_GET(self):
        cls = type(self)
        cls.requests.append(self.headers.get("Range"))
        start = 0
        if cls.ranges and self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        body = cls.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if len(cls.requests) == 1:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    FlakyServer.payload = bytes(range(256)) * 4000
    FlakyServer.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/f.bin"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("ranges", [True, False])
def test_a_broken_download_is_retried_resumed_or_restarted(tmp_path, flaky_server, ranges):
    FlakyServer.ranges = ranges
    md5 = hashlib.md5(FlakyServer.payload).hexdigest()
    dest = download(flaky_server, tmp_path / "f.bin", md5, wait=0.01)
    assert dest.read_bytes() == FlakyServer.payload
    half = len(FlakyServer.payload) // 2
    assert FlakyServer.requests == [None, f"bytes={half}-"]  # the second asks for the rest
    assert not (tmp_path / "f.bin.part").exists()


def test_a_download_that_keeps_failing_keeps_its_part_and_is_never_taken_as_done(
        tmp_path, flaky_server, monkeypatch):
    FlakyServer.ranges = True
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError, match="1 attempts.*partial download is kept"):
        download(flaky_server, dest, hashlib.md5(FlakyServer.payload).hexdigest(), attempts=1)
    assert not dest.exists() and (tmp_path / "f.bin.part").stat().st_size > 0
    download(flaky_server, dest, hashlib.md5(FlakyServer.payload).hexdigest())  # continues
    assert dest.read_bytes() == FlakyServer.payload
