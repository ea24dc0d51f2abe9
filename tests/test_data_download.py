"""Downloads against a local HTTP server on 127.0.0.1: checksums, atomic files, the offline message."""
import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from convnp.data import DownloadError, data_dir, datasets, download as download_module, fetch, mnist, write_idx
from convnp.data.download import download


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/served over HTTP on a free loopback port; yields (base_url, served_folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_url():
    """A loopback URL nothing listens on: connections are refused at once, like being offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def make_fake_mnist_files(folder, n=5):
    """Small MNIST-format train files in ``folder``; returns {file name: md5}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return {name: md5_of(folder / name) for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")}


def test_download_success_verifies_and_leaves_only_the_file(server, tmp_path):
    base_url, served = server
    (served / "blob.bin").write_bytes(bytes(range(256)) * 5000)  # > one 1 MiB chunk
    dest = tmp_path / "out" / "blob.bin"
    result = download(base_url + "blob.bin", dest, md5_of(served / "blob.bin"))
    assert result == dest
    assert dest.read_bytes() == (served / "blob.bin").read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]


def test_md5_mismatch_raises_and_leaves_nothing(server, tmp_path):
    base_url, served = server
    (served / "blob.bin").write_bytes(b"some bytes")
    dest = tmp_path / "out" / "blob.bin"
    wrong = "0" * 32
    with pytest.raises(DownloadError) as error:
        download(base_url + "blob.bin", dest, wrong)
    message = str(error.value)
    assert base_url + "blob.bin" in message and wrong in message and md5_of(served / "blob.bin") in message
    assert list(dest.parent.iterdir()) == []


def test_http_404_is_a_clear_error(server, tmp_path):
    base_url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(base_url + "missing.gz", tmp_path / "missing.gz", "0" * 32)
    assert not (tmp_path / "missing.gz").exists()


def test_timeout_is_a_clear_error(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.gz"
        with pytest.raises(DownloadError, match="timed out") as error:
            download(url, tmp_path / "slow.gz", "0" * 32, timeout=0.2)
    assert url in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_tries_mirrors_in_turn_and_mnist_loads_the_result(server, closed_port_url, tmp_path, monkeypatch):
    base_url, served = server
    md5s = make_fake_mnist_files(served)
    monkeypatch.setitem(download_module.MIRRORS, "mnist", [closed_port_url, base_url])
    monkeypatch.setitem(datasets.MNIST_FILES, "train", md5s)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "data"))
    dataset = mnist("train")
    assert len(dataset) == 5
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(md5s)
    np.testing.assert_array_equal(dataset.y, np.arange(5))


