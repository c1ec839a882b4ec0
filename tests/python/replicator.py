"""A reference replicator: applies a Fabric Open Mirroring landing zone to tables kept in a
JSON state file, as Fabric's mirroring engine does, with pyarrow as the Parquet reader
(independent of the project's writer). It stands in for Fabric in the tests, which cannot
reach it, so it is strict: every contract violation stops with a clear message.

    replicator.py apply <landing_zone_dir> <state.json>
    replicator.py dump <state.json>

The contract, as Microsoft's "Open mirroring landing zone requirements and format" and
"Open mirroring best practices" pages state it, and what this relies on:
- A table is a folder in the landing zone: `<table>/`, or `<schema>.schema/<table>/` for a
  table in a schema. Names starting with `_` are not data: Fabric's own `_ProcessedFiles/`
  and `_FilesReadyToDelete/`, the producer's `_scratchPad/` and `_`-prefixed temporary
  names. They are ignored, at every level.
- `_metadata.json` names the key columns (`{"keyColumns": [...]}`); without it rows cannot
  be updated or deleted, so a data file found before it is an error here. The key columns
  never change once set.
- Data files are named by a sequence number of exactly 20 digits, `.parquet`
  (`00000000000000000001.parquet` first); files are applied strictly in number order. A
  missing number with a higher one present (a gap) stops the table: it stays blocked,
  also on later runs, as Fabric's does. A number that was already applied appearing again
  is an error (Fabric does not read an overwritten path again). Any other file is an
  error (the docs allow CSV; the project never writes it).
- `__rowMarker__` is the last column: 0 insert, 1 update, 2 delete, 4 upsert; rows are
  applied in row order. An upsert (4) and an update (1) replace the whole row with the
  file's columns (columns the file lacks become null); an insert (0) of a key that exists
  and an update of a key that does not are errors; a delete (2) of a missing key does
  nothing.
- A column's type never changes (Fabric stops the table: here an error that blocks it);
  new columns may appear in later files. Types compare as Arrow types read from the file
  (dictionary encoding, large strings and binaries count as their plain types).
- Fabric moves each processed file to `<table>/_ProcessedFiles/` (and deletes it days
  later), so the producer cannot learn its next number from the table folder; this moves
  it there too.

State (`state.json`) keeps per table: the next number, the key columns, column types in
order of appearance, rows by key, and the reason a table is blocked. It is written after
each file (by a rename), so a file is applied and moved exactly once even if a run stops.
`dump` prints `{"<table path>": {"columns": {name: type}, "rows": {key: {column: value}},
"nextFile": n}}`; timestamps as integer epoch milliseconds, floats as JSON numbers or the
strings "NaN", "Infinity", "-Infinity", binaries as base64.
"""

import base64
import json
import math
import os
import re
import sys

import pyarrow as pa
import pyarrow.parquet as pq

ROW_MARKER = "__rowMarker__"
MARKERS = {0: "insert", 1: "update", 2: "delete", 4: "upsert"}
DATA_FILE = re.compile(r"^[0-9]{20}\.parquet$")
PROCESSED = "_ProcessedFiles"
METADATA = "_metadata.json"


class Violation(Exception):
    """A breach of the landing-zone contract: the table stops."""


def hidden(name):
    return name.startswith("_")


