"""What the AWS routers share: one boto3 client per router, every call off the event loop.

boto3 blocks, so each call runs in a worker thread (``asyncio.to_thread``);
botocore's low-level clients may be shared between threads, so one client per
router is built, lazily and once, on its first call (building one reads the
credential chain and the service model, which is slow and blocking too).

Credentials come from botocore's default chain (environment, IRSA web identity,
shared files, instance or task role): nothing here reads, stores or prints
them. Errors become :class:`AwsError` with AWS's own code and message, which
name the resource and never carry a secret.

Retries are botocore's "standard" mode (throttling such as ``Throttling`` and
``PriorRequestNotComplete``, 5xx, connection errors and timeouts, with jittered
exponential backoff) up to ``max_attempts`` attempts per call, the first one
included (3 by default, botocore's own default); what is still failing after
that is an :class:`AwsError` for the reconcile loop, which shows it in a
condition and retries the whole pass with its own, longer backoff.

boto3 and botocore are imported at the first call, not with this module: the
traffic registry imports every router, and importing them would cost every
operator start ~0.3 s whether or not an upgrade routes through AWS.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from bluegreen.traffic import base


class AwsError(base.RouterError):
    """An AWS call failed; ``code`` is AWS's error code (``NoSuchHostedZone``...) or None if AWS was not reached."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AwsClient:
    """One service's client for one router, called from the event loop."""

    def __init__(
        self,
        *,
        service: str,
        region: str | None,
        endpoint_url: str | None,
        timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"the AWS call timeout must be positive, got {timeout}s")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.service = service
        self.region = region
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AwsClient(service={self.service!r}, region={self.region!r}, endpoint_url={self.endpoint_url!r})"

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (boto3's snake_case name) with ``params``; the parsed reply."""
        return await asyncio.to_thread(self._call, operation, params)

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        import botocore.exceptions

        action = "".join(word.capitalize() for word in operation.split("_"))
        try:
            client = self._get_client()
            reply = getattr(client, operation)(**params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "Unknown")
            message = str(error.get("Message") or exc)
            raise AwsError(f"{self.service} {action} refused: {code}: {message}", code=code) from None
        except botocore.exceptions.NoRegionError:
            raise AwsError(
                f"{self.service} needs a region: set aws.region in the router, or AWS_REGION for the operator"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            # Connection refused, timeouts, no credentials, a reply that is not AWS's:
            # botocore's message names the endpoint or the missing piece.
            raise AwsError(f"{self.service} {action} failed: {exc}") from None
        assert isinstance(reply, dict)
        return reply

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3.session
                import botocore.config

                config = botocore.config.Config(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    # total_max_attempts counts the first request too; botocore's max_attempts would count retries.
                    retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                )
                self._client = boto3.session.Session().client(
                    self.service, region_name=self.region, endpoint_url=self.endpoint_url, config=config,
                )
            return self._client
