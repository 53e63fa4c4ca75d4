"""Streaming reader: every format, per-row errors kept in place, whole-file problems raised at open."""

from __future__ import annotations

import bz2
import gzip
import itertools
import json
import random
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clsrun.runtime.errors import InputError
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.readers import ReadProgress, RecordChunk, open_records

TEXTS = ["good", "", "  ", "bad", None]
EXPECTED_ERRORS = ["", "empty or whitespace-only text", "empty or whitespace-only text", "", "null text"]


def _all(path: Path, **kw: object) -> RecordChunk:
    chunks = list(open_records(path, ReadOptions(**kw)).chunks())  # type: ignore[arg-type]
    texts: list[str | None] = []
    errors: list[str] = []
    ids: list[str | None] = []
    for c in chunks:
        texts += c.texts
        errors += c.errors
        ids += c.ids or []
    return RecordChunk(0, ids or None, texts, errors)


def _write(path: Path) -> Path:
    name = path.name
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    if ".jsonl" in name:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    elif ".parquet" in name:
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    else:
        sep = "\t" if ".tsv" in name else ","
        quote = "" if ".tsv" in name else '"'  # TSV has no quoting (read so by default)
        lines = ["id" + sep + "text"] + [
            f"r{i}{sep}{quote}{t or ''}{quote}" if t is not None else f"r{i}{sep}"
            for i, t in enumerate(TEXTS)
        ]
        data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.jsonl", "in.csv.gz", "in.jsonl.gz", "in.parquet"])
def test_every_format_keeps_every_row_with_its_error(tmp_path: Path, name: str) -> None:
    got = _all(_write(tmp_path / name), id_col="id")
    assert got.ids == [f"r{i}" for i in range(len(TEXTS))]
    assert got.texts == ["good", None, None, "bad", None]
    expected = list(EXPECTED_ERRORS)
    if ".csv" in name or ".tsv" in name:
        expected[4] = "empty or whitespace-only text"  # CSV has no null: an empty cell is an empty text
    assert got.errors == expected


def test_undecodable_bytes_fail_only_their_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text\nfine\n\xff\xfe oops\nalso fine\n")
    got = _all(path)
    assert got.texts == ["fine", None, "also fine"]
    assert got.errors[1].startswith("undecodable bytes")


def test_jsonl_value_that_is_not_a_string_and_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": 5}\nnot json\n{"other": 1}\n[1]\n\xff\n42\n-3.5e1\n')
    got = _all(path)
    assert got.texts[0] == "ok" and all(t is None for t in got.texts[1:])
    assert got.errors[1] == "text is a JSON int, not a string"
    assert got.errors[2].startswith("invalid JSON")
    assert got.errors[3] == "no 'text' field"
    assert got.errors[4] == "line is a JSON list, not an object"
    assert got.errors[5].startswith("undecodable bytes")
    assert got.errors[6:] == ["line is a JSON int, not an object", "line is a JSON float, not an object"]


def test_field_over_the_size_cap_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("text\nshort\n" + "x" * 5000 + "\nshort\n", encoding="utf-8")
    got = _all(path, max_text_bytes=1000)
    assert got.texts == ["short", None, "short"]
    assert "size cap" in got.errors[1]


def test_one_column_csv_keeps_empty_lines_as_rows(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("text\na\n\nb\n", encoding="utf-8")
    assert _all(path).texts == ["a", None, "b"]


def test_quoted_newlines_and_chunks_with_skip(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("text\n" + "".join(f'"row {i}\nline two"\n' for i in range(3000)), encoding="utf-8")
    stream = open_records(path, ReadOptions(block_bytes=4096, max_text_bytes=64))
    chunks = list(stream.chunks(skip=1234))
    assert chunks[0].start == 1234
    texts = [t for c in chunks for t in c.texts]
    assert texts[0] == "row 1234\nline two" and len(texts) == 3000 - 1234


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("nocol.csv", b"body\nhello\n", r"no column 'text'; columns are 'body'"),
        ("empty.csv", b"", "Empty CSV file"),
        ("blank.csv", b"\r\n\n\n", r"Empty CSV file: no header line \(only blank lines\)"),
        ("garbage.parquet", b"not parquet at all", "cannot be read as parquet"),
        ("csvinside.jsonl", b"text\nhello\n", "not JSON Lines"),
        ("notes.txt", b"hello", "unknown file type 'txt'"),
    ],
)
def test_whole_file_problems_raise_at_open(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        open_records(path)


def test_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    """The header is the first line that is not blank (as Python's csv reader takes it): reading the blank
    line as the header said the file had no columns at all."""
    path = tmp_path / "late.csv"
    path.write_bytes(b"\xef\xbb\xbf\r\n\nid,text\n1,a\n2,b\n")
    got = _all(path, id_col="id")
    assert got.texts == ["a", "b"] and got.ids == ["1", "2"]
    assert read_labelled(path, label_col="id").labels == ["1", "2"]


def _refused_by_both_readers(tmp_path: Path, cases: list[tuple[str, bytes, str]]) -> None:
    """Each ``(name, content, match)``: written as ``name``, refused by scoring's reader and by training's
    with an :class:`InputError` matching ``match``."""
    for name, content, match in cases:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=match):
            open_records(path)
        with pytest.raises(InputError, match=match):
            read_labelled(path)


