"""Every physical record becomes exactly one row (Spark's PERMISSIVE mode), whatever is wrong with it.

Small files built in the test, one per class of bad input: rows with the wrong number of fields, a
field bigger than the read block, quotes left open, line ends and BOMs, over-long JSON lines, ids that
cannot be written, Parquet string encodings, and a tab-separated file named ``.csv``.
"""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clsrun.runtime.errors import InputError
from clsrun.runtime.input_files import ReadOptions
from clsrun.runtime.labelled import read_labelled
from clsrun.runtime.readers import open_records
from clsrun.runtime.tables import read_table

SMALL = ReadOptions(block_bytes=1, max_text_bytes=1024)  # blocks of 65 KiB: many blocks in a small file


def _rows(path: Path, options: ReadOptions = ReadOptions()) -> list[tuple[str | None, str | None, str]]:
    """``(id, text, error)`` of every row, in order."""
    out = []
    for chunk in open_records(path, options).chunks():
        ids = chunk.ids or [None] * len(chunk)
        out += list(zip(ids, chunk.texts, chunk.errors, strict=True))
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.csv.gz"])
@pytest.mark.parametrize("where", [3, 2500])  # in the first block, and many blocks into the file
def test_rows_with_too_many_or_too_few_fields_stay_in_place(tmp_path: Path, name: str, where: int) -> None:
    sep = b"\t" if ".tsv" in name else b","
    lines = [b"id" + sep + b"text"] + [b"r%d%sgood row %d" % (i, sep, i) for i in range(3000)]
    lines[1 + where] = b"r%d%sone%stoo many" % (where, sep, sep)
    lines[2 + where] = b"only-one-field"
    rows = _rows(_write(tmp_path / name, b"\n".join(lines) + b"\n"), ReadOptions(id_col="id", block_bytes=1))
    assert len(rows) == 3000
    assert rows[where] == (
        f"r{where}",
        None,
        f"row {where}: 3 fields, the header has 2",
    )  # id before the text
    assert rows[where + 1] == (
        None,
        None,
        f"row {where + 1}: 1 field, the header has 2",
    )  # no delimiter after
    good = [r for i, r in enumerate(rows) if i not in (where, where + 1)]
    assert all(r == (f"r{int(r[0][1:])}", f"good row {int(r[0][1:])}", "") for r in good)  # type: ignore[index]
    assert [int(r[0][1:]) for r in good] == [i for i in range(3000) if i not in (where, where + 1)]  # type: ignore[index]


@pytest.mark.parametrize("utf8", [True, False])  # pyarrow's handler; Python's reader (a block not all UTF-8)
def test_a_row_with_the_wrong_field_count_keeps_an_id_that_comes_before_the_text(
    tmp_path: Path, utf8: bool
) -> None:
    other = b"fine" if utf8 else b"caf\xe9"
    data = b'id,text,n\n"k,1",ok,1\nk2,a,b,c,1\nk3,' + other + b',1\nk4,short\n"k\n5",x,y,1\n'
    assert _rows(_write(tmp_path / "in.csv", data), ReadOptions(id_col="id")) == [
        ("k,1", "ok", ""),
        ("k2", None, "row 1: 5 fields, the header has 3"),
        ("k3", other.decode() if utf8 else None, "" if utf8 else "undecodable bytes (not UTF-8) at byte 3"),
        ("k4", None, "row 3: 2 fields, the header has 3"),
        ("k\n5", None, "row 4: 4 fields, the header has 3"),  # as written, as the good rows' ids
    ]
    # After the text column the id cannot be told from a shifted field: the row has none.
    late = _write(tmp_path / "late.csv", b"text,id\nok,1\nbad,2,3\n")
    assert _rows(late, ReadOptions(id_col="id")) == [
        ("1", "ok", ""),
        (None, None, "row 1: 3 fields, the header has 2"),
    ]


