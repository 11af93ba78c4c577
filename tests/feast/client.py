"""Feast 0.67's own client against `skewless serve`: a feature store whose
online store is the remote one (Feast's `RemoteOnlineStoreConfig`), with
the products view declared as a Feast user would, reads list and vector
features and runs its vector search (`retrieve_online_documents_v2`, which
posts `/search`). Prints what it got as JSON for tests/feast.rs to check.

Usage: python client.py http://127.0.0.1:PORT PRODUCT_ID
"""
import json, os, sys, tempfile
from datetime import timedelta
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.repo_config import RegistryConfig
from feast.infra.online_stores.remote import RemoteOnlineStoreConfig
from feast.types import Array, Float32, Int64, String, ValueType

url, product_id = sys.argv[1], int(sys.argv[2])
work = tempfile.mkdtemp()
config = RepoConfig(
    project="products",
    provider="local",
    registry=RegistryConfig(path=os.path.join(work, "registry.db")),
    online_store=RemoteOnlineStoreConfig(type="remote", path=url),
    entity_key_serialization_version=3,
)
store = FeatureStore(config=config)
product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.INT64)
source = FileSource(path=os.path.join(work, "unused.parquet"), timestamp_field="event_timestamp")
view = FeatureView(
    name="product_embeddings",
    entities=[product],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="product_id", dtype=Int64),
        Field(name="title", dtype=String),
        Field(name="words", dtype=Array(String)),
        Field(name="embedding", dtype=Array(Float32), vector_index=True, vector_search_metric="COSINE"),
    ],
    source=source,
    online=True,
)
store.apply([product, view])
read = store.get_online_features(
    features=["product_embeddings:title", "product_embeddings:words", "product_embeddings:embedding"],
    entity_rows=[{"product_id": product_id}, {"product_id": 7}],
).to_dict()
query = read["embedding"][0]
found = store.retrieve_online_documents_v2(
    features=["product_embeddings:title", "product_embeddings:embedding"],
    query=query,
    top_k=5,
    distance_metric="cosine",
).to_dict()
print(json.dumps({"read": read, "found": found}, default=str))
