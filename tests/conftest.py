"""Shared pytest fixtures."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One real SeaweedFS S3 server on 127.0.0.1 for the whole session."""
    from _s3server import start_server

    server = start_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


_bucket_ids = itertools.count()


@dataclass
class S3:
    endpoint_url: str
    storage_options: dict
    bucket: str
    fs: object

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@pytest.fixture
def s3(s3_server) -> S3:
    """A fresh, empty bucket on the session's S3 server."""
    fs = s3_server.filesystem()
    bucket = f"test-{next(_bucket_ids):04d}"
    fs.mkdir(bucket)
    return S3(s3_server.endpoint_url, s3_server.storage_options, bucket, fs)