def test_compressed_or_parquet_bytes_under_a_text_name_are_named(tmp_path: Path) -> None:
    """A file whose name says text but whose bytes are compressed (or Parquet) is refused with what it is,
    not read as a table whose one column is named with the compressed bytes; text that merely starts like
    a signature is read as text."""
    table = b"text\nhello\n"
    parquet = tmp_path / "real.parquet"
    pq.write_table(pa.table({"text": ["hello"]}), parquet)
    cases = [
        ("a.csv", gzip.compress(table), "gzip-compressed, but its name does not end in .gz"),
        ("a.jsonl", gzip.compress(b'{"text": "hello"}\n'), "gzip-compressed"),
        ("b.csv", bz2.compress(table), "bzip2-compressed: decompress it first"),
        ("c.tsv", parquet.read_bytes(), "a Parquet file, but its name does not end in .parquet"),
        # the other way round: gzip's own words were "Not a gzipped file (b'te')"
        ("g.csv.gz", table, r"its name ends in \.gz, but it is not gzip-compressed: name it g\.csv$"),
        ("h.parquet.gz", parquet.read_bytes(), r"not gzip-compressed: name it h\.parquet$"),
    ]
    _refused_by_both_readers(tmp_path, cases)
    for name, content in (("d.csv", b"BZh,text\n1,hello\n"), ("e.csv", b"PAR1,text\n1,hello\n")):
        path = tmp_path / name
        path.write_bytes(content)
        assert _all(path).texts == ["hello"]