@pytest.mark.parametrize("name", ["in.csv", "in.parquet"])
def test_ids_keep_their_control_characters_and_never_merge(tmp_path: Path, name: str) -> None:
    """A CSV id's line feed or tab came back as the four characters ``\\x0a``, one id with a literal
    ``x\\x0ay`` in the output; a Parquet string id was kept as written. Both keep them now; only bytes that
    are not UTF-8 are escaped (the output is UTF-8)."""
    ids = ["x\ny", "x\\x0ay", "t\tu", "z\x00"]
    path = tmp_path / name
    if name.endswith(".csv"):
        quoted = ['"' + i + '"' for i in ids]
        _write(path, ("id,text\n" + "".join(f"{q},ok\n" for q in quoted)).encode() + b'"\xff\n",ok\n')
        ids.append("\\xff\n")
    else:
        bad = pa.array([*ids, None], pa.binary()).to_pylist()
        bad[-1] = b"\xff\n"
        ids.append("\\xff\n")
        strings = pa.array(bad, pa.binary()).view(pa.string())  # a writer that did not check its UTF-8
        pq.write_table(pa.table({"id": strings, "text": ["ok"] * len(ids)}), path)
    rows = _rows(path, ReadOptions(id_col="id"))
    assert [r[0] for r in rows] == ids
    assert len({r[0] for r in rows}) == len(ids)


def test_row_numbers_in_messages_are_exact_far_into_the_file(tmp_path: Path) -> None:
    # The old message said "after row 10227" for row 15,002: the reader ran ahead of the rows handed out.
    body = "".join(f'{i},"row {i}\nover two lines"\n' for i in range(20_000))
    path = tmp_path / "far.csv"
    path.write_text("id,text\n" + body.replace("15002,", "15002,extra,"), encoding="utf-8")
    rows = _rows(path, SMALL)
    assert len(rows) == 20_000
    assert [i for i, r in enumerate(rows) if r[2]] == [15_002]
    assert rows[15_002][2] == "row 15002: 3 fields, the header has 2"
    assert rows[15_003][1] == "row 15003\nover two lines"


def test_a_field_bigger_than_the_block_is_one_error_row(tmp_path: Path) -> None:
    big = b"x" * 5_000_000  # 5 MB: over the record cap (4 x 1 MiB + 64 KiB) and far over a block
    quoted = b'"' + b"line,\n" * 1_000_000 + b'"'  # the same inside quotes, newlines and commas included
    data = b"id,text\n1,a\n2," + big + b"\n3,b\n4," + quoted + b"\n5,c\n"
    rows = _rows(_write(tmp_path / "big.csv", data), ReadOptions(id_col="id"))
    assert [r[1] for r in rows] == ["a", None, "b", None, "c"]
    assert [r[0] for r in rows] == ["1", None, "3", None, "5"]
    assert rows[1][2] == "row 1: a record over the 4259840-byte size cap (skipped while reading)"
    assert rows[3][2].startswith("row 3: a record over the")


def test_a_field_over_the_text_cap_but_under_the_record_cap_is_parsed_then_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "mid.csv", b"text\nshort\n" + b"y" * 2_000_000 + b"\nshort\n")
    rows = _rows(path)
    assert [r[1] for r in rows] == ["short", None, "short"]
    assert rows[1][2] == "text over the 1048576-byte size cap"


def test_tsv_reads_quotes_as_ordinary_characters_unless_asked(tmp_path: Path) -> None:
    # A cell that opens a quote and never closes it swallowed the next lines: 6 lines, 3 rows, exit 0.
    data = b'id\ttext\n1\t"unclosed\n2\tb\n3\tc\n4\td\n5\te\n6\tf\n'
    path = _write(tmp_path / "q.tsv", data)
    rows = _rows(path, ReadOptions(id_col="id"))
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"] and rows[0][1] == '"unclosed'
    quoted = _write(tmp_path / "ok.tsv", b'id\ttext\n1\t"a\tb\nc"\n2\t"say ""hi"""\n')
    assert [r[1] for r in _rows(quoted, ReadOptions(tsv_quotes=True))] == ["a\tb\nc", 'say "hi"']
    with pytest.raises(InputError, match=r"q\.tsv: a quote opened in row 0 is never closed"):
        _rows(path, ReadOptions(tsv_quotes=True))


