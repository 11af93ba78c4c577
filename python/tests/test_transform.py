"""`skewless.Transform` from Python: the same component and host code as the CLI.

The components are the examples, built by the Rust test that runs this file
(tests/python.rs), which passes their folder in SKEWLESS_COMPONENTS and the
Rust runtime's own outputs (the same inputs through `Transform::run`, written
as Parquet) in SKEWLESS_EXPECTED.
"""

import os
import pathlib
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import skewless
from conftest import same_bits

COMPONENTS = pathlib.Path(os.environ["SKEWLESS_COMPONENTS"])
EXPECTED = pathlib.Path(os.environ["SKEWLESS_EXPECTED"])


def load(name):
    return skewless.Transform.load(str(COMPONENTS / f"{name}.wasm"))


@pytest.mark.parametrize("name", ["transformed_conv_rate", "fraud_features", "ride_eta", "driver_hourly_stats", "text_embedding"])
def test_run_gives_the_rust_runtimes_bits(name):
    inputs = pq.read_table(EXPECTED / f"{name}.input.parquet")
    expected = pq.read_table(EXPECTED / f"{name}.output.parquet")
    t = load(name)
    assert t.output_schema == expected.schema.remove_metadata()
    # A Table (C stream), a RecordBatch (C array) and a reader give the same bits.
    batches = inputs.to_batches(max_chunksize=333)
    import pandas
    import polars

    # polars hands strings over as string views, pandas through its own C stream.
    given = [inputs, inputs.combine_chunks().to_batches()[0], pa.RecordBatchReader.from_batches(inputs.schema, batches),
             polars.from_arrow(inputs), inputs.to_pandas()]
    assert isinstance(given[-1], pandas.DataFrame)
    for data in given:
        got = t.run(data)
        assert got.num_rows == expected.num_rows
        for column in expected.column_names:
            assert same_bits(got.column(column), expected.column(column)), f"{name}.{column}"


def test_describe_digest_and_row_errors():
    t = load("fraud_features")
    d = t.describe()
    assert d["name"] == "fraud_features"
    assert {"name": "amount", "type": "float64", "nullable": True} in d["inputs"]
    assert t.digest.startswith("sha256:") and len(t.digest) == 71
    data = pa.table(
        {
            "amount": [10.0, -5.0, 42.0],
            "merchant_category": ["grocery", "grocery", "no-such-category"],
            "event_timestamp": pa.array([0, 3_600_000_000, 7_200_000_000], pa.timestamp("us", tz="UTC")),
        }
    )
    out, errors = t.run(data, errors=True)
    assert out.num_rows == 3
    assert errors.column("row").to_pylist() == [1, 2]
    assert out.column("amount_log").to_pylist()[0] is not None
    assert out.column("amount_log").to_pylist()[1:] == [None, None]


def test_bad_input_raises_a_clear_exception():
    t = load("transformed_conv_rate")
    with pytest.raises(skewless.TransformError, match="conv_rate"):
        t.run(pa.table({"conv_rate": [1.0], "val_to_add": [1]}))  # float64, not float32
    with pytest.raises(skewless.TransformError, match="val_to_add"):
        t.run(pa.table({"conv_rate": pa.array([1.0], pa.float32())}))
    with pytest.raises(skewless.LoadError, match="no-such.wasm"):
        skewless.Transform.load("no-such.wasm")


def test_a_forked_child_loads_again_and_runs():
    t = load("transformed_conv_rate")
    data = pa.table({"conv_rate": pa.array([0.5], pa.float32()), "val_to_add": [1]})
    expected = t.run(data).column(0).to_pylist()
    pid = os.fork()
    if pid == 0:
        try:
            ok = t.run(data).column(0).to_pylist() == expected
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threads_run_at_once():
    # The GIL is released while a component runs: calls from threads succeed together.
    t = load("fraud_features")
    data = pq.read_table(EXPECTED / "fraud_features.input.parquet")
    results = []
    threads = [threading.Thread(target=lambda: results.append(t.run(data).num_rows)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [data.num_rows] * 4
