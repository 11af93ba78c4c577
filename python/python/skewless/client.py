"""`skewless.Client`: the online read and push against a running
`skewless serve`, over its Feast-compatible HTTP API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from . import _values
from ._skewless import Error
from ._values import OnlineResponse


class Client:
    """A client of `skewless serve` at `url` (e.g. `http://127.0.0.1:6566`).
    `token` is sent as a bearer token when given."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _post(self, path: str, body: str) -> Any:
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                detail = json.loads(text)
                text = f"{detail.get('code', e.code)}: {detail.get('message', text)}"
            except ValueError:
                pass
            raise Error(f"{self.url}{path} answered {e.code}: {text}") from None
        except urllib.error.URLError as e:
            raise Error(f"cannot reach {self.url}: {e.reason}") from None

    def get_online_features(
        self,
        features: Sequence[str],
        entities: Mapping[str, Sequence[Any]],
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """`POST /get-online-features`. Values come back as JSON types
        (floats as float64)."""
        entities_json = _values.columns_json(dict(entities))
        body = (
            f'{{"features": {json.dumps(list(features))}, "entities": {entities_json}, '
            f'"full_feature_names": {json.dumps(full_feature_names)}, "include_lineage": true}}'
        )
        return _values.response_from_http(self._post("/get-online-features", body), entities.keys())

    def push(self, source: str, rows: Any, to: str = "online") -> dict[str, Any]:
        """`POST /push`: `rows` as for `Repo.push`."""
        body = f'{{"push_source_name": {json.dumps(source)}, "df": {_values.columns_json(rows)}, "to": {json.dumps(to)}}}'
        return self._post("/push", body)
