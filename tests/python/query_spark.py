"""Runs the README's PySpark recipe in local mode and prints its `current` rows as JSON lines.

Used by tests/query_recipes.rs: the test passes the README's block (its `base` pointed at
a local lake) on standard input. The block is run as a notebook cell would be, with a
`spark` session defined; it must leave the current state in `current`.
"""

import json
import sys

from pyspark.sql import SparkSession


def main():
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("query-recipes")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    cell = {"spark": spark}
    exec(compile(sys.stdin.read(), "README.md (pyspark block)", "exec"), cell)
    for row in cell["current"].collect():
        print(json.dumps(row.asDict()))
    spark.stop()


if __name__ == "__main__":
    main()
