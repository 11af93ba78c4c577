"""Feast 0.67's own client calls `materialize`, `materialize_incremental` and
`write_to_online_store` on `skewless serve` through its remote configuration
(`online_store: type: remote`): in remote topology Feast posts
`/materialize`, `/materialize-incremental` and `/write-to-online-store`.
Prints what happened as JSON for tests/feast.rs to check.

Usage: python materialize.py http://127.0.0.1:PORT STEP [START] END
  STEP: materialize | incremental | write
"""
import json, os, sys, tempfile
from datetime import datetime, timezone

import pandas as pd
from datetime import timedelta
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Float32, Int64, ValueType
from feast.infra.online_stores.remote import RemoteOnlineStoreConfig
from feast.repo_config import RegistryConfig

url, step = sys.argv[1], sys.argv[2]
times = [datetime.fromtimestamp(int(t) / 1e6, tz=timezone.utc) for t in sys.argv[3:]]
work = tempfile.mkdtemp()
store = FeatureStore(config=RepoConfig(
    project="driver_stats",
    provider="local",
    registry=RegistryConfig(path=os.path.join(work, "registry.db")),
    online_store=RemoteOnlineStoreConfig(type="remote", path=url),
    entity_key_serialization_version=3,
))
views = ["driver_hourly_stats"]
if step == "materialize":
    store.materialize(start_date=times[0], end_date=times[1], feature_views=views)
    print(json.dumps({"ok": True}))
elif step == "incremental":
    store.materialize_incremental(end_date=times[0], feature_views=views)
    print(json.dumps({"ok": True}))
elif step == "write":
    # Feast looks the view up in its own registry before posting: declare it as a Feast user would.
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    store.apply([driver, FeatureView(
        name="driver_hourly_stats",
        entities=[driver],
        ttl=timedelta(days=1),
        schema=[Field(name="driver_id", dtype=Int64),
                Field(name="conv_rate", dtype=Float32), Field(name="acc_rate", dtype=Float32),
                Field(name="avg_daily_trips", dtype=Int64)],
        source=FileSource(path=os.path.join(work, "unused.parquet"), timestamp_field="event_timestamp"),
        online=True,
    )])
    try:
        store.write_to_online_store(
            "driver_hourly_stats",
            pd.DataFrame({"driver_id": [1001], "event_timestamp": [times[0]], "conv_rate": [0.5],
                          "acc_rate": [0.5], "avg_daily_trips": [7]}),
        )
        print(json.dumps({"ok": True}))
    except Exception as e:  # what Feast raises on our refusal
        print(json.dumps({"ok": False, "error": str(e)}))
