"""Contact imports: upload, mapping, a background run, the report.

The uploaded file is kept in PostgreSQL (import_chunks), so the import worker may run on any
host. A run streams the file row by row (never whole in memory): a reader thread checks the
rows while the import's connection COPYs them, 50,000 at a time, good or refused, into a
temporary staging table and merges each chunk into the contacts with set-based statements;
the rows that met an existing contact are applied once at the end. All of it is one
transaction: an import either completes with its report or leaves the contacts exactly as
they were. Progress goes through a second connection so the page can
show it while that transaction is still open.
"""
import io
import logging
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Full, Queue

import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..config import Config
from ..db import pool, q
from ..errors import size_label
from . import journal
from .import_rows import Mapping, MappingError, row_checker
from .journal import Event
from .sheets import SAMPLE_BYTES, FileRefused, csv_rows, detect, preview, sniff_delimiter, xlsx_rows, xlsx_size

log = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20
COPY_BATCH = 2000  # rows per write to the COPY stream
CHUNK_ROWS = 50_000  # rows staged and merged at a time
# A file this large imported into an empty contacts table builds the secondary indexes at the
# end instead of row by row (see import_contacts_empty in sql/queries/import.sql).
DEFER_INDEXES_BYTES = 8 << 20
PROGRESS_SECONDS = 0.5
MAX_ATTEMPTS = 3
QUICK_MAX_ROWS = 50_000


class ImportFailed(ValueError):
    """The import cannot complete; nothing was changed. The message is for the manager."""


USER_ERRORS = (FileRefused, MappingError, ImportFailed)


# --- upload -------------------------------------------------------------------------------------

@dataclass
class Upload:
    """An uploaded file spooled to a local temporary file (the request's copy)."""
    path: str
    size: int
    filename: str

    def head(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read(SAMPLE_BYTES)


@contextmanager
def spool(stream, filename: str, limit: int):
    """Copy an upload stream to a temporary file in 1 MB pieces, refusing it past `limit`."""
    with tempfile.NamedTemporaryFile(prefix="mailer-import-") as tmp:
        size = 0
        while chunk := stream.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"the file is larger than the import limit of {size_label(limit)}")
            tmp.write(chunk)
        tmp.flush()
        name = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1].strip()[:255] or "upload"
        yield Upload(tmp.name, size, name)


def detect_upload(upload: Upload, encoding: str | None = None) -> tuple:
    """(format, encoding, delimiter, notes) of an upload, with the user's encoding if given,
    after refusing every file that no mapping could import."""
    found = detect(upload.head(), upload.filename)
    if found.format == "csv" and encoding:
        found.encoding, found.notes = encoding, []
        found.delimiter = sniff_delimiter(upload.head().decode(encoding, errors="replace"))
    with open(upload.path, "rb") as f:
        preview(_rows(found.format, f, upload.path, found.encoding, found.delimiter), has_header=True)
    return found


def create(upload: Upload, encoding: str | None = None) -> int:
    """Store an upload for the mapping step; returns the import id."""
    found = detect_upload(upload, encoding)
    with pool().connection() as conn:
        conn.execute(q.import_drop_stale_files)
        import_id = conn.execute(q.import_insert, {
            "filename": upload.filename, "format": found.format, "size": upload.size, "encoding": found.encoding,
            "delimiter": found.delimiter, "has_header": True, "mapping": None, "status": "uploaded"}).fetchone()["id"]
        with open(upload.path, "rb") as f:
            seq = 0
            while chunk := f.read(CHUNK_BYTES):
                conn.execute(q.import_chunk_insert, {"import_id": import_id, "seq": seq, "data": chunk})
                seq += 1
    return import_id


# --- reading a stored file -----------------------------------------------------------------------

class StoredFile(io.RawIOBase):
    """The uploaded file read back from import_chunks one piece at a time."""

    def __init__(self, conn, import_id: int):
        self.conn, self.import_id = conn, import_id
        self.seq, self.pos, self.piece = 0, 0, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.piece:
            row = self.conn.execute(q.import_chunk, {"import_id": self.import_id, "seq": self.seq}).fetchone()
            if row is None:
                return 0
            self.piece, self.seq = memoryview(row["data"]), self.seq + 1
        n = min(len(buffer), len(self.piece))
        buffer[:n] = self.piece[:n]
        self.piece, self.pos = self.piece[n:], self.pos + n
        return n


def _rows(fmt: str, binary, path: str | None, encoding: str | None, delimiter: str | None):
    if fmt == "xlsx":
        return xlsx_rows(path)
    return csv_rows(binary, encoding or "utf-8", delimiter or ",")


