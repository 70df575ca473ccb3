"""The S3-compatible remote (Cloudflare R2, AWS S3, moto in the tests) behind a small, blocking API.

boto3 is configured exactly as for R2: ``endpoint_url``, path-style addressing, region ``auto``,
connect/read timeouts, and no botocore retries (``total_max_attempts=1``): the retry policy is
ours, in one place (:class:`RetryPolicy`): exponential backoff with full jitter on timeouts,
dropped or reset connections, truncated responses, HTTP 429 and 5xx; never on 4xx (bad
credentials, no such bucket, access denied), which are reported at once in words.

Every failure leaves as :class:`RemoteError` with ``kind`` ``offline`` (the endpoint could not
be reached or kept failing) or ``error`` (it answered with a refusal), and a message with the
secrets scrubbed out. Conditional writes (``If-None-Match: *``, ``If-Match: ETAG``) that do
not hold raise :class:`PreconditionFailed`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from app.storage.sync.config import Credentials, RemoteConfig, redact

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                   "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "BadDigest"}
AUTH_WORDS = {
    "InvalidAccessKeyId": "the remote does not know this access key: check the credentials",
    "SignatureDoesNotMatch": "the remote rejected the secret key (signature mismatch): check the credentials",
    "AccessDenied": "the remote denied access with these credentials",
    "InvalidToken": "the session token was rejected: check the credentials",
    "ExpiredToken": "the credentials have expired",
    "NoSuchBucket": "there is no such bucket at this endpoint",
    "RequestTimeTooSkewed": "this computer's clock is too far off for the remote to accept requests",
}


class RemoteError(Exception):
    def __init__(self, message: str, kind: str = "error", status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.kind = kind  # offline | error
        self.status = status
        self.code = code


class PreconditionFailed(RemoteError):
    """A conditional write found the key present (If-None-Match) or changed (If-Match)."""


class ObjectTooLarge(RemoteError):
    pass


@dataclass
class RetryPolicy:
    """Up to ``attempts`` tries of one request, with full-jitter backoff between them, and no new
    try once ``budget_s`` has passed since the first began: a stalled endpoint (each try ends at
    the read timeout) is then reported ``offline`` after one or two timeouts, not five, and the
    scheduler's own backoff takes over. Quick failures (a reset, a 503) still get every try."""

    attempts: int = 5
    base_s: float = 0.25
    cap_s: float = 8.0
    budget_s: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return self.rand() * min(self.cap_s, self.base_s * (2 ** attempt))


@dataclass
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 30.0


@dataclass
class Counters:
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    retries: int = 0
    parts_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def _unwrap(exc: BaseException) -> BaseException:
    """The real cause behind boto3's transfer wrappers."""
    seen = 0
    while seen < 5:
        inner = getattr(exc, "last_exception", None) or exc.__cause__
        if inner is None and type(exc).__name__ == "S3UploadFailedError":
            inner = exc.__context__
        if inner is None:
            return exc
        exc, seen = inner, seen + 1
    return exc


# what a bare status means to the user, when the reply says no more
STATUS_WORDS = {
    400: " (a request it does not accept: check the endpoint is an S3 service)",
    401: " (not signed in): check the credentials",
    403: " (access refused): check the credentials, and that they may use this bucket",
    404: " (not found): check the endpoint and the bucket",
    500: " (a server error, or a reply that is not S3's: check the endpoint)",
    502: " (a server error)",
    503: " (the service is unavailable)",
}


def classify(exc: BaseException) -> tuple[bool, str, int | None, str | None]:
    """(retry?, kind, http status, error code) for an exception from boto3/botocore."""
    from botocore import exceptions as bx

    exc = _unwrap(exc)
    if isinstance(exc, bx.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        if status in TRANSIENT_STATUS or code in TRANSIENT_CODES:
            return True, "offline", status, code
        return False, "error", status, code
    if isinstance(exc, bx.SSLError):
        return False, "error", None, "SSLError"
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | ConnectionError | TimeoutError):
        return True, "offline", None, type(exc).__name__
    try:
        from botocore.response import IncompleteReadError
        from urllib3.exceptions import HTTPError as U3Error
    except ImportError:  # pragma: no cover
        return False, "error", None, None
    if isinstance(exc, IncompleteReadError | U3Error):
        return True, "offline", None, type(exc).__name__
    return False, "error", None, type(exc).__name__


_lock = threading.Lock()
_session = None
_clients: dict[tuple, object] = {}


