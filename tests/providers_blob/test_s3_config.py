"""blobstore-s3 link configuration: where each setting comes from and what is refused
(pure functions, no S3 needed)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from contracts.blobstore import ListObjectsRequest
from lattice.provider import ProviderError
from providers.blobstore_fs import byte_range, select_keys
from providers.blobstore_s3 import DEFAULT_REGION, link_config

ENV = {"AWS_ACCESS_KEY_ID": "env-id", "AWS_SECRET_ACCESS_KEY": "env-secret",
       "AWS_REGION": "eu-west-1", "AWS_ENDPOINT": "http://env:9000"}


def test_later_sources_win(tmp_path: Path) -> None:
    assert link_config({}, {}).region == DEFAULT_REGION
    cfg = link_config({}, ENV)
    assert (cfg.access_key_id, cfg.region, cfg.endpoint) == ("env-id", "eu-west-1",
                                                             "http://env:9000")
    env_file = tmp_path / "x.env"
    env_file.write_text("AWS_REGION=us-west-2\n")
    assert link_config({"env": str(env_file)}, ENV).region == "us-west-2"
    doc = {"region": "ap-south-1", "endpoint": "https://json:1", "aliases": {"a": "bucket-a"}}
    cfg = link_config({"config_b64": base64.b64encode(json.dumps(doc).encode()).decode(),
                       "env": str(env_file)}, ENV)
    assert (cfg.region, cfg.endpoint, cfg.aliases) == ("ap-south-1", "https://json:1",
                                                       {"a": "bucket-a"})
    cfg = link_config({"config_json": json.dumps(doc), "region": "ca-central-1",
                       "alias_b": "bucket-b"}, ENV)
    assert cfg.region == "ca-central-1"
    assert [cfg.bucket(n) for n in ("a", "alias_a", "b", "alias_b", "c")] == [
        "bucket-a", "bucket-a", "bucket-b", "bucket-b", "c"]


@pytest.mark.parametrize(("values", "message"), [
    ({"endpoint": "localhost:9000"}, "must be an http:// or https:// URL"),
    ({"region": "Not A Region"}, "is not a region name"),
    ({"config_json": "[]"}, "must be a JSON object"),
    ({"config_json": "{}", "config_b64": "e30="}, "both set"),
    ({"config_json": '{"aliases": {"a": 1}}'}, "aliases must be an object"),
    ({"config_json": '{"sts_config": {"role": "r"}}'}, "sts_config (assume role) is not"),
    ({"config_json": '{"max_attempts": 0}'}, "max_attempts must be a positive integer"),
    ({"secret_access_key": "s"}, "access_key_id is missing"),
    ({"alias_x": " "}, "alias 'x' maps to an empty bucket name"),
])
def test_bad_values(values: dict[str, str], message: str) -> None:
    with pytest.raises(ProviderError, match=re.escape(message)):
        link_config(values, {})


def test_ranges_and_listing_bounds() -> None:
    assert byte_range(10, None, None) == (0, 10)
    assert byte_range(10, 2, 4) == (2, 5)  # inclusive end
    assert byte_range(10, 8, 99) == (8, 10)
    assert byte_range(10, 12, None) == (12, 12)
    assert byte_range(0, None, None) == (0, 0)
    keys = ["a", "b", "c", "d"]
    assert select_keys(keys, ListObjectsRequest(max_items=2)) == (["a", "b"], False)
    assert select_keys(keys, ListObjectsRequest(continuation="b")) == (["c", "d"], True)
    assert select_keys(keys, ListObjectsRequest(start_with="b", end_with="c")) == (
        ["b", "c"], True)
    assert select_keys(keys, ListObjectsRequest(max_items=2, end_before="c")) == (
        ["a", "b"], True)
