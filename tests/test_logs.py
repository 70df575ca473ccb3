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


def test_the_apps_own_words_about_secrets_stay_readable():
    from app.storage.sync.remote import AUTH_WORDS

    for words in AUTH_WORDS.values():  # "the remote rejected the secret key", not "the secret ***"
        assert redact_text(words) == words
    assert redact_text("bucket team-secret prefix season/2025") == "bucket team-secret prefix season/2025"
    assert redact_text('{"secret": "abcd1234", "token":"efgh5678"}') == '{"secret": "***", "token":"***"}'


def test_user_info_is_hidden_whatever_the_scheme():
    for url in ("s3://AKIAKEY:hunter22@127.0.0.1", "ftp://AKIAKEY:hunter22@host/x", "AKIAKEY:hunter22@host",
                "endpoint 'AKIAKEY:hunter22@host'"):
        text = redact_text(url)
        assert "hunter22" not in text and "AKIAKEY" not in text, text
    assert redact_text("mail me at someone@example.com") == "mail me at someone@example.com"


def test_an_endpoint_with_a_key_in_it_is_refused_without_echoing_it():
    import pytest

    from app.storage.sync.config import ConfigError, validate

    for endpoint in ("s3://AKIAKEY:hunter22@127.0.0.1", "AKIAKEY:hunter22@127.0.0.1", "http://AKIAKEY:ab/cd@host",
                     "hunter22hunter22"):
        with pytest.raises(ConfigError) as err:
            validate(endpoint, "reels")
        assert "hunter22" not in str(err.value) and "AKIAKEY" not in str(err.value), err.value
    with pytest.raises(ConfigError, match="starts with s3://"):
        validate("s3://bucket.example.com", "reels")


def test_the_clis_error_line_is_redacted(capsys):
    from app.cli import error_line

    remember_secrets(["wJalrXUtnFEMI-K7MDENG-cli-secret"])
    error_line("RuntimeError: signing with wJalrXUtnFEMI-K7MDENG-cli-secret failed; aws_secret=abcd1234")
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: signing with *** failed; aws_secret=***\n"


def test_a_log_that_cannot_be_written_stays_off_stderr(tmp_path, capsys):
    """A full disk under the log: the records are dropped and counted, and stderr (the CLI's
    contract: progress and the error line only) gets no "--- Logging error ---" tracebacks."""
    import os

    from app.logs import SharedRotatingFileHandler

    if not os.path.exists("/dev/full"):
        import pytest

        pytest.skip("needs /dev/full")
    (tmp_path / "reelforge.log").symlink_to("/dev/full")
    handler = SharedRotatingFileHandler(tmp_path / "reelforge.log", maxBytes=10_000, backupCount=2, encoding="utf-8")
    logger = logging.getLogger("tests.full")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        for i in range(3):
            logger.warning("record %d %s", i, "x" * 5000)
    finally:
        handler.close()
        logger.handlers[:] = []
    assert capsys.readouterr().err == ""
    assert handler.failed >= 1


CHILD = """
import logging, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["REELFORGE_LOG_DIR"] = sys.argv[2]
import app.logs as logs
logs.LOG_MAX_BYTES, logs.LOG_BACKUPS = 100_000, 40
logs.setup_logging()
log = logging.getLogger("tests.rotate")
for i in range(int(sys.argv[4])):
    log.info("%s seq %06d %s", sys.argv[3], i, "y" * 140)
"""


def test_two_processes_writing_the_log_at_once_lose_no_line(tmp_path):
    """The window and a CLI command write one rotating log. Each rotating the file the other had
    just started pushed history out early: a fifth of the lines were lost."""
    import re
    import subprocess
    import sys

    from tests.conftest import ROOT

    n = 4000  # x 2 writers x about 200 bytes: 1.6 MB, well within the 41 x 100 kB kept
    writers = [subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(tmp_path), tag, str(n)])
               for tag in ("GUI", "CLI")]
    for w in writers:
        assert w.wait(120) == 0
    seen: dict[str, set[int]] = {"GUI": set(), "CLI": set()}
    for f in tmp_path.glob("reelforge.log*"):
        for line in f.read_text(encoding="utf-8").splitlines():
            m = re.search(r" (GUI|CLI) seq (\d{6}) y{140}$", line)
            assert m, line  # no line torn or mixed with another
            seen[m.group(1)].add(int(m.group(2)))
    assert {k: len(v) for k, v in seen.items()} == {"GUI": n, "CLI": n}
