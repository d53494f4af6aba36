from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.aws import IngestStack, create_ingest_stack


@pytest.fixture
def stack() -> Iterator[IngestStack]:
    with mock_aws():
        yield create_ingest_stack()
