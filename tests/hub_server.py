"""An offline stand-in for the Hugging Face Hub, for tests.

Why it exists: tests and CI have no network access to huggingface.co, yet we want to exercise the *real*
``huggingface_hub`` / ``transformers`` HTTP code paths (``push_to_hub``, ``from_pretrained(repo_id)``,
``snapshot_download``, ``HfApi.upload_folder``, ``ModelCard.push_to_hub`` / ``ModelCard.load``) instead of
mocking them. ``HubServer`` is a small threaded HTTP server on 127.0.0.1 serving exactly the endpoints these
paths call (checked against huggingface_hub 2.4: ``hf_api.py``, ``_commit_api.py``, ``_upload_pipeline.py``,
``file_download.py``, ``_snapshot_download.py``, ``repocard.py``):

    GET      /api/whoami-v2                                 a fake user
    POST     /api/repos/create                              200, or 409 + url if it exists (``exist_ok`` relies on it)
    POST     /api/validate-yaml                             README.md front matter must be a YAML mapping
    GET      /api/{type}s/{ns}/{name}[/revision/{rev}]      repo_info / model_info (``sha``, ``siblings``)
    GET      /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]   list_repo_tree (``?recursive=true``)
    POST     /api/{type}s/{ns}/{name}/paths-info/{rev}      get_paths_info (form-encoded ``paths``)
    POST     /api/{type}s/{ns}/{name}/preupload/{rev}       always ``uploadMode: regular`` => no LFS, no Xet
    POST     /api/{type}s/{ns}/{name}/commit/{rev}          NDJSON: header, file (base64), deletedFile/deletedFolder
    POST     /api/{type}s/{ns}/{name}/branch/{branch}       create_branch (from ``startingPoint`` or main)
    GET|HEAD /[{type}s/]{ns}/{name}/resolve/{rev}/{path}    download: ``X-Repo-Commit``, ``ETag``, ``Content-Length``

No LFS or Xet: preupload answers "regular" for every file, so content travels inline (base64) in the commit,
and resolve responses carry no ``X-Xet-*`` headers, so clients fall back to a plain GET (even with ``hf_xet``
installed). Writes require an ``Authorization: Bearer`` header, like the real Hub; reads are public. Anything
else answers 404 and is recorded in ``HubServer.unhandled``. Storage: each commit is a full copy of the repo
tree under ``root/{type}s/{ns}/{name}/{commit_sha}/`` (test repos are tiny); branches live in memory.

The ``hub_server`` fixture starts one per test and points huggingface_hub/transformers at it (see there).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

FAKE_TOKEN = "hf_offline_test_token"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_oid(data: bytes) -> str:
    """The git blob sha1 of ``data``: the Hub's ETag/oid for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    def __init__(self, root: str | Path, user: str = "user"):
        self.root, self.user = Path(root), user
        self.commits: list[dict] = []  # one entry per commit, oldest first
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.unhandled: list[tuple[str, str]] = []  # requests that matched no endpoint
        self._refs: dict[tuple[str, str], dict[str, str]] = {}  # (repo_type, repo_id) -> {branch: commit}
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> HubServer:
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- storage ---------------------------------------------------------------------------------------------
    def repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        return f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"

    def resolve(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """Branch name or commit sha -> commit sha (raises HubError like the Hub would)."""
        with self._lock:
            refs = self._refs.get((repo_type, repo_id))
            if refs is None:
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
            if revision in refs:
                return refs[revision]
            if (self.root / f"{repo_type}s" / repo_id / revision).is_dir():
                return revision
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """All files of a repo at ``revision``, as ``{path_in_repo: content}``."""
        tree = self.root / f"{repo_type}s" / repo_id / self.resolve(repo_id, revision, repo_type)
        return {p.relative_to(tree).as_posix(): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}

    def create_repo(self, repo_id: str, repo_type: str = "model") -> bool:
        """Create a repo with an initial ``.gitattributes`` commit, like the Hub. False if it already exists."""
        with self._lock:
            if (repo_type, repo_id) in self._refs:
                return False
            self._refs[(repo_type, repo_id)] = {}
            self.commit(repo_id, repo_type, "main", {"summary": "initial commit"}, {".gitattributes": GITATTRIBUTES})
            return True

    def commit(self, repo_id, repo_type, branch, header, added, deleted=(), deleted_folders=()) -> str:
        with self._lock:
            refs = self._refs[(repo_type, repo_id)]
            parent = refs.get(branch)
            if parent is None and refs:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if header.get("parentCommit") not in (None, parent):
                raise HubError(412, f"Parent commit {header['parentCommit']} is not the head of {branch}")
            files = self.files(repo_id, parent, repo_type) if parent else {}
            for path in deleted:
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            for folder in deleted_folders:
                files = {p: d for p, d in files.items() if not p.startswith(folder.rstrip("/") + "/")}
            if any(p.startswith("/") or ".." in p.split("/") for p in added):
                raise HubError(400, "Invalid path in commit")
            files.update(added)
            tree_oids = sorted((p, git_oid(d)) for p, d in files.items())
            state = [parent, header.get("summary"), len(self.commits), tree_oids]
            sha = hashlib.sha1(json.dumps(state).encode()).hexdigest()
            tree = self.root / f"{repo_type}s" / repo_id / sha
            for path, data in files.items():
                (tree / path).parent.mkdir(parents=True, exist_ok=True)
                (tree / path).write_bytes(data)
            tree.mkdir(parents=True, exist_ok=True)
            refs[branch] = sha
            self.commits.append(
                {
                    "repo_id": repo_id,
                    "repo_type": repo_type,
                    "revision": branch,
                    "oid": sha,
                    "parent": parent,
                    "summary": header.get("summary"),
                    "description": header.get("description", ""),
                    "added": sorted(added),
                    "deleted": sorted([*deleted, *deleted_folders]),
                }  # fmt: skip
            )
            return sha

    def create_branch(self, repo_id: str, repo_type: str, branch: str, starting_point: str | None) -> None:
        with self._lock:
            sha = self.resolve(repo_id, starting_point or "main", repo_type)
            if branch in self._refs[(repo_type, repo_id)]:
                raise HubError(409, f"Branch {branch} already exists")
            self._refs[(repo_type, repo_id)][branch] = sha

    def entries(self, repo_id: str, repo_type: str, sha: str, prefix: str = "", recursive: bool = True) -> list[dict]:
        """Tree entries (files and folders) under ``prefix``, in the Hub's ``/tree`` / ``/paths-info`` format."""
        out: dict[str, dict] = {}
        for path, data in self.files(repo_id, sha, repo_type).items():
            if prefix and not path.startswith(prefix + "/"):
                continue
            parts = path[len(prefix) + 1 if prefix else 0 :].split("/")
            for i in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder = "/".join(filter(None, [prefix, *parts[:i]]))
                out[folder] = {"type": "directory", "oid": git_oid(folder.encode()), "size": 0, "path": folder}
            if recursive or len(parts) == 1:
                out[path] = {"type": "file", "oid": git_oid(data), "size": len(data), "path": path}
        return sorted(out.values(), key=lambda e: e["path"])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response sets Content-Length

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
        if not isinstance(body, bytes):
            body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        method = self.command
        hub.requests.append((method, self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        seg = [unquote(s) for s in url.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if seg[0] == "api" and method != "HEAD":
                if method == "POST" and seg[1:] != ["validate-yaml"]:
                    self._require_auth()
                result = self._api(hub, method, seg[1:], query, body)
            elif method in ("GET", "HEAD") and "resolve" in seg:
                result = self._resolve_file(hub, seg)
            else:
                result = None
            if result is None:
                hub.unhandled.append((method, self.path))
                raise HubError(404, f"test hub: no endpoint for {method} {url.path}")
            self._send(*result)
        except HubError as e:
            headers = {"X-Error-Message": e.message.encode("ascii", "replace").decode()}
            if e.code:
                headers["X-Error-Code"] = e.code
            if e.commit:
                headers["X-Repo-Commit"] = e.commit
            self._send(e.status, {"error": e.message}, headers)
        except Exception as e:  # malformed request (or a bug here): answer rather than drop the connection
            hub.unhandled.append((method, self.path))
            self._send(400, {"error": f"test hub: {e!r}"})

    do_GET = do_HEAD = do_POST = _dispatch

    def _require_auth(self) -> None:
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _api(self, hub: HubServer, method: str, seg: list[str], query: dict, body: bytes):
        if seg == ["whoami-v2"] and method == "GET":
            self._require_auth()
            auth = {"type": "access_token", "accessToken": {"displayName": "offline-test", "role": "write"}}
            return 200, {"type": "user", "name": hub.user, "fullname": "Test User", "orgs": [], "auth": auth}
        if seg == ["repos", "create"] and method == "POST":
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            if hub.create_repo(repo_id, repo_type):
                return 200, {"url": hub.repo_url(repo_id, repo_type), "name": repo_id}
            return 409, {
                "error": f"You already created this {repo_type} repo",
                "url": hub.repo_url(repo_id, repo_type),
            }
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body)["content"])
        if len(seg) < 3 or seg[0] not in ("models", "datasets", "spaces"):
            return None
        repo_type, repo_id, action = seg[0][:-1], f"{seg[1]}/{seg[2]}", seg[3:]
        if method == "GET" and (not action or action[0] == "revision"):
            sha = hub.resolve(repo_id, action[1] if action else "main", repo_type)
            files = hub.files(repo_id, sha, repo_type)
            siblings = [{"rfilename": p, "size": len(d), "blobId": git_oid(d)} for p, d in files.items()]
            info = {"id": repo_id, "author": seg[1], "sha": sha, "private": False, "siblings": siblings, "tags": []}
            return 200, {**info, "modelId": repo_id} if repo_type == "model" else info
        if len(action) < 2:
            return None
        verb, rev, rest = action[0], action[1], "/".join(action[2:])
        if verb == "branch" and method == "POST":
            hub.resolve(repo_id, "main", repo_type)  # 404 if the repo does not exist
            hub.create_branch(repo_id, repo_type, rev, (json.loads(body) if body else {}).get("startingPoint"))
            return 200, {}
        sha = hub.resolve(repo_id, rev, repo_type)
        if verb == "tree" and method == "GET":
            entries = hub.entries(repo_id, repo_type, sha, rest, recursive=query.get("recursive") in ("true", "True"))
            if rest and not entries:
                raise HubError(404, f"{rest} does not exist on {rev}", "EntryNotFound", sha)
            return 200, entries
        if verb == "paths-info" and method == "POST":
            paths = set(parse_qs(body.decode()).get("paths", []))
            all_entries = hub.entries(repo_id, repo_type, sha)
            return 200, [e for e in all_entries if e["path"] in paths]
        if verb == "preupload" and method == "POST":
            files = hub.files(repo_id, sha, repo_type)
            return 200, {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_oid(files[f["path"]]) if f["path"] in files else None,
                    }  # fmt: skip
                    for f in json.loads(body)["files"]
                ],
                "commitOid": sha,
            }
        if verb == "commit" and method == "POST":
            return self._commit(hub, repo_id, repo_type, rev, query, body)
        return None

    def _commit(self, hub: HubServer, repo_id: str, repo_type: str, branch: str, query: dict, body: bytes):
        if query.get("create_pr") == "1":
            raise HubError(400, "test hub: create_pr is not supported")
        header, added, deleted, deleted_folders = None, {}, [], []
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file" and value.get("encoding") == "base64":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            elif key == "deletedFolder":
                deleted_folders.append(value["path"])
            else:  # "lfsFile" never happens: preupload never answers "lfs"
                raise HubError(400, f"test hub: unsupported commit operation {key!r}")
        if header is None:
            raise HubError(400, "Missing commit header")
        sha = hub.commit(repo_id, repo_type, branch, header, added, deleted, deleted_folders)
        commit_url = f"{hub.repo_url(repo_id, repo_type)}/commit/{sha}"
        return 200, {"success": True, "commitOid": sha, "commitUrl": commit_url, "pullRequestUrl": None}

    @staticmethod
    def _validate_yaml(content: str):
        import yaml  # already a dependency of huggingface_hub

        text = content.replace("\r\n", "\n")
        if text.startswith("---\n") and "\n---" in text[3:]:
            try:
                metadata = yaml.safe_load(text[4 : text.index("\n---", 3)])
            except yaml.YAMLError as e:
                return 400, {"errors": [{"message": f"Invalid YAML: {e}"}], "warnings": []}
            if metadata is not None and not isinstance(metadata, dict):
                return 400, {"errors": [{"message": "Metadata must be a YAML mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def _resolve_file(self, hub: HubServer, seg: list[str]):
        repo_type = "model"
        if seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) < 5 or seg[2] != "resolve":
            return None
        repo_id, rev, path = f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:])
        sha = hub.resolve(repo_id, rev, repo_type)
        data = hub.files(repo_id, sha, repo_type).get(path)
        if data is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", sha)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_oid(data)}"', "Content-Type": "application/octet-stream"}
        return 200, data, headers


