"""The Python side of `cargo bench --bench python` (benches/python.rs), which
runs it with the wheel installed and prints both sides. Prints JSON.

    bench_python.py COMPONENT DATA.parquet REPO OUT_DIR
"""

import json
import pathlib
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

import skewless

component, data_path, repo, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
runs = 51
t = skewless.Transform.load(component)
data = pq.read_table(data_path)
batch = data.slice(0, 65_536).combine_chunks()


def median(f, n=runs):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


t.run(batch)
result = {"run_65536_s": median(lambda: t.run(batch))}
one = batch.slice(0, 1)
t.run(one)
calls = 2_000
start = time.perf_counter()
for _ in range(calls):
    t.run(one)
result["run_1_row_us"] = (time.perf_counter() - start) / calls * 1e6

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import spark_backfill  # noqa: E402

spark = spark_backfill.session(2)
spark.range(1).count()  # the JVM up, before the clock starts
start = time.perf_counter()
spark_backfill.backfill(spark, repo, out)
result["spark_backfill_s"] = time.perf_counter() - start
result["rows"] = data.num_rows
spark.stop()
print(json.dumps(result))
