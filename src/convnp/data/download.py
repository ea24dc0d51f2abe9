"""Where datasets live on disk, and fetching missing files with MD5 verification.

The data directory is ``$CONVNP_DATA`` when set, else the per-user cache folder (``user_cache_dir``:
platformdirs' choice for the platform when platformdirs is installed, the tools extra: ``~/.cache/convnp``
or ``$XDG_CACHE_HOME/convnp`` on Linux, ``~/Library/Caches/convnp`` on macOS, ``%LOCALAPPDATA%/convnp/Cache``
on Windows; without it, the Linux rule everywhere).  Dataset ``name`` keeps its files in
``data_dir() / name``.

Files already on disk are trusted (re-hashing MNIST on every load would be slow); only downloads are
checked against their published MD5.  A download shows a tqdm progress bar (bytes, speed, ETA) when
stderr is a terminal and tqdm is installed (the tools extra); ``download(..., progress=True/False)`` forces
it on or off, and without tqdm a forced one is a line when the download starts.

Why not pooch: it would bring requests, and it has no size cap and no overall deadline, both of which
this downloader keeps (a server trickling bytes or sending more than a dataset's published size is
stopped before it fills the disk).  The rest of what pooch offers (hash check, temporary file renamed
into place, a tqdm bar) is the few lines below.
"""
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from convnp.files import atomic_write

# Mirrors tried in order. Tests replace entries (monkeypatch.setitem) to point at a local server.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

DOWNLOAD_TIMEOUT_S = 30.0       # each connect and each read (a silent server)
DOWNLOAD_DEADLINE_S = 600.0     # the whole file (a server trickling bytes)
MAX_DOWNLOAD_BYTES = 256 << 20  # a file whose size is not known below
# The published files' sizes in bytes: a response larger than this is cut off and rejected.
EXPECTED_SIZES = {
    "mnist": {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
              "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542},
    "fashion-mnist": {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
                      "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148},
}


class DownloadError(OSError):
    """A file could not be downloaded: network failure, timeout, HTTP error or wrong checksum."""


def data_dir():
    """The folder datasets are looked up in (not created here): ``$CONVNP_DATA``, else ``user_cache_dir()``."""
    if os.environ.get("CONVNP_DATA"):
        return Path(os.environ["CONVNP_DATA"]).expanduser()
    return user_cache_dir()


def user_cache_dir():
    """convnp's per-user cache folder (not created here): ``platformdirs.user_cache_dir("convnp")`` when
    platformdirs is installed, else ``$XDG_CACHE_HOME/convnp`` or ``~/.cache/convnp``."""
    try:
        import platformdirs
    except ImportError:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(cache).expanduser() / "convnp"
    return Path(platformdirs.user_cache_dir("convnp", appauthor=False))


def download(url, dest, md5, timeout=DOWNLOAD_TIMEOUT_S, deadline=DOWNLOAD_DEADLINE_S,
             max_bytes=MAX_DOWNLOAD_BYTES, progress=None):
    """Download ``url`` to ``dest``, verifying its MD5; returns ``dest`` as a Path.

    The bytes are streamed to a temporary file next to ``dest`` (``convnp.files.atomic_write``: fsynced,
    then renamed into place) only when the checksum matches, so ``dest`` never holds a partial or wrong
    file. ``timeout``: seconds each connect or read may wait; ``deadline``: seconds the whole download may
    take; ``max_bytes``: a larger response (declared or actual) is cut off and rejected before it fills the
    disk; ``progress``: True/False forces the progress bar on or off (default: on when stderr is a
    terminal). Raises ``DownloadError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write_checked(file):
        bar = _progress_bar(dest.name, progress)
        try:
            actual_md5 = _stream_to_file(url, file, timeout, deadline, max_bytes, bar)
        finally:
            if bar is not None:
                bar.close()
        if actual_md5 != md5:  # raised inside atomic_write: the temporary file is removed, dest untouched
            raise DownloadError(f"{url}: checksum mismatch: expected md5 {md5}, got {actual_md5}")

    return atomic_write(dest, write_checked)


def _progress_bar(name, progress):
    """A tqdm bar in bytes for downloading ``name`` (its total set once the server declares a size), or
    None: progress off, or None and stderr not a terminal.  Without tqdm a forced bar is one line."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        print(f"downloading {name} (no progress bar: pip install 'convnp[tools]' for one)", file=sys.stderr,
              flush=True)
        return None
    return tqdm(desc=f"downloading {name}", unit="B", unit_scale=True, unit_divisor=1024, leave=True)


def _stream_to_file(url, file, timeout, deadline=DOWNLOAD_DEADLINE_S, max_bytes=MAX_DOWNLOAD_BYTES, bar=None):
    """Copy ``url`` into the open ``file`` in chunks; returns the MD5 hex digest of what was copied.

    Each socket operation waits at most ``timeout`` s; between reads the overall ``deadline`` is checked
    (``read1`` returns what one socket read brings, so a trickling server is noticed); at most
    ``max_bytes`` are written.  ``bar``: a tqdm bar advanced by each chunk (None: none)."""
    digest = hashlib.md5()
    start = time.monotonic()
    written = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
                raise DownloadError(f"{url}: the server offers {int(declared):,} bytes, more than the "
                                    f"{max_bytes:,} expected; not downloaded")
            if bar is not None and declared is not None and declared.strip().isdigit():
                bar.reset(total=int(declared))
            while True:
                if time.monotonic() - start > deadline:
                    raise DownloadError(f"{url}: not complete after the {deadline:g} s deadline "
                                        f"({written:,} bytes received); the server is too slow")
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                if written + len(chunk) > max_bytes:
                    raise DownloadError(f"{url}: the response is larger than the {max_bytes:,} bytes expected; "
                                        f"cut off and rejected")
                digest.update(chunk)
                file.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise DownloadError(f"{url}: timed out after {timeout:g} s") from None
        raise DownloadError(f"{url}: {error.reason}") from None
    except TimeoutError:
        raise DownloadError(f"{url}: timed out after {timeout:g} s while reading") from None
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"{url}: {type(error).__name__}: {error}") from None
    return digest.hexdigest()