def _patch_imported_modules(monkeypatch: pytest.MonkeyPatch, url: str, home: Path) -> None:
    """Point module-level copies of the endpoint / cache settings at the test hub.

    Environment variables are only read at import time, and the modules are usually imported before the fixture
    runs (e.g. by conftest or by an earlier test), so their constants must be patched too. A subprocess imports
    everything afresh and only needs the environment variables.
    """
    from huggingface_hub import constants, hf_api

    patches = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    # `huggingface_hub.upload_file`, `create_repo`, ... (and thus `ModelCard.push_to_hub`) are methods bound to this
    # module-level `HfApi()`, whose endpoint was frozen when huggingface_hub.hf_api was imported.
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    if (tf_hub := sys.modules.get("transformers.utils.hub")) is not None:
        # transformers caches one HfApi (endpoint frozen at creation): drop it so it is rebuilt from constants.
        monkeypatch.setattr(tf_hub, "_hf_api", None, raising=False)
    if (ds_config := sys.modules.get("datasets.config")) is not None:
        monkeypatch.setattr(ds_config, "HF_ENDPOINT", url)
        monkeypatch.setattr(ds_config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    if (hffs := sys.modules.get("huggingface_hub.hf_file_system")) is not None:
        hffs.HfFileSystem.clear_instance_cache()  # fsspec caches instances, with their endpoint


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A running ``HubServer`` that huggingface_hub and transformers talk to, in this process and in subprocesses.

    Yields the server: ``.url``, ``.root`` (repo storage), ``.commits`` (commit log), ``.files(repo_id)``,
    ``.requests`` / ``.unhandled`` (request logs). Sets ``HF_ENDPOINT``, a dummy ``HF_TOKEN``, telemetry off,
    online mode and a fresh ``HF_HOME`` / ``HF_HUB_CACHE`` under ``tmp_path``, and patches the constants that were
    already read from the environment at import time.
    """
    from huggingface_hub.utils import _http

    server = HubServer(tmp_path / "hub_repos").start()
    home = tmp_path / "hf_home"
    env = {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": FAKE_TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_OIDC_RESOURCE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    _patch_imported_modules(monkeypatch, server.url, home)
    try:
        yield server
    finally:
        server.stop()
        _http.close_session()  # drop keep-alive connections to the stopped server
        if (tf_hub := sys.modules.get("transformers.utils.hub")) is not None:
            tf_hub._hf_api = None  # may have been created during the test, pointing at this server
