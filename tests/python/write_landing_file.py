"""Writes one landing-zone data file with pyarrow, for the reference replicator's own
tests (`tests/mirror_replicator.rs`): the files it is tested on come from pyarrow, not
from the project's writer.

    write_landing_file.py <path.parquet>   (the file's description as JSON on stdin)

The description: `{"columns": [[name, type], ...], "rows": [[value, ...], ...]}` with
types `string`, `int32`, `int64`, `double`, `bool`, `timestamp` (milliseconds, UTC; values
as epoch milliseconds; doubles may be "NaN", "Infinity", "-Infinity"). Columns are written in the order given.
"""

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}

SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def value(raw, arrow_type):
    """Floats that JSON cannot hold come as the strings "NaN", "Infinity", "-Infinity"."""
    if pa.types.is_floating(arrow_type) and isinstance(raw, str):
        return SPECIAL[raw]
    return raw


description = json.load(sys.stdin)
schema = pa.schema([(name, TYPES[kind]) for name, kind in description["columns"]])
columns = list(zip(*description["rows"])) or [[] for _ in description["columns"]]
arrays = [
    pa.array([value(v, field.type) for v in values], type=field.type)
    for values, field in zip(columns, schema)
]
pq.write_table(pa.Table.from_arrays(arrays, schema=schema), sys.argv[1])