@pytest.mark.parametrize("options", [ReadOptions(), SMALL])
def test_a_quote_open_at_the_end_of_a_csv_is_an_input_error_naming_its_row(
    tmp_path: Path, options: ReadOptions
) -> None:
    body = b"".join(b"%d,fine\n" % i for i in range(5000))
    path = _write(tmp_path / "open.csv", b"id,text\n" + body + b'5000,"never closed\n5001,x\n5002,y\n')
    with pytest.raises(InputError, match=r"open\.csv: a quote opened in row 5000 is never closed"):
        _rows(path, options)


def test_line_ends_bom_and_files_without_rows(tmp_path: Path) -> None:
    crlf = _write(tmp_path / "crlf.csv", b'id,text\r\n1,a\r\n2,"b\r\nc"\r\n3,d')  # no final line end
    assert [r[1] for r in _rows(crlf)] == ["a", "b\r\nc", "d"]
    old_mac = _write(tmp_path / "cr.csv", b"id,text\r1,a\r2,b\r")
    assert [r[1] for r in _rows(old_mac)] == ["a", "b"]
    # An old-Mac header above LF rows (an editor's doing): the rows decide, over a file of many blocks.
    small = ReadOptions(max_text_bytes=256, block_bytes=4096, max_record_bytes=2048)
    for name, sep in (("cr_header.tsv", b"\t"), ("cr_header.csv", b",")):
        rows = b"".join(b"%d%sok %d\n" % (i, sep, i) for i in range(12_000))
        read = _rows(_write(tmp_path / name, b"id" + sep + b"text\r" + rows), small)
        assert [r[1] for r in read] == [f"ok {i}" for i in range(12_000)], name
    bom = _write(tmp_path / "bom.csv", b"\xef\xbb\xbftext\nhello\n")
    assert [r[1] for r in _rows(bom)] == ["hello"]
    for content in (b"id,text\n", b"id,text"):
        assert _rows(_write(tmp_path / "header.csv", content)) == []
    with pytest.raises(InputError, match="Empty CSV file"):
        _rows(_write(tmp_path / "empty.csv", b""))


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.csv.gz"])
def test_a_lone_cr_inside_a_cell_of_a_lf_file_is_part_of_the_cell(tmp_path: Path, name: str) -> None:
    """pyarrow ends a record at a lone CR too: a CR pasted into a review made one record two rows, and
    every later row's number (the default id) pointed at the record before it."""
    sep = b"\t" if ".tsv" in name else b","
    rows = [b"%d%sok %d" % (i, sep, i) for i in range(3000)]
    for i in (0, 1500, 2999):
        rows[i] = b"%d%sgood\rbad %d" % (i, sep, i)
    rows[7] = b'7,"quoted\rcr"' if sep == b"," else rows[7]
    data = b"id" + sep + b"text\n" + b"\n".join(rows) + b"\r\n"  # the last line also ends in CRLF
    read = _rows(_write(tmp_path / name, data), ReadOptions(id_col="id", block_bytes=1))
    assert [r[0] for r in read] == [str(i) for i in range(3000)]
    assert [r[2] for r in read] == [""] * 3000
    assert read[1500][1] == "good bad 1500" and read[2999][1] == "good bad 2999"  # a space, as normalised
    # A record over the size cap holding a lone CR is still one error row (skipped by the byte scanner).
    small = ReadOptions(max_text_bytes=256, block_bytes=4096, max_record_bytes=2048)
    big = b"id" + sep + b"text\n0" + sep + b"x\r" * 3000 + b"\n1" + sep + b"after\n"
    assert [(r[1], bool(r[2])) for r in _rows(_write(tmp_path / ("big" + name), big), small)] == [
        (None, True),
        ("after", False),
    ]