def test_utf16_and_utf32_text_is_refused_with_the_conversion_to_make(tmp_path: Path) -> None:
    table = "id,text\n1,héllo\n"
    cases = [
        ("a.csv", table.encode("utf-16"), "UTF-16-encoded text: convert it to UTF-8 first"),
        ("b.csv", table.encode("utf-16-le"), r"iconv -f UTF-16LE -t UTF-8 .*b\.csv > b\.utf8\.csv"),
        ("c.tsv", table.replace(",", "\t").encode("utf-16-be"), "UTF-16BE-encoded"),
        ("d.jsonl", '{"text": "hi"}\n'.encode("utf-32"), "UTF-32-encoded"),
    ]
    _refused_by_both_readers(tmp_path, cases)
    # gzipped, the same checks apply to what the .gz holds (a UTF-16 .jsonl.gz made rows of byte pairs)
    gzipped = [
        (
            "f.jsonl.gz",
            gzip.compress('{"text": "hi"}\n'.encode("utf-16")),
            r"once decompressed, this \.gz file "
            r"is UTF-16-encoded text: .*\(gunzip -c .*f\.jsonl\.gz \| iconv -f UTF-16 -t UTF-8 > f\.utf8\.jsonl\)",
        ),
        ("g.csv.gz", gzip.compress(gzip.compress(table.encode())), "gzip-compressed twice"),
        (
            "h.csv.gz",
            gzip.compress(bz2.compress(table.encode())),
            "once decompressed, this .gz file is bzip2",
        ),
    ]
    _refused_by_both_readers(tmp_path, gzipped)
    utf8 = tmp_path / "e.csv"  # UTF-8, with its byte order mark: read as it is
    utf8.write_bytes(b"\xef\xbb\xbf" + table.encode())
    assert _all(utf8).texts == ["héllo"]


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    data = gzip.compress(("text\n" + "".join(f"row {i} of many\n" for i in range(50000))).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.csv\.gz: cannot be read as csv"):
        for _ in open_records(path, ReadOptions(block_bytes=1 << 16, max_text_bytes=1024)).chunks():
            pass


def test_missing_id_column_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.csv")
    with pytest.raises(InputError, match="no column 'key'"):
        open_records(path, ReadOptions(id_col="key"))
    with pytest.raises(InputError, match="file not found"):
        open_records(tmp_path / "nope.csv")
    (tmp_path / "dangling.csv").symlink_to("gone.csv")
    with pytest.raises(
        InputError, match=r"file not found \(a symbolic link to gone\.csv, which does not exist"
    ):
        open_records(tmp_path / "dangling.csv")
    (tmp_path / "a.csv").symlink_to("b.csv")
    (tmp_path / "b.csv").symlink_to("a.csv")
    with pytest.raises(InputError, match=r"a\.csv: a loop of symbolic links"):
        open_records(tmp_path / "a.csv")


def test_read_labelled_still_drops_unusable_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("label,text\npos,good\nneg,\n,bad\nneg,bad\n", encoding="utf-8")
    data = read_labelled(path)
    assert data.texts == ["good", "bad"] and data.labels == ["pos", "neg"]


def test_labelled_json_lines_read_only_their_two_fields(tmp_path: Path) -> None:
    """A lone surrogate escape in one line failed the whole file for train and eval (predict kept every
    row): the record is left out and counted, and only when it is in the text or the label. A key of its
    own on every line made a column each (rows x keys of memory); the missing-column message still lists
    the file's fields."""
    lines = [
        {"text": "good", "label": "pos", "id_0": 1},
        {"text": "bad\ud800", "label": "neg", "id_1": 2},  # the text: left out
        {"text": "fine", "label": "pos", "note": "\udfff", "id_2": 3},  # a field not read: kept
        {"text": "bad", "label": "neg", "id_3": 4},
    ]
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    said: list[str] = []
    data = read_labelled(path)
    assert data.texts == ["good", "fine", "bad"] and data.labels == ["pos", "pos", "neg"]
    assert any("left out 1" in line and "row 1: not valid Unicode" in line for line in data.left_out), (
        data.left_out
    )
    from clsrun.runtime.tables import read_table

    table = read_table(path, reads=("text", "label"), said=said)
    assert table.column_names == ["text", "label"]
    with pytest.raises(InputError, match=r"no column 'body'; columns are 'text', 'label', 'id_0', 'id_1'"):
        read_labelled(path, text_col="body")


def test_parquet_uuid_ids_are_written_as_uuids_and_fixed_size_binary_as_escaped_bytes(tmp_path: Path) -> None:
    """Parquet's UUID type (arrow.uuid over fixed_size_binary(16)) failed the whole file ("Invalid UTF8")."""
    import uuid

    raw = [uuid.UUID(int=i * 0x1234567).bytes for i in (1, 2)] + [None]
    ids = pa.array(raw, pa.binary(16))
    for name, column in (("ext.parquet", ids.cast(pa.uuid())), ("fsb.parquet", ids)):
        pq.write_table(pa.table({"text": ["a", "b", "c"], "id": column}), tmp_path / name)
        got = _all(tmp_path / name, id_col="id").ids
        if name == "ext.parquet":
            assert got == [str(uuid.UUID(bytes=b)) for b in raw[:2]] + [None]
        else:
            assert got[2] is None and all(i is not None and i.isprintable() for i in got[:2])  # no raw NUL
            assert got[0] == "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw[0])


def test_integers_of_any_length_are_read_alike_by_every_reader(tmp_path: Path) -> None:
    """An integer past Python's 4,300-digit limit in every line of the first block made predict refuse the
    file (its first-block check used json.loads) and train/eval leave such rows out as invalid JSON."""
    big = "9" * 5000
    path = tmp_path / "big.jsonl"
    path.write_text(
        "".join(f'{{"id": {big}, "text": "row {i}", "label": {i % 2}, "n": {big}}}\n' for i in range(4))
    )
    chunk = _all(path, id_col="id")
    assert chunk.texts == [f"row {i}" for i in range(4)] and chunk.ids == [big] * 4 and not any(chunk.errors)
    data = read_labelled(path)
    assert data.texts == [f"row {i}" for i in range(4)] and data.labels == ["0", "1", "0", "1"]
    numbers = tmp_path / "numbers.jsonl"  # a number is no text, in every reader
    numbers.write_text('{"text": 5, "label": "a"}\n{"text": "five", "label": 1.0}\n')
    assert read_labelled(numbers).texts == ["five"] and read_labelled(numbers).labels == ["1"]


def test_a_label_is_one_class_however_a_whole_number_is_spelt_and_nested_labels_are_refused(
    tmp_path: Path,
) -> None:
    from clsrun.runtime.labelled import label_text

    assert [label_text(v) for v in ("1", "1.0", 1, 1.0, " 1. ")] == ["1"] * 5
    assert [label_text(v) for v in ("+1", "+1.0", "01", "01.00", "-0.0")] == ["+1", "+1", "01", "01", "-0"]
    assert [label_text(v) for v in (-1.0, True, "1.5", "", float("nan"))] == ["-1", "true", "1.5", None, None]
    assert [label_text(v) for v in ("po\x00s", "a\nb", " pos\n", "né\u00a0x")] == [
        None,
        None,
        "pos",
        "né\u00a0x",
    ]
    for name, labels in (("list.parquet", [[0], [1]]), ("struct.parquet", [{"a": 0}, {"a": 1}])):
        pq.write_table(pa.table({"text": ["good", "bad"], "label": labels}), tmp_path / name)
        with pytest.raises(InputError, match=r"column 'label' holds .*, not labels \(one value per row\)"):
            read_labelled(tmp_path / name)


def test_a_quoted_tsv_header_names_the_option_that_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text('"id"\t"text"\n"1"\t"good"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"no column 'text'; .*--tsv-quotes reads quoted \.tsv cells"):
        open_records(path)
    assert _all(path, tsv_quotes=True).texts == ["good"]


def test_a_text_column_of_numbers_in_a_csv_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In CSV every column is text, so an id column named as the text is read: one warning names it."""
    path = tmp_path / "ids.csv"
    path.write_text("id,label,text\n" + "".join(f"{i},{'ab'[i % 2]},word {i}\n" for i in range(20)), "utf-8")
    assert len(read_labelled(path, text_col="id").texts) == 20
    assert f"{path}: 20 of 20 texts in column 'id' are numbers: is it the right column?" in caplog.text
    caplog.clear()
    read_labelled(path)  # real texts (with a number in each): no warning
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("label,text\n" + "a,1.5\nb,-2\na,3e4\nb,fine\n", encoding="utf-8")
    read_labelled(mixed)  # 3 of 4: under the share
    assert "are numbers" not in caplog.text
    with open_records(path, ReadOptions(text_col="id")):  # scoring says it at open, from the first rows
        pass
    assert f"{path}: 20 of 20 texts of the first rows in column 'id' are numbers" in caplog.text


def test_labels_nan_is_missing_a_number_is_one_label_and_case_twins_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "l.parquet"
    labels = [1.0, float("nan"), 0.0, None, 1.0]
    pq.write_table(pa.table({"label": labels, "text": ["a", "b", "c", "d", "e"]}), path)
    data = read_labelled(path)
    assert data.texts == ["a", "c", "e"] and data.labels == ["1", "0", "1"]  # NaN and null left out alike
    mixed = tmp_path / "l.jsonl"
    rows = [{"label": v, "text": "t"} for v in (1, 1.0, "1", " 1 ", 0.5, NAN_JSON)]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert read_labelled(mixed).labels == ["1", "1", "1", "1", "0.5"]
    twins = tmp_path / "c.csv"
    twins.write_text("label,text\nneg,a\nNEG,b\npos,c\n", encoding="utf-8")
    assert read_labelled(twins).labels == ["neg", "NEG", "pos"]  # kept apart, as written, but said
    assert (
        "labels that differ only in letter case, width or in how a number is written are separate classes: "
        "NEG / neg" in caplog.text
    )
    wide = tmp_path / "w.csv"
    wide.write_text("label,text\npos,a\nｐｏｓ,b\nneg,c\n", encoding="utf-8")  # full-width, as an IME types
    caplog.clear()
    assert read_labelled(wide).labels == ["pos", "ｐｏｓ", "neg"]
    assert "separate classes: pos / ｐｏｓ" in caplog.text or "separate classes: ｐｏｓ / pos" in caplog.text
    numbers = tmp_path / "n.csv"
    numbers.write_text("label,text\n+1,a\n1,b\n-1,c\n", encoding="utf-8")
    assert read_labelled(numbers).labels == ["+1", "1", "-1"]
    assert "separate classes: +1 / 1" in caplog.text


NAN_JSON = float("nan")  # json.dumps writes NaN, which Python's reader reads back as a float NaN


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_column_named_twice_is_refused_not_guessed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"dup{suffix}"
    if suffix == ".csv":
        path.write_text("text,text,label\ngood,bad,pos\n", encoding="utf-8")
    else:
        table = pa.Table.from_arrays(
            [pa.array(["good"]), pa.array(["bad"]), pa.array(["pos"])], ["text", "text", "label"]
        )
        pq.write_table(table, path)
    for read in (lambda: open_records(path), lambda: read_labelled(path)):
        with pytest.raises(InputError, match="column 'text' is the name of more than one column"):
            read()
    open_records(path, ReadOptions(text_col="label")).close()  # the duplicate is not read: no objection


def test_an_id_column_with_an_empty_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "index.csv"
    path.write_text(",text\nx,good\ny,bad\n", encoding="utf-8")  # pandas' to_csv with its index
    assert _all(path, id_col="").ids == ["x", "y"]
    lines = tmp_path / "e.jsonl"
    lines.write_text('{"": "k1", "text": "a"}\n{"": "k2", "text": "b"}\n', encoding="utf-8")
    assert _all(lines, id_col="").ids == ["k1", "k2"]


def test_jsonl_blank_lines_are_not_records_even_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "sparse.jsonl"
    path.write_text("\n" * 200_000 + '{"text": "a"}\n' + "\n" * 200_000 + '{"text": "b"}\n', encoding="utf-8")
    assert _all(path, block_bytes=1024, max_text_bytes=64).texts == ["a", "b"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert list(open_records(empty).chunks()) == []


def test_id_column_may_be_the_text_column(tmp_path: Path) -> None:
    got = _all(_write(tmp_path / "in.csv"), id_col="text")
    assert got.ids is not None and got.ids[0] == "good"


# -- progress(): how far the reading got, for the progress bar ---------------------------------------


def _varied(path: Path, n: int) -> Path:
    """``n`` rows of random letters, 20 to 200 a row (random, so gzip still leaves megabytes on disk)."""
    rng = random.Random(0)
    texts = ["".join(rng.choices(string.ascii_lowercase + " ", k=rng.randint(20, 200))) for _ in range(n)]
    if ".jsonl" in path.name:
        data = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)).encode()
    else:
        data = ("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts))).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize(
    ("name", "tolerance"),
    # Rows vary in length, so a quarter of the file predicts the rest within about 1%; .gz CSV adds the
    # compression ratio of the file's start, .gz JSONL the decompressor reading a little ahead.
    [("in.csv", 0.02), ("in.jsonl", 0.02), ("in.csv.gz", 0.05), ("in.jsonl.gz", 0.05)],
)
def test_total_is_estimated_from_bytes_then_exact_at_the_end(
    tmp_path: Path, name: str, tolerance: float
) -> None:
    n = 40_000  # about 4.4 MB of text: some 70 blocks of 64 KiB
    path = _varied(tmp_path / name, n)
    stream = open_records(path, ReadOptions(block_bytes=1, max_text_bytes=1024))  # blocks of 64 KiB + 1 KiB
    seen = [stream.progress() for _ in stream.chunks()]  # each after the chunk just handed out was read
    assert len(seen) > 40
    for before, now in itertools.pairwise(seen):
        assert 0 < now.fraction <= 1 and now.fraction >= before.fraction
        assert now.total_rows is not None and now.total_rows >= now.rows > before.rows
        assert not now.exact  # the last chunk is read, but not yet the end of the file
    errors = [abs(p.total_rows / n - 1) for p in seen if p.rows >= n // 4 and p.total_rows]
    assert max(errors) <= tolerance, f"estimate off by {max(errors):.1%} after a quarter of {name}"
    assert stream.progress() == ReadProgress(n, 1.0, n, True)


def test_gzip_csv_estimate_is_never_past_what_was_read(tmp_path: Path) -> None:
    # Long random rows, then short repetitive ones that compress far better: the compression ratio of the
    # start would put the later rows past the compressed bytes read, so the estimate stops at the position
    # (a bytes-based estimate cannot foresee the short rows: it rises towards the true count as they come).
    path = _varied(tmp_path / "in.csv", 5_000)
    data = path.read_bytes() + "".join(f"{i},same text again\n" for i in range(5_000, 200_000)).encode()
    path = tmp_path / "mixed.csv.gz"
    path.write_bytes(gzip.compress(data))
    stream = open_records(path, ReadOptions(block_bytes=1, max_text_bytes=1024))
    seen = [stream.progress() for _ in stream.chunks()]
    assert all(0 < p.fraction <= 1 and p.total_rows and p.total_rows >= p.rows for p in seen)
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    assert stream.progress() == ReadProgress(200_000, 1.0, 200_000, True)


def test_estimate_counts_the_rows_a_resume_skips(tmp_path: Path) -> None:
    path = _varied(tmp_path / "in.csv", 20_000)
    stream = open_records(path, ReadOptions(block_bytes=1, max_text_bytes=1024))
    assert sum(len(c) for c in stream.chunks(skip=15_000)) == 5_000
    assert stream.progress() == ReadProgress(20_000, 1.0, 20_000, True)


def test_parquet_total_is_the_row_count_in_its_metadata(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(5000)]}), path, row_group_size=700)
    stream = open_records(path, ReadOptions(block_bytes=1, max_text_bytes=128 * 1024))  # chunks of 1,536 rows
    first = stream.progress()
    assert first.exact and first.total_rows == 5000 and first.rows == 1536 and first.fraction == 1536 / 5000
    fractions = [stream.progress().fraction for _ in stream.chunks()]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert stream.progress() == ReadProgress(5000, 1.0, 5000, True)


@pytest.mark.parametrize("name", ["in.csv", "in.tsv"])
def test_a_ragged_row_beside_bytes_that_are_not_utf8_fails_only_those_rows(tmp_path: Path, name: str) -> None:
    sep = b"\t" if name.endswith(".tsv") else b","
    quoted = b'"a, b\nc ""d"""' if sep == b"," else b"a b c"
    body = [
        b"k0" + sep + b"good",
        b"k1" + sep + quoted,
        b"k2" + sep + b"x" + sep + b"extra",
        b"",
        b"k3" + sep + b"ok",
    ]
    clean = tmp_path / f"clean{name[2:]}"
    clean.write_bytes(
        b"id" + sep + b"text\n" + b"\n".join([*body, b"k4" + sep + b"fine", b"k5" + sep + b"end"]) + b"\n"
    )
    dirty = tmp_path / name
    dirty.write_bytes(
        b"id" + sep + b"text\n" + b"\n".join([*body, b"k4" + sep + b"f\xffne", b"k5" + sep + b"end"]) + b"\n"
    )
    want, got = _all(clean, id_col="id"), _all(dirty, id_col="id")  # pyarrow's path, then the fallback
    assert len(got.texts) == len(want.texts) == 6  # the empty line is not a record (two columns)
    assert got.ids == want.ids and got.errors[:4] == want.errors[:4] and got.texts[:4] == want.texts[:4]
    assert (
        "2 fields, the header has 2" not in want.errors[2] and "3 fields, the header has 2" in want.errors[2]
    )
    assert got.texts[4] is None and "not UTF-8" in got.errors[4]  # the bad bytes: still its own row's error
    assert got.texts[5] == want.texts[5] == "end"


def test_parquet_gz_reads_as_its_parquet_and_leaves_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    plain = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"label": ["pos", "neg"] * 1500, "text": [f"t{i}" for i in range(3000)]}),
        plain,
        row_group_size=700,
    )
    packed = tmp_path / "in.parquet.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    got, want = _all(packed), _all(plain)
    assert got.texts == want.texts and len(got.texts) == 3000
    assert read_labelled(packed).labels == read_labelled(plain).labels
    with open_records(packed) as stream:
        # Unpacked into a file without a name: a named copy outlived a process killed outright (SIGKILL,
        # the OOM killer), a whole copy of the input in $TMPDIR per killed attempt.
        assert stream.progress().total_rows == 3000 and not list(scratch.iterdir())
    assert not list(scratch.iterdir())
    broken = tmp_path / "bad.parquet.gz"
    broken.write_bytes(b"\x1f\x8b but not gzip at all")
    with pytest.raises(InputError, match=r"bad\.parquet\.gz: cannot be read as parquet"):
        open_records(broken)


