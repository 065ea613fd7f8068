"""A small Hugging Face Hub on 127.0.0.1 for tests: the HTTP endpoints the real `huggingface_hub` client calls for
create_repo, upload_folder (preupload, LFS batch + basic transfer, commit) and snapshot_download /
hf_hub_download (revision info, resolve with HEAD and GET), for model and Space repos (Space variables too).
Repos live in memory. Clients must set
HF_ENDPOINT to `server.url` and HF_HUB_DISABLE_XET=1 (the Xet storage protocol is not spoken here).

Writes require `Authorization: Bearer <token>` with the server's token; every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    private: bool = False
    sdk: str | None = None  # Spaces only
    variables: dict[str, str] = field(default_factory=dict)  # Spaces only


KINDS = "(models|spaces)"  # the API's plural for each repo type


class FakeHub:
    def __init__(self, token: str = "hf_test_token", user: str = "alice"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}  # model repos
        self.spaces: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

            def do_PUT(self):
                hub._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ plumbing
    def _reply(self, h, status: int, body: bytes | dict | None = None, headers: dict | None = None, head=False):
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        body = body or b""
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status, message, head=False):
        headers = {"X-Error-Message": message}
        if message == "Repository not found":  # as the Hub marks it, so the client raises RepositoryNotFoundError
            headers["X-Error-Code"] = "RepoNotFound"
        self._reply(h, status, {"error": message}, headers, head=head)

    def _authorized(self, h) -> bool:
        return h.headers.get("Authorization") == f"Bearer {self.token}"

    def _handle(self, h, method: str):
        path = urlparse(h.path).path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, path))
        try:
            self._route(h, method, path, body)
        except Exception as e:  # report server bugs to the client instead of hanging it
            self._error(h, 500, f"fake hub error: {e!r}")

    # ------------------------------------------------------------------ routes
    def _store(self, kind: str) -> dict[str, Repo]:
        return self.spaces if kind in ("spaces", "space") else self.repos

    def _route(self, h, method, path, body):
        head = method == "HEAD"
        if method == "POST" and path == "/api/repos/create":
            if not self._authorized(h):
                return self._error(h, 401, "Invalid credentials")
            data = json.loads(body)
            repo_id = f"{data.get('organization') or self.user}/{data['name']}"  # no namespace: the token's user
            kind = data.get("type", "model")
            if kind not in ("model", "space"):
                return self._error(h, 400, f"repo type {kind} is not served here")
            if kind == "space" and not data.get("sdk"):
                return self._error(h, 400, "a Space needs an sdk")
            url = f"{self.url}/{'spaces/' if kind == 'space' else ''}{repo_id}"
            store = self._store(kind)
            with self.lock:
                if repo_id in store:  # the real Hub's reply: 409 with the existing repo's url
                    return self._reply(h, 409, {"error": f"You already created this {kind} repo", "url": url},
                                       {"X-Error-Message": f"You already created this {kind} repo"})  # fmt: skip
                store[repo_id] = Repo(private=bool(data.get("private")), sdk=data.get("sdk"))
            return self._reply(h, 200, {"url": url, "name": repo_id})

        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_card(h, json.loads(body)["content"])

        m = re.fullmatch(r"/api/spaces/(.+?)/variables", path)
        if m and method == "POST":
            if not self._authorized(h):
                return self._error(h, 401, "Invalid credentials")
            space = self.spaces.get(m.group(1))
            if space is None:
                return self._error(h, 404, "Repository not found")
            data = json.loads(body)
            space.variables[data["key"]] = data["value"]
            return self._reply(h, 200, {k: {"value": v} for k, v in space.variables.items()})

        m = re.fullmatch(rf"/api/{KINDS}/(.+?)/preupload/([^/]+)", path)
        if m and method == "POST":
            files = json.loads(body)["files"]
            return self._reply(
                h,
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if f["path"].endswith(".safetensors") or f["size"] > 100_000 else "regular",
                            "shouldIgnore": False,
                        }
                        for f in files
                    ]
                },
            )

        m = re.fullmatch(r"/(?:spaces/)?(.+?)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            if not self._authorized(h):
                return self._error(h, 401, "Invalid credentials")
            objects = []
            for o in json.loads(body)["objects"]:
                entry = {"oid": o["oid"], "size": o["size"]}
                if o["oid"] not in self.lfs:
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}
                objects.append(entry)
            return self._reply(h, 200, {"transfer": "basic", "objects": objects})

        m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)
        if m and method == "PUT":
            if hashlib.sha256(body).hexdigest() != m.group(1):
                return self._error(h, 400, "sha256 mismatch")
            self.lfs[m.group(1)] = body
            return self._reply(h, 200, b"")

        m = re.fullmatch(rf"/api/{KINDS}/(.+?)/commit/([^/]+)", path)
        if m and method == "POST":
            if not self._authorized(h):
                return self._error(h, 401, "Invalid credentials")
            repo = self._store(m.group(1)).get(m.group(2))
            if repo is None:
                return self._error(h, 404, "Repository not found")
            for line in body.decode().splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    repo.files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in self.lfs:
                        return self._error(h, 400, f"LFS object {value['oid']} was never uploaded")
                    repo.files[value["path"]] = self.lfs[value["oid"]]
                elif key == "deletedFile":
                    repo.files.pop(value["path"], None)
            sha = hashlib.sha1(
                json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in repo.files.items())).encode()
                + str(len(repo.commits)).encode()
            ).hexdigest()
            repo.commits.append(sha)
            prefix = "spaces/" if m.group(1) == "spaces" else ""
            return self._reply(h, 200, {"commitUrl": f"{self.url}/{prefix}{m.group(2)}/commit/{sha}", "commitOid": sha})

        m = re.fullmatch(rf"/api/{KINDS}/(.+?)/tree/([^/]+)(?:/(.*))?", path)
        if m and method == "GET":
            repo = self._readable(h, m.group(2), m.group(1))
            if repo is None:
                return self._error(h, 404, "Repository not found")
            prefix = (unquote(m.group(4)).rstrip("/") + "/") if m.group(4) else ""
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in sorted(repo.files.items())
                if name.startswith(prefix)
            ]
            return self._reply(h, 200, entries)

        m = re.fullmatch(rf"/api/{KINDS}/(.+?)(?:/revision/([^/]+))?", path)
        if m and method == "GET":
            repo = self._readable(h, m.group(2), m.group(1))
            if repo is None:
                return self._error(h, 404, "Repository not found", head)
            sha = repo.commits[-1] if repo.commits else "0" * 40
            siblings = [{"rfilename": n} for n in sorted(repo.files)]
            info = {"id": m.group(2), "sha": sha, "private": repo.private, "siblings": siblings}
            if m.group(1) == "models":
                info["modelId"] = m.group(2)
            else:
                info["sdk"] = repo.sdk
            return self._reply(h, 200, info)

        m = re.fullmatch(r"/(spaces/)?(.+?)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo = self._readable(h, m.group(2), "spaces" if m.group(1) else "models")
            if repo is None:
                return self._reply(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=head)
            name = unquote(m.group(4))
            if name not in repo.files:
                return self._reply(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head=head)
            data = repo.files[name]
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": repo.commits[-1], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            return self._reply(h, 200, data, headers, head=head)

        return self._error(h, 404, f"no route for {method} {path}", head)

    def _validate_card(self, h, content: str):
        """The Hub's model-card metadata check, for the fields a model card of ours must get right."""
        import yaml

        errors = []
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        meta = {}
        if not match:
            errors.append("README.md has no YAML front matter")
        else:
            try:
                meta = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError as e:
                errors.append(f"invalid YAML: {e}")
        if isinstance(meta, dict) and match:
            if not isinstance(meta.get("tags", []), list):
                errors.append('"tags" must be a list')
            if "library_name" in meta and not isinstance(meta["library_name"], str):
                errors.append('"library_name" must be a string')
            if "datasets" in meta and not isinstance(meta["datasets"], list):
                errors.append('"datasets" must be a list')
        if errors:
            return self._reply(h, 400, {"errors": [{"message": e} for e in errors]})
        return self._reply(h, 200, {"errors": [], "warnings": []})

    def _readable(self, h, repo_id, kind: str = "models") -> Repo | None:
        repo = self._store(kind).get(repo_id)
        if repo is None or (repo.private and not self._authorized(h)):
            return None
        return repo