@contextmanager
def stored_rows(conn, imp: dict):
    """(rows, fraction read) of a stored import file. An .xlsx is a ZIP archive, which needs
    random access: it is spooled to a local temporary file first."""
    raw = StoredFile(conn, imp["id"])
    if imp["format"] == "csv":
        yield _rows("csv", io.BufferedReader(raw, CHUNK_BYTES), None, imp["encoding"], imp["delimiter"]), \
            lambda line: raw.pos / max(imp["size"], 1)
        return
    with tempfile.NamedTemporaryFile(prefix="mailer-import-", suffix=".xlsx") as tmp:
        shutil.copyfileobj(raw, tmp, CHUNK_BYTES)
        tmp.flush()
        total = max(xlsx_size(tmp.name), 1)
        yield _rows("xlsx", None, tmp.name, None, None), lambda line: min(line / total, 1.0)


def load_preview(imp: dict, encoding: str | None, delimiter: str | None, has_header: bool):
    """The mapping page's view of a stored file with the given reading options, with what
    detection noticed about the file read that way."""
    with pool().connection() as conn:
        notes = []
        if imp["format"] == "csv":
            found = detect(StoredFile(conn, imp["id"]).read(SAMPLE_BYTES), imp["filename"])
            notes = found.notes if found.encoding == encoding else []
        with stored_rows(conn, {**imp, "encoding": encoding, "delimiter": delimiter}) as (rows, _):
            shown = preview(rows, has_header)
    shown.notes = notes
    return shown


# --- the run ---------------------------------------------------------------------------------

class Progress:
    """Throttled progress writes on the side connection (the import's own is in its transaction)."""

    def __init__(self, conn, import_id: int, fraction):
        self.conn, self.import_id, self.fraction = conn, import_id, fraction
        self.last = 0.0

    def tick(self, rows: int, line: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            self.conn.execute(q.import_progress, {"id": self.import_id, "phase": "reading", "rows_read": rows,
                                                  "progress": min(self.fraction(line), 1.0)})

    def merging(self, rows: int) -> None:
        self.conn.execute(q.import_progress, {"id": self.import_id, "phase": "merging", "rows_read": rows,
                                              "progress": 1.0})


def execute(conn, import_id: int, mapping: Mapping, has_header: bool, rows, progress: Progress | None = None,
            max_rows: int | None = None, size: int = 0) -> dict:
    """Check, stage and merge every row after the header, then commit: the whole import in one
    transaction of `conn`.

    A thread reads and checks the rows (Python) while this one feeds them to PostgreSQL a
    chunk at a time and merges each chunk into the contacts (PostgreSQL's work): the two
    overlap on two cores instead of taking turns."""
    conn.execute(q.import_work_mem)
    for create in (q.import_batch_create, q.import_new_create, q.import_later_create):
        conn.execute(create)
    started = time.perf_counter()
    deferred = _defer_indexes(conn) if size >= DEFER_INDEXES_BYTES and not max_rows else []
    reader = _Reader(rows, row_checker(mapping, len(mapping.columns), has_header), progress, max_rows)
    inserted = 0
    step = _Steps(import_id)
    try:
        for text, chunk_rejected in reader.chunks():
            step("copy", _copy, conn, text)
            if chunk_rejected:
                step("rejects", conn.execute, q.import_batch_rejects, {"import_id": import_id})
            inserted += step("insert", conn.execute, q.import_batch_merge).rowcount
            conn.execute(q.import_batch_clear)
    finally:
        reader.stop()
    step.times["waiting for rows"] = reader.waited
    total, rejected = reader.total, reader.rejected
    if total == 0:
        raise FileRefused("the file has a header row but no contacts under it" if has_header else "the file is empty")
    if progress:
        progress.merging(total)
    log.info("import %s: %s rows read, checked and inserted in %.2f s", import_id, total, time.perf_counter() - started)
    counts = merge(conn, import_id, mapping, total, rejected, inserted, step)
    if deferred:
        conn.execute(q.import_index_build_memory)
        for index in deferred:
            step("index " + index["name"], conn.execute, index["definition"])
    step.done()
    conn.execute(q.import_finish, {"id": import_id, **counts})
    conn.execute(q.import_drop_file, {"id": import_id})
    journal.append(conn, [Event("import.completed", detail={"import_id": import_id, **counts})])
    conn.commit()
    return counts


def _defer_indexes(conn) -> list:
    """Drop the contacts indexes no uniqueness rests on, for execute() to build at the end,
    if contacts is empty and can be locked at once; the dropped indexes' rows, else []."""
    if not _contacts_empty(conn):
        return []
    try:
        with conn.transaction():  # a savepoint: a refused lock (or rows meanwhile) changes nothing
            conn.execute(q.import_contacts_lock)
            if not _contacts_empty(conn):
                raise _NotEmpty
            indexes = conn.execute(q.import_deferrable_indexes).fetchall()
            for index in indexes:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index["schema"], index["name"])))
    except (errors.LockNotAvailable, _NotEmpty):
        return []
    log.info("contacts is empty: its indexes %s are built after the import", ", ".join(i["name"] for i in indexes))
    return indexes


