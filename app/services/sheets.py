"""Reading contact files as a stream of rows: CSV in whatever encoding and delimiter the file
uses, or .xlsx through openpyxl's read-only mode. Nothing here holds a file whole in memory.

Also the one rule for writing spreadsheet cells back out (exports, rejected rows): a cell that
a spreadsheet would run as a formula is defused.
"""
import codecs
import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from itertools import islice

SAMPLE_BYTES = 64 * 1024
MAX_COLUMNS = 200
# csv refuses fields over its limit and loses its place in the file; the importer refuses
# fields over its own, much lower limit row by row, so csv only stops at a runaway quote.
CSV_FIELD_LIMIT = 1 << 20
csv.field_size_limit(CSV_FIELD_LIMIT)

ENCODINGS = {
    "utf-8": "UTF-8", "utf-8-sig": "UTF-8 (with BOM)", "utf-16": "UTF-16 (with BOM)",
    "utf-16-le": "UTF-16 little-endian", "utf-16-be": "UTF-16 big-endian",
    "cp1252": "Windows-1252 (Western European)", "latin-1": "Latin-1 (ISO-8859-1)",
}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
BLANK = ("", None)


class FileRefused(ValueError):
    """The file cannot be imported at all; the message says why in the manager's words."""


# Bytes the chosen encoding cannot decode become lone surrogates (which no valid text holds),
# so the row that carries them is refused by name instead of the whole file.
_undecodable = [0]


def _mark_undecodable(exc):
    _undecodable[0] += 1
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("mailer-mark", _mark_undecodable)
UNDECODABLE = re.compile("[\udc00-\udcff]")


@dataclass
class Detected:
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    notes: list = field(default_factory=list)


def detect(head: bytes, filename: str) -> Detected:
    """Format, encoding and delimiter from the first bytes of a file, or FileRefused."""
    if not head.strip(b" \t\r\n\x0c\x0b"):
        raise FileRefused("the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return Detected("xlsx")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileRefused("this is an old Excel .xls file: save it as .xlsx or CSV and upload that")
    encoding, notes = _encoding(head)
    text = head.decode(encoding, errors="mailer-mark")
    return Detected("csv", encoding, sniff_delimiter(text), notes)


def _encoding(head: bytes) -> tuple[str, list]:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", []
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", []
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd and odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le", []
        if even and even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be", []
        # One stray NUL deep in a text file is that row's problem; NULs at the start or
        # everywhere are a binary file.
        if b"\x00" in head[:1024] or head.count(0) > len(head) // 100:
            raise FileRefused("this does not look like a CSV file (it contains binary data)")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="mailer-mark")
    before = _undecodable[0]
    text = decoder.decode(head, final=False)
    bad = _undecodable[0] - before
    if not bad:
        return "utf-8", []
    if any(ord(c) > 0x7F and not 0xDC00 <= ord(c) <= 0xDCFF for c in text):
        # Valid UTF-8 letters next to bytes that are not: a file pieced together from
        # several sources. UTF-8 keeps the good rows right; the others are refused by line.
        return "utf-8", [f"the first {len(head) // 1024} KB mix UTF-8 with {bad} byte(s) that are not UTF-8: "
                         "rows holding them will be rejected unless you choose another encoding"]
    try:
        head.decode("cp1252")
        return "cp1252", []
    except UnicodeDecodeError:
        return "latin-1", []


def sniff_delimiter(text: str) -> str:
    """The delimiter the first lines use most consistently (comma when there is only one column)."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if len(lines) > 1:
        lines = lines[:-1]  # the sample may cut the last line short
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS} if lines else {}
        best = max(counts, key=counts.get, default=",")
        return best if counts.get(best) else ","


# --- rows -------------------------------------------------------------------------------------

def csv_rows(binary, encoding: str, delimiter: str):
    """(line, cells, problem) for each non-blank record; `line` is where the record starts,
    so a quoted field with newlines does not shift the numbers after it."""
    text = io.TextIOWrapper(binary, encoding=encoding, errors="mailer-mark", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    seen, last_line = _undecodable[0], 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileRefused(f"line {last_line + 1} is not valid CSV ({exc}); a quote that is opened and never "
                              "closed makes everything after it one field") from None
        except UnicodeDecodeError as exc:  # an encoding the user chose that cannot be incremental
            raise FileRefused(f"the file is not {ENCODINGS.get(encoding, encoding)}: {exc.reason}") from None
        line, last_line = last_line + 1, reader.line_num
        if not row or not any(row):
            continue
        problem = None
        if _undecodable[0] != seen and UNDECODABLE.search("\x1f".join(row)):
            problem = (f"this row has bytes that are not {ENCODINGS.get(encoding, encoding)} (the file mixes "
                       "encodings?): import it again with its encoding chosen on the mapping page")
        yield line, row, problem


def xlsx_rows(path: str):
    """(row number, cells as text, problem) from the first worksheet. Formulas count by their
    saved result; a formula saved without one (a file written by a program, never opened
    in Excel) is that row's problem, since there is no value to import."""
    with open(path, "rb") as value_file, open(path, "rb") as formula_file:
        # File objects, not the path: openpyxl judges a path by its extension.
        values = _workbook(value_file, data_only=True)
        formulas = _workbook(formula_file, data_only=False)
        yield from _xlsx_rows(values, formulas)


