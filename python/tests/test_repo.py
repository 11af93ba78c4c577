"""`skewless.Repo` and `skewless.Client` against the CLI and the server.

tests/python.rs passes SKEWLESS_BIN (the `skewless` binary of this build)
and SKEWLESS_REPO (the driver_stats example repo with its sample data,
component paths pointing at the built examples, not applied yet). Every
test works on its own copy.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import skewless
from conftest import BIN, TEMPLATE, cli, cli_backfilled, copy_repo, same_bits

FEATURES = [
    "driver_hourly_stats:conv_rate",
    "driver_hourly_stats:acc_rate",
    "driver_hourly_stats:avg_daily_trips",
]


def spine(rows=100_000, seed=5):
    """`rows` labelled events over the sample's drivers and hours (and a few
    unknown drivers and times before the data)."""
    data = pq.read_table(TEMPLATE / "data/driver_stats.parquet", columns=["driver_id", "event_timestamp"])
    times = data.column("event_timestamp").cast(pa.int64()).to_numpy()
    lo, hi = int(times.min()) - 86_400_000_000, int(times.max()) + 3_600_000_000
    import numpy as np

    random = np.random.default_rng(seed)
    return pa.table(
        {
            "driver_id": pa.array(random.integers(1001, 2010, rows), pa.int64()),
            "event_timestamp": pa.array(random.integers(lo, hi, rows), pa.timestamp("us", tz="UTC")),
            "label": pa.array(random.integers(0, 2, rows), pa.int64()),
        }
    )


def test_apply_backfill_and_verify_equal_the_cli(tmp_path):
    expected = cli_backfilled(tmp_path)
    with skewless.Repo(str(copy_repo(tmp_path))) as repo:
        plan = repo.apply()
        assert "driver_hourly_stats" in plan
        assert repo.apply() == "", "a second apply changes nothing"
        [summary] = repo.backfill()
        assert summary["view"] == "driver_hourly_stats" and summary["rows_written"] == 720_000
        report = repo.verify(samples=50, seed=7)
        assert report["ok"] and report["compared"] > 0, report
        ours = repo.content_digest()
    with skewless.Repo(str(expected)) as cli_repo:
        assert ours == cli_repo.content_digest()


def test_verify_returns_the_clis_report(tmp_path):
    """The same report type as `skewless verify`: the same text, line for
    line (tiles and the store's digest included), and the same verdict."""
    repo_dir = cli_backfilled(tmp_path)
    printed = cli(repo_dir, "verify", "--samples", "40", "--seed", "11")
    with skewless.Repo(str(repo_dir)) as repo:
        report = repo.verify(samples=40, seed=11)
    assert report["ok"] and report["tile_mismatches"] == 0, report
    assert report["text"] == printed
    assert "content digest" in report["text"] and report["content_digest"] in printed
    assert report["summary"].endswith("(seed 11)")


def test_get_historical_features_equals_skewless_dataset(tmp_path):
    repo_dir = cli_backfilled(tmp_path)
    rows = spine()
    pq.write_table(rows, tmp_path / "spine.parquet")
    cli(repo_dir, "dataset", "--spine", str(tmp_path / "spine.parquet"), "--out", str(tmp_path / "out.parquet"),
        "--features", ",".join(FEATURES))
    expected = pq.read_table(tmp_path / "out.parquet")
    with skewless.Repo(str(repo_dir)) as repo:
        import pandas
        import polars

        for given in [rows, polars.from_arrow(rows), rows.to_pandas()]:
            got = repo.get_historical_features(given, features=FEATURES)
            assert got.num_rows == 100_000
            for name in ["conv_rate", "acc_rate", "avg_daily_trips"]:
                assert same_bits(got.column(name), expected.column(name)), (type(given), name)
            lineage = json.loads(got.schema.metadata[b"skewless.lineage"])
            cli_lineage = json.loads(pq.read_metadata(tmp_path / "out.parquet").metadata[b"skewless.lineage"])
            assert lineage["views"] == cli_lineage["views"]
            assert lineage["store_commit"] == cli_lineage["store_commit"]
        assert isinstance(rows.to_pandas(), pandas.DataFrame)


def test_a_bad_spine_raises_what_the_cli_says(tmp_path):
    repo_dir = cli_backfilled(tmp_path)
    rows = spine(10)
    with skewless.Repo(str(repo_dir)) as repo:
        with pytest.raises(skewless.Error, match="column `event_timestamp` is missing"):
            repo.get_historical_features(rows.drop_columns(["event_timestamp"]), features=FEATURES)
        with pytest.raises(skewless.Error, match="column `driver_id` is Float64"):
            repo.get_historical_features(rows.set_column(0, "driver_id", pc.cast(rows.column(0), pa.float64())),
                                         features=FEATURES)
        with pytest.raises(skewless.Error, match="no_such_view"):
            repo.get_historical_features(rows, features=["no_such_view:x"])
    with pytest.raises(skewless.Error, match="skewless apply"):
        skewless.Repo(str(copy_repo(tmp_path, "never_applied"))).get_online_features(FEATURES, {"driver_id": [1001]})


def test_get_online_features_equals_the_servers_answer_and_push_is_read_back(tmp_path):
    repo_dir = cli_backfilled(tmp_path)
    entities = {"driver_id": [1001, 1500, 5], "val_to_add": [3]}
    features = FEATURES + ["transformed_conv_rate:conv_rate_plus_val1"]
    with skewless.Repo(str(repo_dir)) as repo:
        ours = repo.get_online_features(features, entities)
        past = repo.get_online_features(features, entities, as_of="2000-01-01T00:00:00Z")
    assert ours.statuses["conv_rate"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert past.statuses["conv_rate"] == ["NOT_FOUND"] * 3
    names = list(ours.to_dict())
    assert names[0] == "driver_id" and names[-4:] == ["conv_rate", "acc_rate", "avg_daily_trips", "conv_rate_plus_val1"]
    assert ours.to_pandas().shape == (3, len(names))

    server = subprocess.Popen([BIN, "--repo", str(repo_dir), "serve", "--addr", "127.0.0.1:0"],
                              stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in server.stderr:
            found = re.search(r"on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the server did not start"
        client = skewless.Client(url)
        theirs = client.get_online_features(features, entities)
        for name, column in ours.to_pyarrow().to_pydict().items():
            typed = pa.array(theirs.to_dict()[name], ours.to_pyarrow().schema.field(name).type)
            assert same_bits(pa.chunked_array([typed]), ours.to_pyarrow().column(name)), name
        assert theirs.statuses == ours.statuses
        assert theirs.event_timestamps == ours.event_timestamps
        assert theirs.digests == ours.digests

        pushed = client.push("driver_stats_push_source", [
            {"driver_id": 1001, "event_timestamp": "2100-01-01T00:00:00Z", "created": "2100-01-01T00:00:00Z",
             "conv_rate": 0.25, "acc_rate": 0.5, "avg_daily_trips": 7},
        ])
        assert pushed["rows"] == 1
        after = client.get_online_features(FEATURES, {"driver_id": [1001]}).to_dict()
        assert after["avg_daily_trips"] == [7]
        with pytest.raises(skewless.Error, match="400"):
            client.get_online_features(["no_such_view:x"], {"driver_id": [1]})
    finally:
        server.terminate()
        server.wait(timeout=30)

    with skewless.Repo(str(repo_dir)) as repo:
        result = repo.push("driver_stats_push_source", pa.table({
            "driver_id": [1002], "event_timestamp": pa.array([4_102_444_800_000_000], pa.timestamp("us", tz="UTC")),
            "created": pa.array([4_102_444_800_000_000], pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array([0.75], pa.float32()), "acc_rate": pa.array([0.5], pa.float32()),
            "avg_daily_trips": [9]}))
        assert result["views"] == ["driver_hourly_stats"]
        assert repo.get_online_features(FEATURES, {"driver_id": [1002]}).to_dict()["avg_daily_trips"] == [9]
        with pytest.raises(skewless.Error, match="unknown push source `nope`"):
            repo.push("nope", {"driver_id": [1]})


def products_backfilled(tmp_path):
    """The products example (titles embedded as vector<128>), applied and backfilled by the CLI."""
    import shutil

    repo = tmp_path / "products"
    shutil.copytree(os.environ["SKEWLESS_PRODUCTS_REPO"], repo, ignore=shutil.ignore_patterns(".skewless"))
    cli(repo, "apply")
    cli(repo, "backfill")
    return repo


def test_search_equals_the_clis_with_a_numpy_query_or_an_entity(tmp_path):
    import numpy as np

    repo_dir = products_backfilled(tmp_path)
    cli_answer = json.loads(cli(repo_dir, "search", "product_embeddings", "--like", "product_id=42", "-k", "6", "--json"))
    names = cli_answer["metadata"]["feature_names"]
    column = lambda name: cli_answer["results"][names.index(name)]["values"]
    with skewless.Repo(str(repo_dir)) as repo:
        liked = repo.search("product_embeddings", like={"product_id": 42}, k=6)
        embedding = repo.get_online_features(["product_embeddings:embedding"], {"product_id": [42]})
        query = np.array(embedding.to_pyarrow().column("embedding")[0].as_py(), dtype=np.float32)
        by_vector = repo.search("product_embeddings", query, k=6, features=["title"])
        with pytest.raises(skewless.Error, match="query has 3 components, but the feature is vector<128>"):
            repo.search("product_embeddings", np.zeros(3, dtype=np.float32))
        with pytest.raises(skewless.Error, match="product_id=99999999 has no stored vector"):
            repo.search("product_embeddings", like={"product_id": 99_999_999})
        with pytest.raises(skewless.Error, match="top_k is 0"):
            repo.search("product_embeddings", query, k=0)
    for answer in (liked, by_vector):
        got = answer.to_dict()
        assert got["product_id"] == column("product_id")
        # float32 distances, the same bits as the CLI's JSON.
        assert [np.float32(d) for d in got["distance"]] == [np.float32(d) for d in column("distance")]
    assert list(liked.to_dict()) == ["product_id", "title", "words", "distance"]
    assert list(by_vector.to_dict()) == ["product_id", "title", "distance"]
    assert by_vector.to_dict()["title"] == column("title")


def test_search_as_of_a_spine_takes_numpy_vectors_from_pandas_and_equals_the_cli(tmp_path):
    import numpy as np
    import pandas as pd

    repo_dir = products_backfilled(tmp_path)
    with skewless.Repo(str(repo_dir)) as repo:
        online = repo.get_online_features(["product_embeddings:embedding"], {"product_id": [1, 2, 3]})
    vectors = [np.array(v, dtype=np.float32) for v in online.to_pyarrow().column("embedding").to_pylist()]
    # A pandas column of numpy arrays (pyarrow sees list<float>), at a time after the data.
    spine = pd.DataFrame({
        "event_timestamp": pd.to_datetime(["2100-01-01T00:00:00Z"] * 3),
        "query": vectors,
    })
    with skewless.Repo(str(repo_dir)) as repo:
        ours = repo.get_historical_features(spine, [], nearest="product_embeddings", k=4)
    spine_path = tmp_path / "queries.parquet"
    flat = pa.array(np.concatenate(vectors), pa.float32())
    pq.write_table(pa.table({
        "event_timestamp": pa.array([4_102_444_800_000_000] * 3, pa.timestamp("us", tz="UTC")),
        "query": pa.FixedSizeListArray.from_arrays(flat, 128),
    }), spine_path)
    cli(repo_dir, "dataset", "--spine", str(spine_path), "--nearest", "product_embeddings", "-k", "4",
        "--out", str(tmp_path / "nearest.parquet"))
    theirs = pq.read_table(tmp_path / "nearest.parquet")
    for name in ("nearest_product_id", "nearest_distance"):
        assert ours.column(name).to_pylist() == theirs.column(name).to_pylist(), name
    # Each product's own vector is found at distance 0.
    assert [d[0] for d in ours.column("nearest_distance").to_pylist()] == [0.0, 0.0, 0.0]


def test_the_address_space_of_a_capped_worker_is_enough(tmp_path):
    # Spark caps a Python worker's address space (spark.executor.pyspark.memory):
    # a component load, a run and a whole backfill fit in 2 GiB, where wasmtime's
    # default reservation alone is 4 GiB per instance.
    components = pathlib.Path(os.environ["SKEWLESS_COMPONENTS"])
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import pyarrow as pa, skewless
n = 65_536
data = pa.table({{"conv_rate": pa.array([i / n for i in range(n)], pa.float32()),
                  "acc_rate": pa.array([1 - i / n for i in range(n)], pa.float32()),
                  "avg_daily_trips": pa.array(range(n), pa.int64())}})
t = skewless.Transform.load({str(components / "driver_hourly_stats.wasm")!r})
out = t.run(data)
assert out.num_rows == n, out.num_rows
with skewless.Repo({str(copy_repo(tmp_path))!r}) as repo:
    repo.apply()
    [s] = repo.backfill()
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmPeak")][0]
print("ran", out.num_rows, s["rows_written"], "peak", peak, "kB")
"""
    env = dict(os.environ, SKEWLESS_CACHE_DIR=str(tmp_path / "capped-cache"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "ran 65536 720000" in out.stdout, out.stdout


def test_backfill_incremental_loads_a_delta_tables_new_versions_only(tmp_path):
    """A Delta table written by `deltalake` (version 0, then an append):
    `backfill()` loads version 0, `backfill(incremental=True)` only what
    version 1 added, and the store equals the CLI's from the whole Parquet."""
    import deltalake
    expected = cli_backfilled(tmp_path)
    repo_dir = copy_repo(tmp_path)
    config = repo_dir / "skewless.toml"
    config.write_text(
        config.read_text().replace(
            'type = "file"\npath = "data/driver_stats.parquet"\n', 'type = "delta"\npath = "data/stats"\n'
        )
    )
    rows = pq.read_table(repo_dir / "data/driver_stats.parquet")
    half = rows.num_rows // 2
    deltalake.write_deltalake(str(repo_dir / "data/stats"), rows.slice(0, half))
    with skewless.Repo(str(repo_dir)) as repo:
        repo.apply()
        [first] = repo.backfill()
        assert (first["rows_written"], first["table_version"]) == (half, 0)
        deltalake.write_deltalake(str(repo_dir / "data/stats"), rows.slice(half), mode="append")
        [new] = repo.backfill(incremental=True)
        assert (new["rows_written"], new["table_version"]) == (rows.num_rows - half, 1)
        with pytest.raises(skewless.Error, match="give no `start` or `end`"):
            repo.backfill(incremental=True, start="2021-01-01")
        ours = repo.content_digest()
    with skewless.Repo(str(expected)) as cli_repo:
        assert ours == cli_repo.content_digest()
