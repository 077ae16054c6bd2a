"""A minimal Hugging Face Hub-compatible HTTP server on 127.0.0.1 for offline publish/download tests.

It implements the endpoints `huggingface_hub.HfApi` and `hf_hub_download` call for a model repo: repo creation,
preupload (every file "regular", so no LFS/Xet transfer), NDJSON commits, repo info / file tree, and
HEAD/GET of `/<repo>/resolve/<revision>/<path>` with the headers the client reads (`X-Repo-Commit`, `ETag`,
`Content-Length`, `X-Error-Code`). Storage is in memory: one snapshot `{path: bytes}` per commit.

Run standalone with `python tests/hub_server.py` (prints the URL), or use `HubServer()` as a context manager.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self) -> None:
        self.commits: list[tuple[str, dict[str, bytes]]] = []

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if not self.commits:
            return None
        if revision in ("main", "HEAD"):
            return self.commits[-1]
        for sha, files in self.commits:
            if sha == revision:
                return sha, files
        return None

    def commit(self, files: dict[str, bytes], message: str) -> str:
        digest = hashlib.sha1(f"{len(self.commits)}:{message}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        sha = digest.hexdigest()
        self.commits.append((sha, files))
        return sha


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.lock = threading.Lock()
        self.unknown_requests: list[str] = []


def _git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "TinyHub/1.0"
    state: HubState  # set on the subclass

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- helpers
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(
            status, body, {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}, head
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # -- routing
    def do_HEAD(self) -> None:  # noqa: N802
        self._resolve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlparse(self.path).path)
        if path.startswith("/api/models/"):
            self._api_get(path[len("/api/models/") :])
        else:
            self._resolve(head=False)

    def do_POST(self) -> None:  # noqa: N802
        path = unquote(urlparse(self.path).path)
        if path == "/api/repos/create":
            return self._create_repo()
        if path == "/api/validate-yaml":
            return self._validate_yaml()
        m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit|paths-info)/(.+)$", path)
        if m:
            repo_id, action, revision = m.groups()
            return getattr(self, "_" + action.replace("-", "_"))(repo_id, revision)
        self.state.unknown_requests.append(f"POST {path}")
        self._error(404, "NotFound", f"unsupported endpoint POST {path}")

    # -- endpoints
    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        repo_id = (
            f"{payload.get('organization')}/{payload['name']}" if payload.get("organization") else payload["name"]
        )
        with self.state.lock:
            if repo_id in self.state.repos:
                return self._json(
                    409, {"error": "You already created this model repo", "url": f"{self._endpoint()}/{repo_id}"}
                )
            repo = _Repo()
            repo.commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            self.state.repos[repo_id] = repo
        self._json(200, {"url": f"{self._endpoint()}/{repo_id}", "name": repo_id})

    def _validate_yaml(self) -> None:
        """The README metadata block must be a YAML mapping (the real Hub checks much more)."""
        import yaml

        content = json.loads(self._body()).get("content", "")
        m = re.match(r"^---\n(.*?)\n---", content, flags=re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as err:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {err}"}]}, {"X-Error-Code": "BadRequest"})
        if not isinstance(meta, dict):
            return self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
        self._json(200, {"errors": [], "warnings": []})

    def _repo(self, repo_id: str, head: bool = False) -> _Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
        return repo

    def _preupload(self, repo_id: str, revision: str) -> None:
        if self._repo(repo_id) is None:
            return
        payload = json.loads(self._body())
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in payload["files"]
        ]
        self._json(200, {"files": files, "commitOid": None})

    def _commit(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.state.lock:
            current = repo.snapshot(revision)
            if current is None:
                return self._error(404, "RevisionNotFound", f"revision {revision} not found")
            files = dict(current[1])
            message = ""
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    data = value["content"].encode()
                    files[value["path"]] = base64.b64decode(data) if value.get("encoding") == "base64" else data
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {k: v for k, v in files.items() if not k.startswith(prefix)}
                else:
                    return self._error(400, "BadRequest", f"unsupported commit operation {key!r} (LFS is not served)")
            sha = repo.commit(files, message)
        self._json(
            200, {"commitUrl": f"{self._endpoint()}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None}
        )

    def _paths_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        raw = self._body().decode()
        try:
            paths = json.loads(raw).get("paths", [])
        except json.JSONDecodeError:
            from urllib.parse import parse_qs

            paths = parse_qs(raw).get("paths", [])
        sha, files = repo.snapshot(revision) or ("", {})
        self._json(
            200,
            [
                {"type": "file", "path": p, "size": len(files[p]), "oid": _git_sha(files[p])}
                for p in paths
                if p in files
            ],
        )

    def _api_get(self, rest: str) -> None:
        m = re.match(r"^([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$", rest)
        if not m:
            self.state.unknown_requests.append(f"GET /api/models/{rest}")
            return self._error(404, "NotFound", f"unsupported endpoint GET /api/models/{rest}")
        repo_id, kind, revision, _sub = m.groups()
        repo = self._repo(repo_id)
        if repo is None:
            return
        snap = repo.snapshot(revision or "main")
        if snap is None:
            return self._error(404, "RevisionNotFound", f"revision {revision} not found")
        sha, files = snap
        if kind == "tree":
            return self._json(
                200,
                [{"type": "file", "path": p, "size": len(d), "oid": _git_sha(d)} for p, d in sorted(files.items())],
            )
        self._json(
            200,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": False,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(files.items())],
            },
        )

    def _resolve(self, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not m:
            self.state.unknown_requests.append(f"{'HEAD' if head else 'GET'} {path}")
            return self._error(404, "NotFound", f"unsupported endpoint {path}", head)
        repo_id, revision, filename = m.groups()
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        snap = repo.snapshot(revision)
        if snap is None:
            return self._error(404, "RevisionNotFound", f"revision {revision} not found", head)
        sha, files = snap
        if filename not in files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}", head)
        data = files[filename]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_sha(data)}"', "Content-Type": "application/octet-stream"}
        self._send(200, data, headers, head)


class HubServer:
    """`with HubServer() as hub: hub.url` serves a fresh in-memory Hub on a free port of 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        snap = self.state.repos[repo_id].snapshot(revision)
        return dict(snap[1]) if snap else {}

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    with HubServer(port=0) as hub:
        print(hub.url, flush=True)
        threading.Event().wait()