def test_crs_that_belong_to_line_ends_stay_line_ends(tmp_path: Path) -> None:
    """The lone-CR rule first read as cells what belongs to the line end: an old Mac file with a quoted LF in
    its first row was taken for a file of LF records (every row merged into one error row), and the CRs of
    CR CR LF or LF CR line ends became spaces in the last or first cell (ids "1 " and " 2")."""
    mac = _write(tmp_path / "mac.csv", b'id,text\r1,"good\nproduct"\r2,bad product\r3,fine\r4,ok\r')
    assert _rows(mac, ReadOptions(id_col="id")) == [
        ("1", "good\nproduct", ""),
        ("2", "bad product", ""),
        ("3", "fine", ""),
        ("4", "ok", ""),
    ]
    crcr = _write(tmp_path / "crcr.csv", b"text,id\r\nhello,1\r\r\nworld,2\r\r\n")
    lfcr = _write(tmp_path / "lfcr.csv", b"text,id\nhello,1\n\rworld,2\n\r")
    for path in (crcr, lfcr):
        assert _rows(path, ReadOptions(id_col="id")) == [("1", "hello", ""), ("2", "world", "")], path.name
    # a run of CRs inside a cell is spaces, however long (matched as one run: linear time)
    runs = _write(tmp_path / "runs.csv", b"id,text\n1,a" + b"\r" * 100_000 + b"b\n2,c\n")
    assert [(r[0], len(r[1] or "")) for r in _rows(runs, ReadOptions(id_col="id"))] == [
        ("1", 100_002),
        ("2", 1),
    ]


def test_stray_quotes_inside_unquoted_fields_across_many_blocks(tmp_path: Path) -> None:
    # '12" pizza' does not open a quote (pyarrow, like RFC 4180 readers, opens one only at a field's start),
    # so a quote count is odd at many block ends: the exact scanner finds the record ends there.
    texts = [f'{i} a 12" pizza' if i % 3 else f'"quoted {i}\nover two lines"' for i in range(20_000)]
    path = _write(
        tmp_path / "stray.csv", ("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts))).encode()
    )
    rows = _rows(path, SMALL)
    expected = [t.strip('"') if not i % 3 else t for i, t in enumerate(texts)]
    assert [r[1] for r in rows] == expected and not any(r[2] for r in rows)


def test_jsonl_lines_are_capped_while_reading(tmp_path: Path) -> None:
    line = b'{"text": "' + b"z" * 20_000_000 + b'"}'  # 20 MB in one line
    path = _write(
        tmp_path / "long.jsonl", b'{"text": "a"}\n' + line + b'\n{"text": "b"}\n' + line
    )  # last: no \n
    options = ReadOptions(block_bytes=1 << 16, max_text_bytes=1 << 18)  # cap 1 MiB + 64 KiB
    tracemalloc.start()
    rows = _rows(path, options)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r[1] for r in rows] == ["a", None, "b", None]
    assert rows[1][2] == "row 1: a line over the 1114112-byte size cap (skipped while reading)"
    assert rows[3][2].startswith("row 3: a line over")
    assert peak < 8 * options.record_cap, f"peak {peak} bytes for a cap of {options.record_cap}"


def test_jsonl_id_missing_from_some_lines_is_a_row_error_and_from_all_an_input_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ids.jsonl", b'{"text": "a"}\n{"id": 7, "text": "b"}\n{"id": "x", "text": "c"}\n'
    )
    assert _rows(path, ReadOptions(id_col="id")) == [
        (None, None, "no 'id' field (--id-col)"),
        ("7", "b", ""),
        ("x", "c", ""),
    ]
    with pytest.raises(InputError, match="no column 'key'"):
        _rows(path, ReadOptions(id_col="key"))
    with pytest.raises(InputError, match="no column 'body'"):
        _rows(path, ReadOptions(text_col="body"))


