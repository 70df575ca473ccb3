"""Nothing secret reaches the log file: messages, arguments and tracebacks are redacted."""

from __future__ import annotations

import io
import logging

from app.logs import RedactingFormatter, redact_text, remember_secrets


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_presigned_url_signature_and_credential_are_hidden():
    url = ("https://acct.r2.cloudflarestorage.com/reels/media/ab?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=AKIAEXAMPLEKEY%2F20261121%2Fauto%2Fs3%2Faws4_request"
           "&X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&x=1")
    logger, out = _logger()
    logger.info("GET %s failed", url)
    text = out.getvalue()
    assert "AKIAEXAMPLEKEY" not in text and "9f86d081884c" not in text
    assert "acct.r2.cloudflarestorage.com/reels/media/ab" in text and "&x=1" in text  # the rest stays readable


def test_url_user_info_and_secret_fields_are_hidden():
    text = redact_text("endpoint https://key:hunter22@example.com/x, aws_secret_access_key = abcd1234, "
                       "Authorization: AWS4-HMAC-SHA256")
    assert "hunter22" not in text and "abcd1234" not in text and "AWS4-HMAC" not in text
    assert "example.com/x" in text


def test_a_remembered_secret_is_hidden_in_tracebacks_too():
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    remember_secrets([secret, "", "abc"])  # empty and too-short values are ignored
    logger, out = _logger()
    try:
        raise RuntimeError(f"signing failed with {secret}")
    except RuntimeError:
        logger.exception("sync round failed")
    text = out.getvalue()
    assert "RuntimeError: signing failed with ***" in text
    assert secret not in text
    assert "abc" in redact_text("abc")