@pytest.mark.parametrize("kind", ["list", "struct"])
def test_a_parquet_id_column_of_nested_values_is_refused_at_open(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "in.parquet"
    ids = [[1], [2]] if kind == "list" else [{"a": 1}, {"a": 2}]
    pq.write_table(pa.table({"text": ["good", "bad"], "id": ids}), path)
    with pytest.raises(
        InputError, match=rf"column 'id' holds {kind}<.*>; an id column holds text or numbers"
    ):
        open_records(path, ReadOptions(id_col="id"))
    assert _all(path).texts == ["good", "bad"]  # without --id-col the column is not read


@pytest.mark.parametrize("how", ["truncated", "removed"])
def test_a_file_changed_while_it_is_being_opened_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import clsrun.runtime.readers as readers

    path = _write(tmp_path / "in.csv")
    real = readers.input_fingerprint

    def fingerprint_then_change(p: Path) -> dict[str, object]:
        taken = real(p)
        if how == "truncated":  # what `cp other in.csv` does first
            p.write_bytes(b"")
        else:
            p.unlink()
        return taken

    monkeypatch.setattr(readers, "input_fingerprint", fingerprint_then_change)
    expected = (
        "was written to while it was being opened" if how == "truncated" else "removed while it was being"
    )
    with pytest.raises(InputError, match=expected):
        open_records(path)


@pytest.mark.parametrize("name", ["in.csv", "in.jsonl"])
def test_a_file_cut_under_the_reader_is_refused_at_its_early_end(tmp_path: Path, name: str) -> None:
    """An upstream job rewriting the input (``> in.csv``, then the same rows) while it is read: the reader
    met an early end and the file was whole again before the check at publishing, which saw the same size
    and ends. The reader itself knows its end came before the bytes the file held when opened."""
    path = tmp_path / name
    rows = [{"text": f"row {i} " + "x" * 40} for i in range(20_000)]
    if name.endswith(".csv"):
        path.write_text("text\n" + "".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    whole = path.read_bytes()
    stream = open_records(path, ReadOptions(block_bytes=4096, max_text_bytes=1024))
    chunks = stream.chunks()
    next(chunks)  # the first block is read; the file is cut a little further on
    with path.open("r+b") as f:
        f.truncate(300_000)
    said = r"was written to while it was being read \(its end came at byte [\d,]+; it held [\d,]+ bytes when"
    with pytest.raises(InputError, match=said):
        list(chunks)
    path.write_bytes(whole)  # whole again: the check before publishing alone would not see it
    assert sum(len(c) for c in open_records(path).chunks()) == 20_000


def test_one_label_is_one_class_whatever_the_format_stores_it_as(tmp_path: Path) -> None:
    import decimal

    parquet = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table({
            "flag": [True, False],
            "f32": pa.array([0.1, 2.0], pa.float32()),
            "dec": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.00")], pa.decimal128(5, 2)),
            "raw": pa.array([b"neg", b"pos"], pa.binary()),
            "text": pa.array([b"a", b"b"], pa.binary()),
        }),
        parquet,
    )  # fmt: skip
    lines = tmp_path / "same.jsonl"
    lines.write_text('{"flag": true, "f32": 0.1, "dec": 1.5, "text": "a"}\n', encoding="utf-8")
    csv_file = tmp_path / "same.csv"
    csv_file.write_text("flag,f32,dec,text\ntrue,0.1,1.5,a\n", encoding="utf-8")
    assert read_labelled(parquet, label_col="flag").labels == ["true", "false"]
    assert read_labelled(parquet, label_col="f32").labels == ["0.1", "2"]
    assert read_labelled(parquet, label_col="dec").labels == ["1.5", "2"]
    assert read_labelled(parquet, label_col="raw").labels == ["neg", "pos"]
    assert read_labelled(parquet, label_col="raw").texts == ["a", "b"]  # binary text decoded, not "b'a'"
    for other in (lines, csv_file):
        for col, want in (("flag", "true"), ("f32", "0.1"), ("dec", "1.5")):
            assert read_labelled(other, label_col=col).labels == [want]
    nfd = tmp_path / "nfd.csv"
    nfd.write_text("label,text\ncafe\u0301,a\ncaf\u00e9,b\n", encoding="utf-8")
    assert read_labelled(nfd).labels == ["caf\u00e9", "caf\u00e9"]  # e + accent and é: one class


def test_texts_read_for_training_follow_predict_and_labels_must_be_one_value(tmp_path: Path) -> None:
    lines = tmp_path / "odd.jsonl"
    rows = [
        {"label": "even", "text": 42},  # predict: an error row (a number is no text), so not trained on
        {"label": [1, 2], "text": "list label"},
        {"label": {"k": 1}, "text": "dict label"},
        {"label": "odd", "text": "kept"},
        {"label": "even", "text": "kept too"},
    ]
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = read_labelled(lines)
    assert data.texts == ["kept", "kept too"] and data.labels == ["odd", "even"]
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"label": ["a", "b"], "text": [1, 2]}), numbers)
    with pytest.raises(InputError, match="column 'text' holds int64, not text"):
        read_labelled(numbers)
    bad_utf8 = tmp_path / "bytes.parquet"
    pq.write_table(
        pa.table({"label": ["a", "b"], "text": pa.array([b"ok", b"\xff\xfe"], pa.binary())}), bad_utf8
    )
    assert read_labelled(bad_utf8).texts == ["ok"]
    with pytest.raises(InputError, match="--text-col and --label-col both name column 'text'"):
        read_labelled(lines, label_col="text")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_delimited_labelled_file_leaves_out_only_the_rows_that_are_not_utf8(
    tmp_path: Path, suffix: str
) -> None:
    """One cell that is not UTF-8 (a row pasted from a GBK file) costs its row, counted, as predict makes it
    one error row: reading the file as strings had refused all of it."""
    d = b"," if suffix == ".csv" else b"\t"
    rows = [b"label" + d + b"text" + d + b"note", b"pos" + d + b"\xc4\xe3\xba\xc3" + d + b"x",
            b"\xffneg" + d + b"bad label" + d + b"x", b"neg" + d + b"fine" + d + b"\xfe note",
            b"pos" + d + b"good" + d + b"x"]  # fmt: skip
    path = tmp_path / f"mixed{suffix}"
    path.write_bytes(b"\n".join(rows) + b"\n")
    data = read_labelled(path)
    assert data.texts == ["fine", "good"] and data.labels == ["neg", "pos"]
    assert data.left_out and "left out 2 row(s)" in data.left_out[0] and "row 0" in data.left_out[0]