class _NotEmpty(Exception):
    pass


def _contacts_empty(conn) -> bool:
    return conn.execute(q.import_contacts_empty).fetchone()["empty"]


def _copy(conn, data: bytes) -> None:
    with conn.cursor() as cur, cur.copy(q.import_batch_copy) as copy:
        copy.write(data)


class _Reader:
    """The rows of a file checked in a thread of their own, handed over as chunks of COPY text,
    encoded, so that the importing thread writes each with one call: it needs the GIL, which
    this thread holds most of the time, as rarely as possible. A few chunks at most are held,
    so the file is still streamed. An exception in the thread
    (a runaway quote, too many rows) is raised again by chunks()."""

    def __init__(self, rows, check, progress, max_rows):
        self.rows, self.check, self.progress, self.max_rows = rows, check, progress, max_rows
        self.total = self.rejected = 0
        self.waited = 0.0  # seconds the importing thread waited for a chunk
        self.handed = Queue(maxsize=2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="import-reader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.handed.put(item, timeout=0.2)
                return True
            except Full:
                continue
        return False

    def _run(self):
        check, progress, max_rows = self.check, self.progress, self.max_rows
        try:
            text, batch = [], []
            total = rejected = chunk_rejected = 0
            for line, cells, problem in self.rows:
                row, bad = check(line, cells, problem)
                batch.append(row)
                total += 1
                if bad:
                    rejected += 1
                    chunk_rejected += 1
                if len(batch) == COPY_BATCH:
                    text.append("".join(batch))
                    batch.clear()
                    if max_rows and total > max_rows:
                        raise FileRefused(f"the file has more than {max_rows} rows: use the import page")
                    if progress:
                        progress.tick(total, line)
                    if len(text) * COPY_BATCH >= CHUNK_ROWS:
                        self.total, self.rejected = total, rejected
                        if not self._put(("".join(text).encode(), chunk_rejected)):
                            return
                        text, chunk_rejected = [], 0
                    if self.stopping.is_set():
                        return
            if max_rows and total > max_rows:
                raise FileRefused(f"the file has more than {max_rows} rows: use the import page")
            if batch:
                text.append("".join(batch))
            self.total, self.rejected = total, rejected
            if text:
                self._put(("".join(text).encode(), chunk_rejected))
            self._put(None)
        except BaseException as exc:  # handed to the importing thread, which raises it
            self._put(exc)

    def chunks(self):
        while True:
            t0 = time.perf_counter()
            item = self.handed.get()
            self.waited += time.perf_counter() - t0
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def merge(conn, import_id: int, mapping: Mapping, total: int, rejected: int, inserted: int, step) -> dict:
    """The rows that met an existing contact applied to it, the lists joined (statements in
    sql/queries/import.sql); the counts."""
    valid = total - rejected
    later = valid - inserted  # rows that met a contact which existed by then
    if later > 1000:
        conn.execute(q.import_later_analyze)
    step("pending", conn.execute, q.import_pending)
    existing = conn.execute(q.import_pending_counts).fetchone()["existing"]
    if later and mapping.on_existing != "skip":
        step("apply", conn.execute, q.import_apply, {"overwrite": mapping.on_existing == "overwrite",
                                                     "tags_mapped": mapping.at("tags") is not None,
                                                     "resubscribe": mapping.resubscribe})
    if mapping.lists:
        missing = [r["x"] for r in conn.execute(q.import_lists_missing, {"lists": mapping.lists})]
        if missing:
            raise ImportFailed("a list chosen for this import was deleted meanwhile: choose the lists again")
        step("lists", conn.execute, q.import_join_lists, {"lists": mapping.lists})
    updated = later if mapping.on_existing != "skip" else 0
    addresses = inserted + existing
    return {"rows_read": total, "inserted": inserted, "updated": updated, "skipped": later - updated,
            "rejected": rejected, "duplicates": valid - addresses}


class _Steps:
    """Times the merge's statements for the worker's log: where a slow import spends its time."""

    def __init__(self, import_id: int):
        self.import_id, self.times = import_id, {}

    def __call__(self, name, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

    def done(self):
        log.info("import %s merged: %s", self.import_id, ", ".join(f"{k} {v:.2f} s" for k, v in self.times.items()))


def run(import_id: int) -> dict | None:
    """The background run of a queued import (the `imports` actor). A redelivered message for
    an import that finished, or that another worker is running, does nothing."""
    with psycopg.connect(Config.DATABASE_URL, autocommit=True, row_factory=dict_row) as side:
        if not side.execute(q.import_lock, {"id": import_id}).fetchone()["ok"]:
            return None
        imp = side.execute(q.import_claim, {"id": import_id}).fetchone()
        if imp is None:
            return None
        try:
            mapping = Mapping.from_json(imp["mapping"])
            with stored_rows(side, imp) as (rows, fraction), \
                    psycopg.connect(Config.DATABASE_URL, row_factory=dict_row) as conn:
                conn.execute(q.import_session)
                rows = iter(rows)
                if imp["has_header"]:
                    next(rows, None)
                return execute(conn, import_id, mapping, imp["has_header"], rows, Progress(side, import_id, fraction),
                               size=imp["size"])
        except USER_ERRORS as exc:
            _fail(side, import_id, str(exc))
            return None
        except Exception as exc:
            log.exception("import %s: attempt %s failed", import_id, imp["attempts"])
            reason = f"the import stopped on an internal error ({type(exc).__name__}); nothing was imported"
            if imp["attempts"] >= MAX_ATTEMPTS:
                _fail(side, import_id, reason)
                return None
            side.execute(q.import_note_error, {"id": import_id, "error": reason + "; trying again"})
            raise


def _fail(conn, import_id: int, reason: str) -> None:
    conn.execute(q.import_fail, {"id": import_id, "error": reason})
    journal.append(conn, [Event("import.failed", detail={"import_id": import_id, "error": reason})])


def queue(import_id: int, mapping: Mapping, encoding: str | None, delimiter: str | None, has_header: bool) -> bool:
    """Save the mapping and hand the import to the `imports` queue; False if it is not waiting
    for a mapping (already queued, running or done)."""
    from consumers.importer import run_import  # the web app only publishes

    with pool().connection() as conn:
        row = conn.execute(q.import_queue, {"id": import_id, "mapping": Jsonb(mapping.to_json()), "encoding": encoding,
                                            "delimiter": delimiter, "has_header": has_header}).fetchone()
    if row is None:
        return False
    run_import.send(import_id)
    return True


def requeue(imp: dict) -> bool:
    """Send a queued or running import's message again (see views.imports.requeue)."""
    from consumers.importer import run_import

    if imp["status"] not in ("queued", "running"):
        return False
    run_import.send(imp["id"])
    return True


# --- the quick upload ------------------------------------------------------------------------------

def quick(upload: Upload, list_id: int | None) -> tuple[dict, list]:
    """The contacts page's one-step upload of a small CSV with an `email` column: the same
    checks and merge as an import, run in the request. Returns the counts and the first
    rejected rows (line, reason)."""
    found = detect(upload.head(), upload.filename)
    with open(upload.path, "rb") as f:
        header = next(_rows(found.format, f, upload.path, found.encoding, found.delimiter), None)
    names = [c.strip() for c in header[1]] if header else []
    lowered = [n.lower() for n in names]
    if "email" not in lowered:
        raise FileRefused("the first row must be a header with an 'email' column")
    roles = {lowered.index("email"): "email"}
    if "name" in lowered:
        roles[lowered.index("name")] = "name"
    mapping = Mapping(columns=[{"role": roles[i]} if i in roles else {"role": "attribute", "key": n, "type": "text"}
                               if n else {"role": "ignore"} for i, n in enumerate(names)],
                      lists=[list_id] if list_id else [])
    mapping.check()
    with pool().connection() as conn:
        import_id = conn.execute(q.import_insert, {
            "filename": upload.filename, "format": found.format, "size": upload.size,
            "encoding": found.encoding, "delimiter": found.delimiter, "has_header": True,
            "mapping": Jsonb(mapping.to_json()), "status": "running"}).fetchone()["id"]
    try:
        for attempt in (1, 2):
            try:
                with open(upload.path, "rb") as f, psycopg.connect(Config.DATABASE_URL, row_factory=dict_row) as conn:
                    rows = _rows(found.format, f, upload.path, found.encoding, found.delimiter)
                    next(rows)
                    counts = execute(conn, import_id, mapping, True, rows, max_rows=QUICK_MAX_ROWS)
                break
            except errors.UniqueViolation:  # someone added one of these addresses meanwhile: read again
                if attempt == 2:
                    raise ImportFailed("the contacts changed while the file was imported: upload it again") from None
    except USER_ERRORS as exc:
        with pool().connection() as conn:
            _fail(conn, import_id, str(exc))
        raise
    with pool().connection() as conn:
        rejects = conn.execute(q.import_rejects_page, {"import_id": import_id, "after": 0, "limit": 50}).fetchall()
    return {"id": import_id, **counts}, [(r["line"], r["reason"]) for r in rejects]