def test_jsonl_lone_surrogates_are_row_errors_with_the_id_escaped(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jsonl", b'{"id": "\\ud800", "text": "a"}\n{"id": "ok", "text": "\\udc00b"}\n')
    assert _rows(path, ReadOptions(id_col="id")) == [
        ("\\ud800", None, "id is not valid Unicode (a lone surrogate), written escaped"),
        ("ok", None, "text is not valid Unicode (a lone surrogate such as \\ud800)"),
    ]


@pytest.mark.parametrize(
    "array",
    [
        pa.array(["a", "b", "a"]).dictionary_encode(),
        pa.array(["a", "b", "a"], type=pa.string_view()),
        pa.array(["a", "b", "a"], type=pa.large_string()),
        pa.array([b"a", b"b", b"a"], type=pa.binary_view()),
    ],
)
def test_parquet_text_columns_of_any_string_encoding_are_text(tmp_path: Path, array: pa.Array) -> None:
    path = tmp_path / "enc.parquet"
    pq.write_table(pa.table({"id": array, "text": array}), path)
    assert _rows(path, ReadOptions(id_col="id")) == [("a", "a", ""), ("b", "b", ""), ("a", "a", "")]


def test_a_tab_separated_csv_is_read_with_tabs_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "tabs.csv", b"id\tlabel\ttext\n1\tpos\thello, world\n2\tneg\tbad\n")
    with caplog.at_level(logging.WARNING):
        assert [r[1] for r in _rows(path)] == ["hello, world", "bad"]
    assert "the header is separated by tabs, not commas" in caplog.text
    assert read_labelled(path).labels == ["pos", "neg"]  # train and eval read the same way
    assert read_table(path).column_names == ["id", "label", "text"]
    semi = _write(tmp_path / "semi.csv", b"text;id\nhello, world;1\n")
    assert _rows(semi, ReadOptions(delimiter=";", id_col="id")) == [("1", "hello, world", "")]


def test_read_table_leaves_unreadable_records_out_and_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "train.csv", b"label,text\npos,good\nneg,bad,extra\nneg,bad\n")
    with caplog.at_level(logging.WARNING):
        data = read_labelled(path)
    assert data.texts == ["good", "bad"] and data.labels == ["pos", "neg"]
    assert "left out 1 unreadable record(s), the first: row 1: 3 fields, the header has 2" in caplog.text
    caplog.clear()
    blanks = _write(
        tmp_path / "blanks.csv",
        "label,text\npos,good\npos,\n,bad\nneg,  \nneg,\u200b\ufeff\nneg,bad\n".encode(),
    )  # the zero-width space and BOM: nothing readable, a row predict would not score either
    with caplog.at_level(logging.WARNING):
        assert read_labelled(blanks).texts == ["good", "bad"]
    assert "blanks.csv: left out 4 row(s) without a readable text or a label, the first: row 1" in caplog.text
    jsonl = _write(
        tmp_path / "train.jsonl", b'{"label": 1, "text": "good"}\nnot json\n{"label": 0, "text": "x"}\n'
    )
    assert read_labelled(jsonl).labels == ["1", "0"]
    with pytest.raises(InputError, match="never closed"):
        read_table(_write(tmp_path / "open.csv", b'label,text\npos,"open\n'))


def test_the_file_is_opened_once_and_read_only_by_the_reading_thread(tmp_path: Path) -> None:
    # Issue 17: pyarrow's streaming reader read ahead on an I/O thread of its own; a file closed while it
    # was still reading let the next file opened get the same descriptor, and the late read took that
    # file's header. Now no other thread reads the file at all, so nothing can read it after its close.
    data = b"id,text\n" + b"".join(b"%d,some text for row %d\n" % (i, i) for i in range(200_000))
    path = _write(tmp_path / "race.csv", data)  # about 6 MB: some 90 blocks of 65 KiB
    before = _bytes_read_by_other_threads()
    with open_records(path, SMALL) as stream:
        assert sum(len(c) for c in stream.chunks()) == 200_000
    assert _bytes_read_by_other_threads() - before < len(data) // 10