@pytest.mark.parametrize(
    "body", ['[\n  {"text": "a"},\n  {"text": "b"}\n]\n', '[{"text": "a"}, {"text": "b"}]\n']
)
def test_a_json_array_is_refused_not_read_as_lines(tmp_path: Path, body: str) -> None:
    path = tmp_path / "records.json"
    path.write_text(body, encoding="utf-8")
    for read in (lambda: open_records(path), lambda: read_labelled(path)):
        with pytest.raises(InputError, match=r"a JSON array, not JSON Lines.*jq -c '\.\[\]' records\.json"):
            read()


def test_a_byte_order_mark_on_a_line_of_its_own_is_a_blank_line_of_json_lines(tmp_path: Path) -> None:
    """A BOM belongs to the file, not to a record: a BOM-only file is an empty file (not "not JSON Lines"),
    and a BOM followed by a line end is no error row."""
    alone, first = tmp_path / "bom.jsonl", tmp_path / "bom_line.jsonl"
    alone.write_bytes(b"\xef\xbb\xbf")
    first.write_bytes(b'\xef\xbb\xbf\n{"text": "a"}\n')
    assert _all(alone).texts == []
    got = _all(first)
    assert got.texts == ["a"] and got.errors == [""]


def test_json_lines_whose_first_record_is_an_array_keep_it_as_an_error_row(tmp_path: Path) -> None:
    """Only a file that is one array is refused: a first line that is a whole array followed by records is
    JSON Lines with one bad record, as it would be anywhere else in the file."""
    path = tmp_path / "x.jsonl"
    path.write_text('[1]\n{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    got = _all(path)
    assert got.texts == [None, "a", "b"] and got.errors[0] == "line is a JSON list, not an object"


def test_standard_input_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="-: clsrun does not read standard input"):
        open_records("-")


