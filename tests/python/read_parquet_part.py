"""Reads a Parquet file (a compacted part, a mirror data file) with pyarrow (an
implementation independent of the writer's) and prints what it holds as one JSON object:
the Arrow schema, the Parquet column types, codecs, key-value metadata and row groups, and
the rows, timestamps as integer milliseconds (dates past year 9999 or before year 1 do not
fit Python's datetime) and doubles as their repr() text (NaN and the infinities are not
JSON)."""

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

path = sys.argv[1]
part = pq.ParquetFile(path)
metadata = part.metadata

arrow_schema = [
    {"name": field.name, "type": str(field.type), "nullable": field.nullable}
    for field in part.schema_arrow
]
parquet_columns = []
for index in range(metadata.num_columns):
    column = part.schema.column(index)
    parquet_columns.append(
        {
            "name": column.name,
            "physical": column.physical_type,
            "logical": str(column.logical_type),
            "optional": column.max_definition_level > 0,
        }
    )
codecs = sorted(
    {
        metadata.row_group(group).column(column).compression
        for group in range(metadata.num_row_groups)
        for column in range(metadata.num_columns)
    }
)
key_value = sorted(key.decode() for key in (metadata.metadata or {}).keys())

table = part.read()
columns = {}
for field in table.schema:
    column = table.column(field.name)
    if pa.types.is_timestamp(field.type):
        column = column.cast(pa.int64())
    values = column.to_pylist()
    if pa.types.is_floating(field.type):
        values = [None if value is None else repr(value) for value in values]
    columns[field.name] = values
rows = [
    {name: values[index] for name, values in columns.items()}
    for index in range(table.num_rows)
]

json.dump(
    {
        "arrowSchema": arrow_schema,
        "parquetColumns": parquet_columns,
        "codecs": codecs,
        "keyValueMetadata": key_value,
        "numRowGroups": metadata.num_row_groups,
        "numRows": metadata.num_rows,
        "rows": rows,
    },
    sys.stdout,
    allow_nan=False,
)
