"""A loopback HTTP server that speaks the Hugging Face Hub's file download protocol (what huggingface_hub reads).

``HEAD``/``GET {endpoint}/[datasets/]{owner}/{repo}/resolve/{revision}/{path}`` answer with the headers
``huggingface_hub.file_download`` relies on: ``X-Repo-Commit`` (the commit the revision points to), ``ETag`` (the
blob id, here the file's sha256), ``Content-Length``, ``Accept-Ranges``; a ``Range: bytes=N-`` request gets
``206`` with ``Content-Range`` (how huggingface_hub resumes a dropped download). Unknown files get ``404`` with
``X-Error-Code: EntryNotFound``, unknown repos ``401`` with ``X-Error-Code: RepoNotFound``, as the Hub does.
``drop_once[path] = n`` makes the first GET of that file send ``n`` body bytes and close the connection.
"""
from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>(?:datasets/)?[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class FakeHub:
    def __init__(self):
        self.files: Dict[Tuple[str, str], bytes] = {}  # (repo path, file) -> bytes
        self.drop_once: Dict[str, int] = {}
        self.requests: List[Tuple[str, str, str]] = []  # file requests: (method, path, Range header)
        self._server = None
        self._thread = None

    def add(self, repo_id: str, filename: str, data: bytes, repo_type: str = "model") -> None:
        prefix = "datasets/" if repo_type == "dataset" else ""
        self.files[(prefix + repo_id, filename)] = bytes(data)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _lookup(self):
                m = _RESOLVE.match(self.path.split("?", 1)[0])
                if not m:
                    return None, None
                repo, name = m.group("repo"), unquote(m.group("file"))
                return repo, hub.files.get((repo, name))

            def _error(self, code: int, error_code: str) -> None:
                body = f"{error_code}".encode()
                self.send_response(code)
                self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", error_code)
                if error_code == "EntryNotFound":
                    self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self, with_body: bool) -> None:
                if "/resolve/" not in self.path:  # other API calls (huggingface_hub's own housekeeping)
                    return self._error(404, "EntryNotFound")
                hub.requests.append((self.command, self.path, self.headers.get("Range", "")))
                repo, data = self._lookup()
                if data is None:
                    known_repo = repo is not None and any(r == repo for r, _ in hub.files)
                    return self._error(404, "EntryNotFound") if known_repo else self._error(401, "RepoNotFound")
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not with_body:
                    return
                name = unquote(_RESOLVE.match(self.path.split("?", 1)[0]).group("file"))
                cut = hub.drop_once.pop(name, None)
                if cut is not None:  # a dropped connection mid-file
                    self.wfile.write(data[start:start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data[start:])

            def do_HEAD(self):
                self._serve(False)

            def do_GET(self):
                self._serve(True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