def test_a_full_temporary_folder_while_unpacking_parquet_gz_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from clsrun.runtime.errors import StorageError

    path = tmp_path / "t.parquet.gz"
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["a", "b"]}), buffer)
    path.write_bytes(gzip.compress(buffer.getvalue().to_pybytes()))
    real = tempfile.TemporaryFile

    class Full:  # the temporary file of a full disk: made, then every write fails
        def __init__(self, **kw: object) -> None:
            self._f = real(**kw)  # type: ignore[call-overload]

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    monkeypatch.setattr(tempfile, "TemporaryFile", Full)
    with pytest.raises(
        StorageError, match=r"unpacking t\.parquet\.gz into the temporary folder, \$TMPDIR\): no space"
    ):
        open_records(path)


def test_binary_ids_that_are_not_utf8_stay_apart(tmp_path: Path) -> None:
    path = tmp_path / "ids.parquet"
    ids = pa.array([b"\xff", b"\xfe", b"ok"], pa.binary())
    pq.write_table(pa.table({"id": ids, "text": ["a", "b", "c"]}), path)
    stream = open_records(path, ReadOptions(id_col="id"))
    with stream:
        chunk = next(stream.chunks())
    assert list(chunk.ids or []) == ["\\xff", "\\xfe", "ok"]