def _bytes_read_by_other_threads() -> int:
    """Bytes read so far by this process's threads other than the calling one (Linux ``/proc``)."""
    import threading

    me = threading.get_native_id()
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) == me:
            continue
        try:
            fields = dict(line.split(": ") for line in (task / "io").read_text().splitlines())
        except OSError:  # the thread ended meanwhile
            continue
        total += int(fields["rchar"])
    return total


def test_pyarrow_errors_reach_the_user_as_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clsrun.runtime.delimited import RecordBlocks

    def refuse(*args: object) -> None:
        raise pa.ArrowKeyError("Column 'text' in include_columns does not exist in CSV file")

    monkeypatch.setattr(RecordBlocks, "_read", refuse)
    path = _write(tmp_path / "k.csv", b"text\nhello\n")
    with pytest.raises(InputError, match=r"k\.csv: cannot be read as csv: .*Column 'text'"):
        open_records(path)


def test_a_json_line_nested_too_deeply_is_a_row_error(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    path = _write(
        tmp_path / "deep.jsonl", b'{"text": "a"}\n' + deep + b"\n" + json.dumps({"text": "b"}).encode()
    )
    rows = _rows(path)
    assert [r[1] for r in rows] == ["a", None, "b"]  # Python's words were "maximum recursion depth exceeded"
    assert rows[1][2] == "JSON nested too deeply to read (arrays or objects inside each other)"


def test_a_jsonl_file_starting_with_an_over_long_line_is_still_read(tmp_path: Path) -> None:
    long_line = b'{"text": "' + b"z" * 300_000 + b'"}\n'
    options = ReadOptions(block_bytes=1 << 16, max_text_bytes=1 << 14)  # cap 128 KiB
    path = _write(tmp_path / "first.jsonl", long_line + b'{"text": "a"}\n')
    assert [r[1] for r in _rows(path, options)] == [None, "a"]
    only = _write(tmp_path / "only.jsonl", long_line)
    assert [r[2] for r in _rows(only, options)] == [
        "row 0: a line over the 131072-byte size cap (skipped while reading)"
    ]


def test_a_long_cell_in_a_block_read_by_the_standard_library_is_one_row(tmp_path: Path) -> None:
    """A block with a wrong-width row and bytes that are not UTF-8 is read by Python's csv module, whose
    default field limit (131,072) refused the whole file at a longer cell the record cap allows."""
    import csv

    from clsrun.runtime.input_files import ReadOptions
    from clsrun.runtime.readers import open_records

    path = tmp_path / "h.csv"
    path.write_bytes(b"id,text\nab\n1," + b"x" * 200_000 + b"\n2,caf\xe9\n")
    limit = csv.field_size_limit(131_072)  # the default, whatever an earlier test set
    try:
        chunks = list(open_records(path, ReadOptions(id_col="id")).chunks())
    finally:
        csv.field_size_limit(max(limit, csv.field_size_limit()))
    texts = [t for c in chunks for t in c.texts]
    errors = [e for c in chunks for e in c.errors]
    assert len(texts) == 3 and texts[1] == "x" * 200_000
    assert errors[0] == "row 0: 1 field, the header has 2" and errors[2].startswith("undecodable bytes")


@pytest.mark.parametrize("kind", ["string", "large_string", "dictionary"])
def test_parquet_string_values_that_are_not_utf8_are_error_rows_not_a_failed_file(
    tmp_path: Path, kind: str
) -> None:
    """Parquet writers need not check UTF-8: one such value failed the whole file ("Invalid UTF8 sequence
    in input"), and in train or eval it was "unexpected UnicodeDecodeError"."""
    raw = [b"good %d" % i for i in range(5000)]
    raw[4321] = b"caf\xe9"
    binary = pa.array(raw, pa.large_binary() if kind == "large_string" else pa.binary())
    strings = binary.view(pa.large_string() if kind == "large_string" else pa.string())  # unchecked
    column = strings.dictionary_encode() if kind == "dictionary" else strings
    path = tmp_path / "unchecked.parquet"
    pq.write_table(pa.table({"id": column, "text": column, "label": ["pos", "neg"] * 2500}), path)
    rows = _rows(path, ReadOptions(id_col="id"))
    assert len(rows) == 5000
    assert rows[4321] == ("caf\\xe9", None, "undecodable bytes (not UTF-8) at byte 3")
    assert rows[4320] == ("good 4320", "good 4320", "") and rows[4322] == ("good 4322", "good 4322", "")
    data = read_labelled(path)
    assert len(data.texts) == 4999 and "caf" not in " ".join(data.texts[4320:4322])


def test_train_and_eval_say_when_a_file_is_not_utf8(tmp_path: Path) -> None:
    """A GBK file gave train and eval "no rows with both a text and a label" and nothing more; predict
    names the bytes and the fix, and so do they now."""
    gbk = _write(tmp_path / "gbk.csv", "label,text\npos,很好的产品\nneg,太差了\n".encode("gbk"))
    with pytest.raises(InputError, match=r"no rows with both a text and a label; .*not UTF-8.*iconv -f gbk"):
        read_labelled(gbk)
    half = _write(tmp_path / "half.csv", "label,text\npos,很好\n".encode() + "neg,太差了\n".encode("gbk"))
    assert "iconv -f gbk -t utf-8" in read_labelled(half).left_out[-1]
    fine = _write(tmp_path / "fine.csv", "label,text\npos,很好\nneg,\n".encode())
    assert "iconv" not in read_labelled(fine).left_out[-1]  # an empty text is no encoding problem


def test_a_missing_column_message_is_bounded_and_names_a_header_that_is_not_utf8(tmp_path: Path) -> None:
    wide = _write(tmp_path / "wide.csv", (",".join(f"c{i}" for i in range(3000)) + "\n").encode())
    with pytest.raises(InputError) as many:
        _rows(wide)
    assert "'c19', ... (3,000 in all)" in str(many.value) and "'c20'" not in str(many.value)
    binary = _write(tmp_path / "bin.csv", b"x" * 200_000 + b"\n")
    with pytest.raises(InputError) as long:
        _rows(binary)
    assert len(str(long.value)) < 1000  # a 200 kB header name was the message
    gbk = _write(tmp_path / "gbk.csv", "编号,文本\n1,很好\n".encode("gbk"))
    with pytest.raises(InputError, match=r"no column 'text'; .*not UTF-8.*iconv -f gbk"):
        _rows(gbk)
    with pytest.raises(InputError, match=r"not UTF-8.*iconv -f gbk"):
        read_labelled(gbk)


def test_bytes_that_are_not_utf8_fail_only_the_json_text_that_holds_them(tmp_path: Path) -> None:
    """One such byte anywhere on a line made it an error row without its id, even in a field clsrun does
    not read; the same record in CSV keeps its id and is scored."""
    lines = [
        b'{"id": "r-1", "text": "good", "note": "caf\xe9"}',  # a field not read
        b'{"id": "r-\xff2", "text": "ok"}',  # the id: its bytes escaped, as a CSV id's
        b'{"id": "r-3", "text": "bad\xff"}',  # the text: that row's error, its id kept
        b'{"id": "r-4", "text": "fine"}',
        b'{"id": "r-5", "text": "x"\xff',  # not JSON either way
        b'["\xff"]',  # not an object: the bytes are what it says first
    ]
    path = _write(tmp_path / "bytes.jsonl", b"\n".join(lines) + b"\n")
    assert _rows(path, ReadOptions(id_col="id")) == [
        ("r-1", "good", ""),
        ("r-\\xff2", "ok", ""),
        ("r-3", None, "undecodable bytes (not UTF-8) at byte 26"),
        ("r-4", "fine", ""),
        (None, None, "undecodable bytes (not UTF-8) at byte 25"),
        (None, None, "undecodable bytes (not UTF-8) at byte 2"),
    ]


def test_rows_left_out_for_a_label_with_a_line_end_say_so(tmp_path: Path) -> None:
    """Such a label is no class (control characters are refused in a bundle's labels): its rows were left
    out as "without a readable text or a label", which did not say why."""
    path = _write(tmp_path / "nl.csv", b'label,text\n"po\ns",good\nneg,bad\npos,fine\n')
    data = read_labelled(path)
    assert data.labels == ["neg", "pos"]
    assert "(1 of them for a label holding a line end or other control character)" in data.left_out[-1]


def test_bytes_that_are_not_utf8_in_an_unread_field_fail_no_file_and_no_labelled_row(tmp_path: Path) -> None:
    """The first-block check refused a file whose first lines had such bytes in a field clsrun does not
    read ("not JSON Lines"), and train/eval left those rows out: the same records in CSV were used."""
    one = _write(tmp_path / "one.jsonl", b'{"id": "a", "text": "good", "x": "\xff"}\n')
    assert _rows(one, ReadOptions(id_col="id")) == [("a", "good", "")]
    labelled = _write(
        tmp_path / "l.jsonl",
        b'{"label": "pos", "text": "good", "x": "\xff"}\n{"label": "neg", "text": "bad", "x": "\xfe"}\n'
        b'{"label": "pos", "text": "b\xffad"}\n',
    )
    data = read_labelled(labelled)
    assert data.texts == ["good", "bad"] and data.labels == ["pos", "neg"]
    assert "row 2: not valid Unicode (bytes that are not UTF-8" in data.left_out[0]
    no_label = _write(tmp_path / "nl.csv", b'label,text\n"po\ns",good\nneg,\npos,fine\n')
    assert "(1 of them for a label holding a line end" in read_labelled(no_label).left_out[-1]  # not 2


def test_parquet_is_read_a_few_row_groups_at_a_time_and_huge_texts_in_small_batches(tmp_path: Path) -> None:
    """One iter_batches over the whole file held memory that grew with the file (3 million rows in
    100,000-row groups: 835 MiB against 366 MiB for 100,000 rows)."""
    from clsrun.runtime.columns import row_group_batches

    small = tmp_path / "small.parquet"
    pq.write_table(
        pa.table({"text": [f"t{i}" for i in range(5000)], "n": range(5000)}), small, row_group_size=1000
    )
    calls: list[tuple[list[int], int]] = []
    pf = pq.ParquetFile(small)
    real = pf.iter_batches

    def spy(**kwargs: object) -> object:
        calls.append((list(kwargs["row_groups"]), int(kwargs["batch_size"])))  # type: ignore[call-overload]
        return real(**kwargs)  # type: ignore[arg-type]

    pf.iter_batches = spy  # type: ignore[method-assign]
    batches = list(row_group_batches(pf, ["text"], rows=2000, block_bytes=1 << 20))
    assert [g for g, _ in calls] == [[0, 1], [2, 3], [4]]  # small groups share a call, never the whole file
    assert sum(b.num_rows for b in batches) == 5000 and batches[0].column(0)[0].as_py() == "t0"
    huge = tmp_path / "huge.parquet"
    texts = [str(i) * (200_000 // len(str(i))) for i in range(40)]
    nested = pa.array([{"a": i, "b": "x"} for i in range(40)])
    table = pa.table(
        {"s": nested, "text": texts}
    )  # a nested column first: leaf indices are not field indices
    pq.write_table(table, huge, compression="none", use_dictionary=False)
    pf = pq.ParquetFile(huge)
    sizes = [b.num_rows for b in row_group_batches(pf, ["text"], rows=2000, block_bytes=1 << 20)]
    assert sum(sizes) == 40 and max(sizes) <= 6  # about a MiB of text a batch, not 2,000 rows
