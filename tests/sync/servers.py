"""Real network parts for the sync tests: a moto S3 server on loopback and a fault-injecting proxy.

The proxy speaks just enough HTTP/1.1 to work per request: it reads one request from the
client, forwards it to the server with ``Connection: close`` (so the reply, and the client's
connection, end with it), and relays the reply, unless a fault is queued for that request:

- ``"reset"``: read the request, then reset the connection (RST);
- ``"drop"``: close the connection without reading or answering;
- ``"stall"``: read the request and answer nothing for ``stall_s`` seconds;
- ``"half"``: forward the request, then relay only the first half of the reply and close;
- an int (429, 500, 503, 403, ...): answer that status with an S3 XML error body;
- ``"bare:403"`` (any status): answer that status with no body, as some proxies and gateways do;
- ``"garbage"``: answer 200 with a body that is not S3's (a captive portal, a wrong endpoint).

It also counts the bytes each way (the benchmark's "bytes uploaded").
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import subprocess
import sys
import threading
import time

ERROR_CODES = {403: "InvalidAccessKeyId", 404: "NoSuchBucket", 429: "SlowDown", 500: "InternalError",
               503: "ServiceUnavailable"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = dict(os.environ)
        full.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket=name)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_bucket(bucket: str):
    """For a fixture: a moto S3 server on loopback holding ``bucket``, stopped afterwards."""
    server = MotoServer()
    server.make_bucket(bucket)
    yield server
    server.stop()


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


class FaultProxy:
    def __init__(self, upstream_port: int, stall_s: float = 3.0):
        self.upstream = ("127.0.0.1", upstream_port)
        self.stall_s = stall_s
        self.faults: collections.deque = collections.deque()
        self.seen: list[str] = []  # request lines, in order
        self.injected: list[object] = []
        self.bytes_in = 0  # from the client (uploads)
        self.bytes_out = 0  # to the client
        self.fault_filter = None  # optional: only requests whose line contains it get faults
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fault-proxy")
        self._thread.start()

    def inject(self, *faults, only: str | None = None) -> None:
        with self._lock:
            self.fault_filter = only
            self.faults.extend(faults)

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_in = self.bytes_out = 0
            self.seen.clear()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _next_fault(self, line: str):
        with self._lock:
            if not self.faults or (self.fault_filter and self.fault_filter not in line):
                return None
            f = self.faults.popleft()
            self.injected.append(f)
            return f

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            with self._lock:
                drop = self.faults and self.faults[0] == "drop" and not self.fault_filter
                if drop:
                    self.injected.append(self.faults.popleft())
            if drop:
                return
            try:
                head, rest = _read_head(conn)
            except (ConnectionError, OSError):
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            with self._lock:
                self.seen.append(line)
            fault = self._next_fault(line)
            length = int(_header(head, b"content-length") or 0)
            expect = (_header(head, b"expect") or b"").lower() == b"100-continue"
            if fault == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if isinstance(fault, str) and (fault.startswith("bare:") or fault == "garbage"):
                status, body = (int(fault[5:]), b"") if fault != "garbage" else (200, b"\x00\xffNOT XML <<<" * 20)
                conn.sendall(f"HTTP/1.1 {status} Injected\r\nContent-Length: {len(body)}\r\n"
                             f"Connection: close\r\n\r\n".encode() + body)
                return
            if isinstance(fault, int):
                code = ERROR_CODES.get(fault, "Error")
                body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                        f"<Message>injected {fault}</Message></Error>").encode()
                conn.sendall(f"HTTP/1.1 {fault} Injected\r\nContent-Type: application/xml\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                return
            if expect:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = rest
            try:
                while len(body) < length:
                    chunk = conn.recv(min(1 << 20, length - len(body)))
                    if not chunk:
                        return
                    body += chunk
            except OSError:
                return
            with self._lock:
                self.bytes_in += len(head) + 4 + len(body)
            if fault == "stall":
                self._stop.wait(self.stall_s)
                return
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"connection:", b"expect:"))]
            out_head = b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"
            try:
                with socket.create_connection(self.upstream, timeout=30) as up:
                    up.sendall(out_head + body)
                    reply = b""
                    while True:
                        chunk = up.recv(1 << 20)
                        if not chunk:
                            break
                        reply += chunk
                if fault == "half":
                    reply = reply[: max(1, len(reply) // 2)]
                conn.sendall(reply)
                with self._lock:
                    self.bytes_out += len(reply)
            except OSError:
                return


def use_test_credentials() -> None:
    """Credentials for the test S3 server, and never the user's keyring or the cloud metadata."""
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    os.environ["AWS_ACCESS_KEY_ID"] = "testing-key-id"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing-secret-key"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