def test_jsonl_number_ids_are_kept_as_written_and_a_float_is_no_text(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    lines = [
        '{"id": 1.50, "text": "a"}',
        '{"id": 1e5, "text": "b"}',
        '{"id": 12345678901234567890.0, "text": "c"}',
    ]
    lines += [
        '{"id": 12345678901234567891.0, "text": "d"}',
        '{"id": 7, "text": 2.5}',
        '{"id": true, "text": "e"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stream = open_records(path, ReadOptions(id_col="id"))
    with stream:
        chunk = next(stream.chunks())
    ids = list(chunk.ids or [])
    assert ids == ["1.50", "1e5", "12345678901234567890.0", "12345678901234567891.0", "7", "true"]
    assert chunk.errors[4] == "text is a JSON float, not a string" and list(chunk.texts)[:2] == ["a", "b"]


def test_jsonl_integers_and_nested_ids_are_kept_as_written_however_long(tmp_path: Path) -> None:
    path = tmp_path / "ints.jsonl"
    huge = "9" * 5000  # Python refuses to turn an integer of over 4,300 digits into an int
    lines = [
        '{"id": -0, "text": "a"}',
        f'{{"id": 3, "text": "b", "n": {huge}}}',
        f'{{"id": {huge}, "text": "c"}}',
        '{"id": [1.50, -0, {"k": 2}], "text": "d"}',
        '{"id": 007, "text": "e"}',  # not JSON (a leading zero): an error row, as before
        '{"id": 8, "text": 12}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_records(path, ReadOptions(id_col="id")) as stream:
        chunk = next(stream.chunks())
    assert list(chunk.ids or [])[:4] == ["-0", "3", huge, '[1.50, -0, {"k": 2}]']
    assert chunk.errors[:4] == ["", "", "", ""] and list(chunk.texts)[:4] == ["a", "b", "c", "d"]
    assert chunk.errors[4].startswith("invalid JSON")
    assert chunk.errors[5] == "text is a JSON int, not a string"
