"""A stand-in for the Lambda context object, with the attributes Powertools reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "11111111-2222-4333-8444-555555555555"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000
