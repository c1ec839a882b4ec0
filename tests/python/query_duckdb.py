"""Runs SQL in DuckDB and prints the last statement's rows as JSON lines.

Used by tests/query_recipes.rs to run the README's own DuckDB recipes over a real lake:
the test passes the SQL (README blocks, paths substituted) on standard input. Statements
are separated by `;` at the end of a line. Each row is printed as one JSON object keyed
by column name; values that are not JSON types are printed as text.
"""

import json
import sys

import duckdb


def statements(text):
    """Splits on `;` at a line's end: the README's blocks put one there per statement."""
    current = []
    for line in text.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            yield "\n".join(current)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        yield rest


def main():
    connection = duckdb.connect()
    cursor = None
    for statement in statements(sys.stdin.read()):
        cursor = connection.execute(statement)
    if cursor is None or cursor.description is None:
        sys.exit("no statement returned rows")
    columns = [column[0] for column in cursor.description]
    for row in cursor.fetchall():
        print(json.dumps(dict(zip(columns, row)), default=str))


if __name__ == "__main__":
    main()