def test_offline_error_names_files_and_folder(closed_port_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(download_module.MIRRORS, "mnist", [closed_port_url])
    with pytest.raises(FileNotFoundError) as error:
        mnist("test")
    message = str(error.value)
    folder = tmp_path / "data" / "mnist"
    assert f"Put these files in {folder}" in message
    assert str(folder / "t10k-images-idx3-ubyte.gz") in message
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in message
    assert "CONVNP_DATA" in message and closed_port_url in message
    assert not folder.exists() or list(folder.iterdir()) == []


def test_fetch_without_download_lists_only_missing_files(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "present.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="download=False") as error:
        fetch("toy", {"present.bin": "0" * 32, "absent.bin": "0" * 32}, root=tmp_path, download=False)
    assert str(folder / "absent.bin") in str(error.value)
    assert str(folder / "present.bin") not in str(error.value)


def test_existing_files_are_trusted_not_rehashed(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.bin").write_bytes(b"anything")
    paths = fetch("toy", {"a.bin": "0" * 32}, mirrors=[], root=tmp_path)
    assert paths == [tmp_path / "toy" / "a.bin"]


@pytest.mark.parametrize("platformdirs", ["installed", "absent"])
def test_data_dir_precedence(tmp_path, monkeypatch, platformdirs):
    """On Linux platformdirs and the fallback agree: $XDG_CACHE_HOME/convnp, else ~/.cache/convnp."""
    if platformdirs == "installed":
        pytest.importorskip("platformdirs")
    else:
        monkeypatch.setitem(__import__("sys").modules, "platformdirs", None)
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "chosen"
    monkeypatch.delenv("CONVNP_DATA")
    assert data_dir() == tmp_path / "xdg" / "convnp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "convnp"


def test_the_cache_folder_is_platformdirs_choice_and_convnp_data_still_wins(tmp_path, monkeypatch):
    platformdirs = pytest.importorskip("platformdirs")
    asked = []

    def macos_cache(appname, appauthor=None):  # what platformdirs answers on macOS
        asked.append((appname, appauthor))
        return str(tmp_path / "Library" / "Caches" / appname)

    monkeypatch.setattr(platformdirs, "user_cache_dir", macos_cache)
    monkeypatch.delenv("CONVNP_DATA", raising=False)
    assert data_dir() == tmp_path / "Library" / "Caches" / "convnp" and asked == [("convnp", False)]
    monkeypatch.setenv("CONVNP_DATA", str(tmp_path / "chosen"))
    assert data_dir() == tmp_path / "chosen"
    # the offline message names the folder platformdirs chose, and how to choose another
    monkeypatch.delenv("CONVNP_DATA")
    with pytest.raises(FileNotFoundError) as error:
        fetch("toy", {"a.bin": "0" * 32}, download=False)
    assert f"Put these files in {tmp_path / 'Library' / 'Caches' / 'convnp' / 'toy'}" in str(error.value)
    assert "CONVNP_DATA is not set" in str(error.value)


# --- deadline and size cap -------------------------------------------------------------------------------
class TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes and sends one every 0.05 s (a server trickling bytes), or, at /big, sends
    ``BIG`` bytes more than any expected file (with an honest or a missing Content-Length)."""

    BIG = 3 << 20

    def log_message(self, *args):
        pass

    def do_GET(self):
        import time

        self.send_response(200)
        if self.path.startswith("/big"):
            if self.path == "/big-declared":
                self.send_header("Content-Length", str(self.BIG))
            self.end_headers()
            try:
                for _ in range(self.BIG >> 16):
                    self.wfile.write(b"\0" * (1 << 16))
            except OSError:  # the client hung up: what it should do
                pass
            return
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


@pytest.fixture
def trickle_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TrickleHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_trickling_server_hits_the_deadline(trickle_server, tmp_path):
    import time

    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"not complete after the 0\.5 s deadline") as error:
        download(trickle_server + "/slow.gz", tmp_path / "slow.gz", "0" * 32, timeout=2, deadline=0.5)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 2.5, elapsed  # each read brought a byte within the timeout: only the deadline ends it
    assert "slow.gz" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, message", [("/big-declared", "offers 3,145,728 bytes, more than the 100,000"),
                                           ("/big", "larger than the 100,000 bytes expected; cut off")])
def test_a_response_larger_than_expected_is_cut_off(trickle_server, tmp_path, monkeypatch, path, message):
    written = []
    real_stream = download_module._stream_to_file

    def watching(url, file, *args):
        try:
            return real_stream(url, file, *args)
        finally:
            written.append(file.tell())

    monkeypatch.setattr(download_module, "_stream_to_file", watching)
    with pytest.raises(DownloadError, match=message):
        download(trickle_server + path, tmp_path / "f.gz", "0" * 32, max_bytes=100_000)
    assert written and written[0] <= 100_000  # never more than the cap reached the disk
    assert list(tmp_path.iterdir()) == []


def test_fetch_caps_each_file_at_its_published_size(monkeypatch, tmp_path):
    caps = []
    monkeypatch.setattr(download_module, "download", lambda url, path, md5, max_bytes: caps.append(max_bytes))
    fetch("mnist", {"t10k-labels-idx1-ubyte.gz": "0" * 32}, mirrors=["http://127.0.0.1:9/"], root=tmp_path)
    assert caps == [4542]  # the published size of MNIST's test labels


# --- the progress bar ----------------------------------------------------------------------------------------
def test_the_progress_bar_counts_the_bytes_of_a_download(server, tmp_path, capsys):
    pytest.importorskip("tqdm")
    base_url, served = server
    (served / "blob.bin").write_bytes(bytes(range(256)) * 5000)  # 1,280,000 bytes, 20 chunks
    dest = tmp_path / "out" / "blob.bin"
    download(base_url + "blob.bin", dest, md5_of(served / "blob.bin"), progress=True)
    assert dest.read_bytes() == (served / "blob.bin").read_bytes()
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    # 1,280,000 / 1024**2 = 1.22 MiB, counted up to the declared total
    assert final.startswith("downloading blob.bin: 100%") and "1.22M/1.22M" in final, final
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]


def test_no_bar_when_stderr_is_not_a_terminal_and_one_line_without_tqdm(server, tmp_path, capsys, monkeypatch):
    base_url, served = server
    (served / "blob.bin").write_bytes(b"0123456789")
    download(base_url + "blob.bin", tmp_path / "a.bin", md5_of(served / "blob.bin"))  # capsys: not a terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # tqdm not installed
    download(base_url + "blob.bin", tmp_path / "b.bin", md5_of(served / "blob.bin"), progress=True)
    assert capsys.readouterr().err == "downloading b.bin (no progress bar: pip install 'convnp[tools]' for one)\n"
    assert (tmp_path / "b.bin").read_bytes() == b"0123456789"


@pytest.mark.parametrize("case", ["wrong checksum", "stalled server", "trickling server"])
def test_with_the_bar_a_failed_download_still_fails_cleanly(server, trickle_server, tmp_path, capsys, case):
    pytest.importorskip("tqdm")
    base_url, served = server
    (served / "blob.bin").write_bytes(b"some bytes")
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url, md5, expected, kwargs = {
            "wrong checksum": (base_url + "blob.bin", "0" * 32, "checksum mismatch", {}),
            "stalled server": (f"http://127.0.0.1:{listener.getsockname()[1]}/f.gz", "0" * 32, "timed out after 0.2 s",
                               {"timeout": 0.2}),
            "trickling server": (trickle_server + "/slow.gz", "0" * 32, "not complete after the 0.3 s deadline",
                                 {"timeout": 2, "deadline": 0.3}),
        }[case]
        with pytest.raises(DownloadError, match=expected):
            download(url, tmp_path / "out" / "f.gz", md5, progress=True, **kwargs)
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor its temporary
    assert "downloading f.gz" in capsys.readouterr().err  # the bar was shown, and closed