def _workbook(binary, data_only: bool):
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return openpyxl.load_workbook(binary, read_only=True, data_only=data_only)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError, TypeError) as exc:
        raise FileRefused(f"this is not an Excel .xlsx file that can be read ({type(exc).__name__}: {exc})") from None


def xlsx_size(path: str) -> int:
    """Rows of the first worksheet as its dimension says (for the progress bar only)."""
    with open(path, "rb") as f:
        book = _workbook(f, data_only=True)
        try:
            return (book.worksheets[0].max_row or 0) if book.worksheets else 0
        finally:
            book.close()


def _xlsx_rows(values, formulas):
    try:
        if not values.worksheets:
            raise FileRefused("the Excel file has no worksheet")
        sheets = values.worksheets[0], formulas.worksheets[0]
        for sheet in sheets:
            # The stored dimension is often wrong (too small cuts rows off, too large pads every
            # row to thousands of cells): read the rows as they are.
            sheet.reset_dimensions()
        width = None
        rows = zip(sheets[0].iter_rows(values_only=True), sheets[1].iter_rows())
        for number, (vals, cells) in enumerate(rows, start=1):
            if not any(v not in BLANK for v in vals):
                continue
            problem = None
            for cell, value in zip(cells, vals):
                if value is None and getattr(cell, "data_type", None) == "f":
                    problem = (f"cell {cell.coordinate} holds a formula without a saved result: open the file "
                               "in Excel, save it, and import it again")
                    break
            texts = [excel_text(v) for v in vals]
            # A sheet leaves out a row's empty cells at the end; CSV would have written them.
            width = width or len(texts)
            yield number, texts + [""] * (width - len(texts)), problem
    finally:
        values.close()
        formulas.close()


def excel_text(value) -> str:
    """A cell as the text a CSV export of it would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


# --- the first rows, for the mapping page -------------------------------------------------

@dataclass
class Preview:
    header: list
    rows: list
    more: bool  # rows exist after the ones shown
    notes: list = field(default_factory=list)


def preview(rows, has_header: bool, limit: int = 8) -> Preview:
    """The header (named when the file has none) and the first rows, refusing the files that
    cannot be imported whatever the mapping."""
    first = list(islice(rows, limit + 2))
    if not first:
        raise FileRefused("the file is empty")
    # The first row sets the columns; a wider row further down is that row's problem.
    width = len(first[0][1])
    if width > MAX_COLUMNS:
        raise FileRefused(f"the file has {width} columns; an import takes at most {MAX_COLUMNS}")
    if has_header:
        header, data = header_names(first[0][1], width), first[1:]
        if not data:
            raise FileRefused("the file has a header row but no contacts under it")
    else:
        header, data = [f"Column {i + 1}" for i in range(width)], first
    shown = [[UNDECODABLE.sub("\ufffd", c) for c in cells[:width]] + [""] * (width - len(cells))
             for _, cells, _ in data[:limit]]
    return Preview(header, shown, len(data) > limit)


def header_names(cells: list, width: int) -> list:
    """Column names as the mapping page shows them: blanks named by position, repeats numbered."""
    names, seen = [], set()
    for i in range(width):
        name = UNDECODABLE.sub("\ufffd", cells[i].strip()) if i < len(cells) else ""
        name = (name or f"Column {i + 1}")[:200]
        base, n = name, 2
        while name.lower() in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name.lower())
        names.append(name)
    return names


# --- writing cells ------------------------------------------------------------------------

def spreadsheet_safe(value) -> str:
    """A cell a spreadsheet shows as text: a leading =, +, -, @ (or tab/CR, which some
    programs skip before one) would make it a formula, so it gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
