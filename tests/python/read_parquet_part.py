"""Reads a compacted Parquet part with pyarrow (an implementation independent of the
writer's) and prints what it holds as one JSON object: the Arrow schema, the Parquet
column types and codecs, and the rows, timestamps as integer milliseconds (dates past
year 9999 or before year 1 do not fit Python's datetime)."""

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

table = part.read()
columns = {}
for field in table.schema:
    column = table.column(field.name)
    if pa.types.is_timestamp(field.type):
        column = column.cast(pa.int64())
    columns[field.name] = column.to_pylist()
rows = [
    {name: values[index] for name, values in columns.items()}
    for index in range(table.num_rows)
]

json.dump(
    {
        "arrowSchema": arrow_schema,
        "parquetColumns": parquet_columns,
        "codecs": codecs,
        "numRows": metadata.num_rows,
        "rows": rows,
    },
    sys.stdout,
)