def s3_client(cfg: RemoteConfig, creds: Credentials, timeouts: Timeouts):
    """A boto3 S3 client configured as for R2. Clients are cached per endpoint, credentials and
    timeouts (creating one costs ~150 ms of JSON loading; they are thread-safe once made)."""
    import boto3
    from botocore.config import Config

    global _session
    key = (cfg.endpoint, cfg.region, creds.access_key_id, creds.secret_access_key, creds.session_token,
           timeouts.connect_s, timeouts.read_s)
    with _lock:
        client = _clients.get(key)
        if client is not None:
            return client
        if _session is None:
            _session = boto3.session.Session()
        client = _session.client(
            "s3", endpoint_url=cfg.endpoint, region_name=cfg.region,
            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            config=Config(
                region_name=cfg.region,
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=timeouts.connect_s,
                read_timeout=timeouts.read_s,
                retries={"total_max_attempts": 1, "mode": "standard"},  # no botocore retries: ours only
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=8,
            ))
        if len(_clients) >= 8:
            _clients.pop(next(iter(_clients)))
        _clients[key] = client
        return client


class Remote:
    """One bucket/prefix on an S3-compatible endpoint. Thread-safe (boto3 clients are)."""

    def __init__(self, cfg: RemoteConfig, creds: Credentials, retry: RetryPolicy | None = None,
                 timeouts: Timeouts | None = None):
        self.cfg = cfg
        self.creds = creds
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.counters = Counters()
        self.client = s3_client(cfg, creds, self.timeouts)

    def _attempt(self) -> None:
        self.counters.add(requests=1)

    @property
    def bucket(self) -> str:
        return self.cfg.bucket

    # ------------------------------------------------------------------ retry core
    def words(self, exc: BaseException, what: str) -> RemoteError:
        retry, kind, status, code = classify(exc)
        inner = _unwrap(exc)
        if kind == "error" and code in AUTH_WORDS:
            msg = f"{AUTH_WORDS[code]} ({code}, {self.cfg.describe()})"
        elif status is not None:
            # a reply with no error document gets its status as its code ("HTTP 403 403")
            detail = f" {code}" if code and code != str(status) else ""
            msg = f"{what}: the remote answered HTTP {status}{detail}{STATUS_WORDS.get(status, '')}"
        elif kind == "offline":
            msg = f"cannot reach {self.cfg.endpoint}: {type(inner).__name__}: {inner}"
        else:
            msg = f"{what}: {type(inner).__name__}: {inner}"
        cls = PreconditionFailed if status == 412 else RemoteError
        return cls(redact(msg, self.creds), kind, status, code)

    def call(self, what: str, fn: Callable[[], object]):
        """Run ``fn`` under the retry policy; a final failure becomes a RemoteError."""
        attempt, began = 0, self.retry.clock()
        while True:
            try:
                self._attempt()
                return fn()
            except RemoteError:
                raise
            except Exception as exc:
                retry, kind, status, code = classify(exc)
                if status == 412:
                    raise self.words(exc, what) from None
                spent = self.retry.clock() - began >= self.retry.budget_s
                if not retry or attempt + 1 >= self.retry.attempts or spent:
                    err = self.words(exc, what)
                    if retry:
                        err = RemoteError(f"{err} (after {attempt + 1} tries)", err.kind, err.status, err.code)
                    raise err from None
                delay = self.retry.delay(attempt)
                log.info("%s failed (%s), retry %d in %.2fs", what, code or kind, attempt + 1, delay)
                self.counters.add(retries=1)
                self.retry.sleep(delay)
                attempt += 1

    # ------------------------------------------------------------------ objects
    def get(self, key: str, max_bytes: int) -> tuple[bytes, str] | None:
        """(body, etag), or None when there is no such key. Bodies over ``max_bytes`` are refused."""
        from botocore.exceptions import ClientError

        def once():
            try:
                r = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            body = r["Body"]
            try:
                length = r.get("ContentLength")
                if length is not None and length > max_bytes:
                    raise ObjectTooLarge(f"{key}: {length} bytes is over the limit of {max_bytes}")
                data = body.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise ObjectTooLarge(f"{key}: over the limit of {max_bytes} bytes")
                if length is not None and len(data) != length:
                    from botocore.response import IncompleteReadError

                    raise IncompleteReadError(actual_bytes=len(data), expected_bytes=length)
            finally:
                body.close()
            self.counters.add(bytes_down=len(data))
            return data, r.get("ETag", "")

        return self.call(f"reading {key}", once)

    def head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        def once():
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

        return self.call(f"checking {key}", once)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None,
            content_type: str = "application/octet-stream", metadata: dict | None = None) -> str:
        kw: dict = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type}
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        if metadata:
            kw["Metadata"] = metadata

        def once():
            r = self.client.put_object(**kw)
            self.counters.add(bytes_up=len(data))
            return r.get("ETag", "")

        return self.call(f"writing {key}", once)

    def list(self, prefix: str, *, start_after: str | None = None,
             delimiter: str | None = None) -> Iterator[tuple[str, dict]]:
        """Yields ("key", object) and ("prefix", {"Prefix": ...}) in key order, page by page."""
        token = None
        while True:
            kw: dict = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if start_after:
                kw["StartAfter"] = start_after
            if delimiter:
                kw["Delimiter"] = delimiter
            if token:
                kw["ContinuationToken"] = token
            page = self.call(f"listing {prefix}", lambda kw=kw: self.client.list_objects_v2(**kw))
            for cp in page.get("CommonPrefixes", []) or []:
                yield "prefix", cp
            for obj in page.get("Contents", []) or []:
                yield "key", obj
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                return

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i:i + 1000]]
            self.call("deleting old objects",
                      lambda chunk=chunk: self.client.delete_objects(
                          Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}))

    def unfinished_uploads(self, prefix: str) -> Iterator[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of the multipart uploads under ``prefix`` never completed."""
        kw: dict = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self.call(f"listing unfinished uploads under {prefix}",
                             lambda kw=dict(kw): self.client.list_multipart_uploads(**kw))
            for u in page.get("Uploads", []) or []:
                yield u["Key"], u["UploadId"], u["Initiated"]
            if not page.get("IsTruncated") or not page.get("NextKeyMarker"):
                return
            kw.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page.get("NextUploadIdMarker", ""))

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.call(f"aborting the unfinished upload of {key}", lambda: self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id))

    # ------------------------------------------------------------------ files
    multipart_bytes = 16 * 1024 * 1024  # above this, uploads and downloads go in parts of this size

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.multipart_bytes, multipart_chunksize=self.multipart_bytes,
                              max_concurrency=4, num_download_attempts=1, use_threads=True)

    def upload_file(self, key: str, path: Path, progress: Callable[[int], None] | None = None,
                    metadata: dict | None = None) -> None:
        """Upload a file; ``progress(bytes)`` per chunk sent. Above ``multipart_bytes`` it goes in
        parts and is resumable: an upload cut off by a crash, a kill or a lost network continues
        with the parts the remote does not hold yet (see :meth:`_upload_parts`)."""
        size = path.stat().st_size
        if size > self.multipart_bytes:
            self._upload_parts(key, path, size, progress, metadata or {})
            return
        extra = {"Metadata": metadata} if metadata else None

        def once():
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Callback=progress,
                                    Config=self._transfer_config())
            self.counters.add(bytes_up=size)

        self.call(f"uploading {key}", once)

    def _unfinished_upload(self, key: str) -> tuple[str | None, dict[int, tuple[str, int]]]:
        """The id of an unfinished multipart upload of ``key`` and the parts it already holds."""
        ids = [upload_id for k, upload_id, _ in self.unfinished_uploads(key) if k == key]
        if not ids:
            return None, {}
        upload_id = ids[-1]
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            r = self.call("listing uploaded parts", lambda m=marker: self.client.list_parts(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=m))
            for p in r.get("Parts", []):
                parts[int(p["PartNumber"])] = (p["ETag"], int(p["Size"]))
            if not r.get("IsTruncated"):
                return upload_id, parts
            marker = int(r.get("NextPartNumberMarker", 0))

    def _upload_parts(self, key: str, path: Path, size: int, progress, metadata: dict) -> None:
        part_size = self.multipart_bytes
        upload_id, held = self._unfinished_upload(key)
        if upload_id is None:
            upload_id = self.call(f"starting the upload of {key}", lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=metadata))["UploadId"]
        count = (size + part_size - 1) // part_size
        etags: list[str] = []
        with open(path, "rb") as fh:
            for number in range(1, count + 1):
                fh.seek((number - 1) * part_size)
                data = fh.read(part_size)
                etag = held.get(number)
                # a part the remote already holds with the same bytes (its ETag is the part's MD5)
                if etag and etag[1] == len(data) and etag[0].strip('"') == hashlib.md5(data).hexdigest():
                    etags.append(etag[0])
                else:
                    r = self.call(f"uploading part {number}/{count} of {key}",
                                  lambda n=number, d=data: self.client.upload_part(
                                      Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=d))
                    etags.append(r["ETag"])
                    self.counters.add(bytes_up=len(data), parts_up=1)
                if progress:
                    progress(len(data))
        self.call(f"completing the upload of {key}", lambda: self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i} for i, e in enumerate(etags, 1)]}))

    def download_file(self, key: str, dest: Path, progress: Callable[[int], None] | None = None) -> None:
        def once():
            dest.unlink(missing_ok=True)
            self.client.download_file(self.bucket, key, str(dest), Callback=progress,
                                      Config=self._transfer_config())
            self.counters.add(bytes_down=dest.stat().st_size)

        self.call(f"downloading {key}", once)
