"""The remote (endpoint, bucket, prefix, region) kept in the database, and the credentials, never kept
there: they come from the OS keyring (service ``reelforge``, written by the GUI) or from boto3's
default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, shared config and credentials
files). Environment variables win over the keyring, so a script can always say which keys to use.

Nothing here logs or returns a secret: :class:`Credentials` hides them from ``repr``, and
:func:`redact` scrubs them (and AWS signature fragments) from any text shown to the user.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.logs import redact_text, remember_secrets
from app.storage.models import SyncRemote, utcnow

log = logging.getLogger(__name__)

KEYRING_SERVICE = "reelforge"
KEYRING_ACCESS_KEY = "access_key_id"
KEYRING_SECRET_KEY = "secret_access_key"

BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_PART_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
REGION_RE = re.compile(r"[a-z0-9-]{1,64}")


class ConfigError(ValueError):
    """An invalid remote setting (the message says which and why)."""


@dataclass(frozen=True)
class RemoteConfig:
    endpoint: str
    bucket: str
    prefix: str = ""
    region: str = "auto"

    @property
    def identity(self) -> str:
        """What the sync state (cursors, pushed marks) belongs to: another remote starts afresh."""
        return f"{self.endpoint}|{self.bucket}|{self.prefix}"

    def describe(self) -> str:
        return f"{self.endpoint} bucket {self.bucket}" + (f" prefix {self.prefix}" if self.prefix else "")

    def as_dict(self) -> dict:
        return {"endpoint": self.endpoint, "bucket": self.bucket, "prefix": self.prefix, "region": self.region}


def validate(endpoint: str, bucket: str, prefix: str | None = None, region: str | None = None) -> RemoteConfig:
    endpoint = (endpoint or "").strip()
    if "@" in endpoint:  # user:password@, whatever the scheme (or none), and never echoed
        raise ConfigError("--endpoint must not contain credentials (user:password@): use the keyring or "
                          "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # not echoed: what was typed may be a key pasted into the wrong field
        given = f"it starts with {parts.scheme}://" if parts.scheme and "://" in endpoint else "it is not a URL"
        raise ConfigError(f"--endpoint must be an http(s) URL like https://ACCOUNT.r2.cloudflarestorage.com "
                          f"({given})")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ConfigError("--endpoint is the service URL only (no path, query or fragment); the bucket and "
                          "prefix are separate options")
    bucket = (bucket or "").strip()
    if not BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(f"--bucket must be 3-63 lowercase letters, digits, dots or hyphens, not {bucket!r}")
    prefix = (prefix or "").strip().strip("/")
    if prefix:
        segs = prefix.split("/")
        if len(prefix) > 400 or any(s in (".", "..") or not PREFIX_PART_RE.fullmatch(s) for s in segs):
            raise ConfigError(f"--prefix must be path segments of letters, digits, '.', '_' or '-' "
                              f"(no empty, '.' or '..' segments), not {prefix!r}")
    region = (region or "auto").strip()
    if not REGION_RE.fullmatch(region):
        raise ConfigError(f"--region must be a region name like auto or us-east-1, not {region!r}")
    return RemoteConfig(endpoint.rstrip("/"), bucket, prefix, region)


def load(session: Session) -> RemoteConfig | None:
    row = session.get(SyncRemote, 1)
    if row is None:
        return None
    return RemoteConfig(row.endpoint, row.bucket, row.prefix, row.region)


def save(session: Session, cfg: RemoteConfig) -> None:
    row = session.get(SyncRemote, 1)
    if row is None:
        session.add(SyncRemote(id=1, endpoint=cfg.endpoint, bucket=cfg.bucket, prefix=cfg.prefix,
                               region=cfg.region, updated_at=utcnow()))
    else:
        row.endpoint, row.bucket, row.prefix, row.region = cfg.endpoint, cfg.bucket, cfg.prefix, cfg.region
        row.updated_at = utcnow()


def clear(session: Session) -> bool:
    row = session.get(SyncRemote, 1)
    if row is None:
        return False
    session.delete(row)
    return True


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str = "environment"

    def secrets(self) -> list[str]:
        return [s for s in (self.secret_access_key, self.session_token, self.access_key_id) if s]


def _keyring():
    try:
        import keyring

        return keyring
    except Exception:  # pragma: no cover - keyring is a dependency, but never let it break sync
        return None


def store_credentials(access_key_id: str, secret_access_key: str) -> None:
    """For the GUI's settings dialog: keep the keys in the OS keyring (never in the database)."""
    kr = _keyring()
    if kr is None:
        raise RuntimeError("no OS keyring is available on this system")
    kr.set_password(KEYRING_SERVICE, KEYRING_ACCESS_KEY, access_key_id)
    kr.set_password(KEYRING_SERVICE, KEYRING_SECRET_KEY, secret_access_key)


def clear_credentials() -> None:
    kr = _keyring()
    if kr is None:
        return
    for name in (KEYRING_ACCESS_KEY, KEYRING_SECRET_KEY):
        try:
            kr.delete_password(KEYRING_SERVICE, name)
        except Exception:
            pass


def _from_keyring() -> Credentials | None:
    kr = _keyring()
    if kr is None:
        return None
    try:
        key = kr.get_password(KEYRING_SERVICE, KEYRING_ACCESS_KEY)
        secret = kr.get_password(KEYRING_SERVICE, KEYRING_SECRET_KEY)
    except Exception as exc:  # no backend (headless Linux without a secret service), locked, ...
        log.info("keyring unavailable: %s", type(exc).__name__)
        return None
    return Credentials(key, secret, source="keyring") if key and secret else None


def _from_default_chain() -> Credentials | None:
    import botocore.session

    bs = botocore.session.get_session()
    resolver = bs.get_component("credential_provider")
    for name in ("iam-role", "container-role"):  # a desktop app is not on EC2/ECS: no metadata probes
        try:
            resolver.remove(name)
        except Exception:
            pass
    try:
        creds = bs.get_credentials()
    except Exception as exc:
        log.info("default credential chain failed: %s", type(exc).__name__)
        return None
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        return None
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token, source=creds.method or "aws")


def resolve_credentials() -> Credentials | None:
    """The credentials to sign with; their values are also handed to the log's redaction."""
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        creds: Credentials | None = Credentials(
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ.get("AWS_SESSION_TOKEN") or None, source="environment")
    else:
        creds = _from_keyring() or _from_default_chain()
    if creds is not None:
        remember_secrets(creds.secrets())
    return creds


# --------------------------------------------------------------------------- redaction

def redact(text: str, creds: Credentials | None = None) -> str:
    """``text`` as :func:`app.logs.redact_text` leaves it, these credentials' values included
    (they are remembered for the log too: keys typed for a connection test are secrets as well)."""
    if creds is not None:
        remember_secrets(creds.secrets())
    return redact_text(text)