def type_name(arrow_type):
    """The type a column is compared by across files."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_large_binary(arrow_type):
        return "binary"
    return str(arrow_type)


def json_float(value):
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


MS_PER_UNIT = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1000000)}


def column_values(array, arrow_type):
    """A column as JSON-able Python values (see the module's notes for the encodings)."""
    if pa.types.is_dictionary(arrow_type):
        array = array.dictionary_decode()
        arrow_type = arrow_type.value_type
    if pa.types.is_timestamp(arrow_type):
        times, per = MS_PER_UNIT[arrow_type.unit]
        raw = array.cast(pa.int64()).to_pylist()
        return [None if v is None else v * times // per for v in raw]
    if pa.types.is_date32(arrow_type):
        raw = array.cast(pa.int32()).to_pylist()
        return [None if v is None else v * 86400000 for v in raw]
    if pa.types.is_floating(arrow_type):
        return [json_float(v) for v in array.to_pylist()]
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return [
            None if v is None else base64.b64encode(v).decode("ascii")
            for v in array.to_pylist()
        ]
    if pa.types.is_decimal(arrow_type):
        return [None if v is None else str(v) for v in array.to_pylist()]
    values = array.to_pylist()
    try:
        json.dumps(values)
    except (TypeError, ValueError) as error:
        raise Violation(f"column type {arrow_type} cannot be replicated: {error}")
    return values


def row_key(row, key_columns):
    values = [row.get(name) for name in key_columns]
    if any(value is None for value in values):
        raise Violation(f"a row has a null key column ({', '.join(key_columns)})")
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return json.dumps(values if len(values) > 1 else values[0], sort_keys=True)


class Table:
    """One table's state: what Fabric's table holds, and where its sequence is."""

    def __init__(self, saved=None):
        saved = saved or {}
        self.next = saved.get("next", 1)
        self.key_columns = saved.get("keyColumns")
        self.columns = saved.get("columns", {})
        self.order = saved.get("order", list(self.columns))
        self.rows = saved.get("rows", {})
        self.blocked = saved.get("blocked")

    def saved(self):
        return {
            "next": self.next,
            "keyColumns": self.key_columns,
            "columns": self.columns,
            "order": self.order,
            "rows": self.rows,
            "blocked": self.blocked,
        }

    def read_metadata(self, folder):
        path = os.path.join(folder, METADATA)
        if not os.path.isfile(path):
            return
        try:
            with open(path, encoding="utf-8") as file:
                metadata = json.load(file)
        except (OSError, ValueError) as error:
            raise Violation(f"{METADATA} is not JSON: {error}")
        keys = metadata.get("keyColumns") if isinstance(metadata, dict) else None
        if not (
            isinstance(keys, list)
            and keys
            and all(isinstance(k, str) and k for k in keys)
        ):
            raise Violation(f"{METADATA} has no keyColumns list: {metadata}")
        if self.key_columns is not None and keys != self.key_columns:
            raise Violation(
                f"{METADATA} changed keyColumns from {self.key_columns} to {keys}"
            )
        self.key_columns = keys

    def pending(self, folder):
        """The data files to apply now, in order; raises on names and numbers Fabric refuses."""
        numbers = {}
        for name in sorted(os.listdir(folder)):
            if hidden(name):
                continue
            if os.path.isdir(os.path.join(folder, name)):
                raise Violation(f"unexpected folder {name!r} in a table folder")
            if not DATA_FILE.match(name):
                raise Violation(
                    f"{name!r} is not a data file name (20 digits, then .parquet)"
                )
            numbers[int(name[:20])] = name
        for number in sorted(numbers):
            if number == 0:
                raise Violation(f"{numbers[number]}: numbers start at 1")
            if number < self.next:
                raise Violation(
                    f"{numbers[number]} reappeared: files up to {self.next - 1} were "
                    "already applied"
                )
        ready = []
        expected = self.next
        for number in sorted(numbers):
            if number != expected:
                raise Violation(
                    f"gap: {expected:020d}.parquet is missing while "
                    f"{numbers[number]} exists"
                )
            ready.append(numbers[number])
            expected += 1
        if ready and self.key_columns is None:
            raise Violation(f"data file {ready[0]} before {METADATA} with keyColumns")
        return ready

    def apply_file(self, path):
        """Applies one data file: its columns checked, its rows in order."""
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as error:
            raise Violation(f"{os.path.basename(path)} is not readable Parquet: {error}")
        names = table.schema.names
        if ROW_MARKER not in names:
            raise Violation(f"{os.path.basename(path)} has no {ROW_MARKER} column")
        if names[-1] != ROW_MARKER:
            raise Violation(
                f"{os.path.basename(path)}: {ROW_MARKER} is not the last column "
                f"(columns: {names})"
            )
        if len(set(names)) != len(names):
            raise Violation(f"{os.path.basename(path)}: a column name repeats: {names}")
        for key in self.key_columns:
            if key not in names:
                raise Violation(f"{os.path.basename(path)} lacks key column {key!r}")
        columns = dict(self.columns)
        order = list(self.order)
        data = {}
        for field in table.schema:
            if field.name == ROW_MARKER:
                continue
            kind = type_name(field.type)
            known = columns.get(field.name)
            if known is not None and known != kind:
                raise Violation(
                    f"{os.path.basename(path)}: column {field.name!r} changed type "
                    f"from {known} to {kind}"
                )
            if known is None:
                columns[field.name] = kind
                order.append(field.name)
            data[field.name] = column_values(
                table.column(field.name).combine_chunks(), field.type
            )
        markers = table.column(ROW_MARKER)
        if not pa.types.is_integer(markers.type):
            raise Violation(f"{ROW_MARKER} is {markers.type}, not an integer")
        markers = markers.to_pylist()
        rows = dict(self.rows)
        for index, marker in enumerate(markers):
            row = {name: values[index] for name, values in data.items()}
            key = row_key(row, self.key_columns)
            where = f"{os.path.basename(path)} row {index}"
            if marker not in MARKERS:
                raise Violation(f"{where}: {ROW_MARKER} {marker} is not 0, 1, 2 or 4")
            if marker == 2:
                rows.pop(key, None)
                continue
            if marker == 0 and key in rows:
                raise Violation(f"{where}: insert of a key that exists")
            if marker == 1 and key not in rows:
                raise Violation(f"{where}: update of a key that does not exist")
            rows[key] = row
        self.columns, self.order, self.rows = columns, order, rows

    def dumped(self):
        return {
            "columns": {name: self.columns[name] for name in self.order},
            "rows": {
                key: {name: row.get(name) for name in self.order}
                for key, row in sorted(self.rows.items())
            },
            "nextFile": self.next,
            **({"blocked": self.blocked} if self.blocked else {}),
        }


def table_folders(landing):
    """`(name, folder)` of every table folder: `<table>` and `<schema>.schema/<table>`."""
    found = []
    for name in sorted(os.listdir(landing)):
        path = os.path.join(landing, name)
        if hidden(name):
            continue
        if not os.path.isdir(path):
            raise Violation(f"unexpected file {name!r} at the landing zone's top")
        if name.endswith(".schema"):
            for table in sorted(os.listdir(path)):
                inner = os.path.join(path, table)
                if hidden(table):
                    continue
                if not os.path.isdir(inner):
                    raise Violation(f"unexpected file {name}/{table!r} in a schema folder")
                found.append((f"{name}/{table}", inner))
        else:
            found.append((name, path))
    return found


def load(state_path):
    if not os.path.exists(state_path):
        return {}
    with open(state_path, encoding="utf-8") as file:
        return {
            name: Table(saved) for name, saved in json.load(file)["tables"].items()
        }


def save(state_path, tables):
    temporary = state_path + ".writing"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump({"tables": {n: t.saved() for n, t in tables.items()}}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, state_path)


def move_processed(folder, name):
    target = os.path.join(folder, PROCESSED)
    os.makedirs(target, exist_ok=True)
    destination = os.path.join(target, name)
    if os.path.exists(destination):
        raise Violation(f"{PROCESSED}/{name} exists already")
    os.rename(os.path.join(folder, name), destination)


def apply(landing, state_path):
    """Applies every table's new files; returns the violations (one line each)."""
    tables = load(state_path)
    problems = []
    try:
        folders = table_folders(landing)
    except Violation as error:
        return [str(error)]
    for name, folder in folders:
        table = tables.get(name) or Table()
        if table.blocked:
            problems.append(f"{name}: blocked: {table.blocked}")
            continue
        try:
            table.read_metadata(folder)
            ready = table.pending(folder)
        except Violation as error:
            table.blocked = str(error)
            tables[name] = table
            save(state_path, tables)
            problems.append(f"{name}: {error}")
            continue
        if table.key_columns is None:
            continue  # nothing to apply yet; Fabric waits for the metadata
        tables[name] = table
        for file in ready:
            try:
                table.apply_file(os.path.join(folder, file))
                move_processed(folder, file)
            except Violation as error:
                table.blocked = str(error)
                save(state_path, tables)
                problems.append(f"{name}: {error}")
                break
            table.next += 1
            save(state_path, tables)
        else:
            save(state_path, tables)
    return problems


def main(argv):
    if len(argv) == 3 and argv[0] == "apply":
        problems = apply(argv[1], argv[2])
        if problems:
            for problem in problems:
                print(f"replicator: {problem}", file=sys.stderr)
            return 1
        return 0
    if len(argv) == 2 and argv[0] == "dump":
        tables = load(argv[1])
        print(json.dumps({n: t.dumped() for n, t in sorted(tables.items())}))
        return 0
    print(
        "usage: replicator.py apply <landing_zone_dir> <state.json> | dump <state.json>",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