def fetch(dataset_name, files, mirrors=None, root=None, download=True):
    """Paths of ``files`` ({file name: md5}) in ``root / dataset_name``, downloading missing ones.

    ``mirrors`` defaults to ``MIRRORS[dataset_name]``; ``root`` to ``data_dir()``. Each missing file is
    tried on every mirror in turn. When a file cannot be had, raises ``FileNotFoundError`` listing the
    full paths of every missing file and why each download failed.
    """
    root = data_dir() if root is None else Path(root)
    folder = root / dataset_name
    paths = [folder / name for name in files]
    missing = [path for path in paths if not path.exists()]
    if not missing:
        return paths
    if not download:
        reason = "downloading is off (download=False)"
        raise FileNotFoundError(_missing_message(dataset_name, folder, missing, reason))
    mirrors = MIRRORS.get(dataset_name, []) if mirrors is None else mirrors
    sizes = EXPECTED_SIZES.get(dataset_name, {})
    for index, path in enumerate(missing):
        failures = _download_from_mirrors(path, files[path.name], mirrors,
                                          sizes.get(path.name, MAX_DOWNLOAD_BYTES))
        if failures:
            reason = "every download failed:\n" + "\n".join(f"  {failure}" for failure in failures)
            raise FileNotFoundError(_missing_message(dataset_name, folder, missing[index:], reason))
    return paths


def _download_from_mirrors(path, md5, mirrors, max_bytes=MAX_DOWNLOAD_BYTES):
    """Try each mirror for ``path.name``; returns the list of failure messages (empty on success)."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + path.name
        try:
            download(url, path, md5, max_bytes=max_bytes)
            return []
        except OSError as error:
            failures.append(str(error))
    return failures or ["no download mirrors are known for this dataset"]


def _missing_message(dataset_name, folder, missing, reason):
    env = os.environ.get("CONVNP_DATA")
    env_note = f"CONVNP_DATA={env}" if env else "CONVNP_DATA is not set, so the per-user cache is used"
    lines = [
        f"{dataset_name}: {len(missing)} file(s) missing and {reason}",
        f"Put these files in {folder}:",
        *(f"  {path}" for path in missing),
        f"The data folder is chosen by the CONVNP_DATA environment variable ({env_note}).",
    ]
    return "\n".join(lines)
