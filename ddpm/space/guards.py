"""Defences in front of the handlers, for requests Gradio handles before our code sees them (checked on gradio 6.31).

- `Sketchpad`: Gradio's ImageEditor decodes the background, every layer and the composite before the handler runs
  (with PIL's decompression-bomb warning silenced), and its `accept_blobs` server function grows a list to whatever
  `index` a client sends and keeps every blob until that drawing is submitted, forever otherwise. Ours reads each
  image's header (pixels) and byte size before Gradio decodes anything, takes at most MAX_LAYERS layers, and keeps
  at most PENDING_BYTES of blobs not yet submitted (the oldest dropped).
- `RequestGuard` (ASGI middleware, given to `launch(app_kwargs=...)`): caps the body of every POST before Gradio
  reads it (uploads at `max_file_size`, everything else smaller), the bytes one client and all clients together may
  upload in a window (Gradio keeps uploads 10-20 minutes; each file counts at least 64 kB, at most 16 a request), and
  the events one client may have queued or running at once, so one client cannot fill the queue. Every way into the
  queue (/queue/join, /call/<name>, /call/v2/<name>) is checked alike: public endpoints only, one value per input, a
  short session id; no JSON body nests deeper than 32 levels.

A client is its address (`client_of`): the TCP peer, unless trusted proxies stand in front. Each proxy appends to
X-Forwarded-For the address it got the request from; entries further left come from the client itself and could be
anything. DDPM_PROXY_HOPS says how many appending proxies to trust, counted from the right: 0 (the header ignored)
off a Space, 1 on a Hugging Face Space (see `proxy_hops`). Several X-Forwarded-For headers are one list, in order.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time

import gradio as gr
from gradio.components.base import server

from .inputs import image_header
from .settings import shown

log = logging.getLogger("ddpm.space")

MAX_LAYERS = 4
MAX_DRAWING_PIXELS = 2048 * 2048
MAX_BLOB_BYTES = 8 * 2**20
PENDING_BYTES = 64 * 2**20
BLOB_PARTS = ("background", "layer", "composite")


def refuse(text: str) -> gr.Error:
    """One line to the visitor and the same line to the log, never a traceback."""
    log.warning("refused: %s", text)
    return gr.Error(text, print_exception=False)


class _Pending(collections.OrderedDict):
    """Blobs of drawings not yet submitted, by the client's drawing id: at most `max_bytes` in all and `max_ids`
    drawings, the oldest dropped first (a drawing left for long is simply drawn again)."""

    def __init__(self, max_bytes: int = PENDING_BYTES, max_ids: int = 64):
        super().__init__()
        self.max_bytes, self.max_ids = max_bytes, max_ids

    @staticmethod
    def size(blobs) -> int:
        parts = [blobs.background, blobs.composite, *blobs.layers]
        return sum(len(p) for p in parts if p)

    def shrink(self) -> None:
        while len(self) > self.max_ids or (len(self) > 1 and sum(map(self.size, self.values())) > self.max_bytes):
            self.popitem(last=False)


def _check_image(data, what: str) -> None:
    """The byte size and the header's pixel count of one part of a drawing; nothing is decoded."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > MAX_BLOB_BYTES:
            raise ValueError(
                f"{what} is {len(data) / 2**20:.0f} MB: draw, or upload an image of at most {MAX_BLOB_BYTES // 2**20} MB"
            )
        source = io.BytesIO(data)
    else:
        source = data.path
    image_header(source, what, MAX_DRAWING_PIXELS).close()


class Sketchpad(gr.Sketchpad):
    """gr.Sketchpad whose inputs are bounded before Gradio decodes them (see the module's docstring)."""

    def get_block_name(self) -> str:
        return "imageeditor"  # drawn by Gradio's own editor, as gr.Sketchpad is

    get_block_class = get_block_name

    # No __init__ of our own: Gradio reads a component's props from its constructor's signature.
    _lock = threading.Lock()

    def _pending(self) -> _Pending:
        """The bounded blob store (set up on first use), and the reasons of refused drawings (the last 64)."""
        if not isinstance(self.blob_storage, _Pending):
            self.blob_storage, self.refused = _Pending(), collections.OrderedDict()
        return self.blob_storage

    @server
    def accept_blobs(self, data):
        key = str(data.data.get("id"))[:80]
        try:
            if len(str(data.data.get("id"))) > 80:  # Gradio would keep the blob under the whole id, outside our bound
                raise ValueError("a drawing's id has at most 80 characters")
            kind, index = data.data.get("type"), data.data.get("index")
            if kind not in BLOB_PARTS:
                raise ValueError(f"a drawing has a background, layers and a composite, not {str(kind)[:20]!r}")
            if kind == "layer" and index not in (None, "null"):
                if not str(index).isdigit() or int(index) >= MAX_LAYERS:
                    raise ValueError(f"a drawing may have at most {MAX_LAYERS} layers")
            if len(data.files) != 1:
                raise ValueError("send one image per part of the drawing")
            _check_image(data.files[0][1], "the drawing")
        except ValueError as e:
            log.warning("refused: %s", e)
            with self._lock:
                self._pending().pop(key, None)
                self.refused[key] = str(e)
                while len(self.refused) > 64:
                    self.refused.popitem(last=False)
            return
        with self._lock:
            pending = self._pending()
            gr.Sketchpad.accept_blobs(self, data)  # Gradio's own, now with checked input
            pending.move_to_end(key)
            pending.shrink()

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.id is not None:
            with self._lock:
                parts = self._pending().get(payload.id)
                if payload.id in self.refused:
                    raise refuse(self.refused.pop(payload.id))
        else:
            parts = payload
        if parts is not None:
            if len(parts.layers) > MAX_LAYERS:
                raise refuse(f"a drawing may have at most {MAX_LAYERS} layers")
            try:
                for part in [parts.background, parts.composite, *parts.layers]:
                    if part is not None:
                        _check_image(part, "the drawing")
            except ValueError as e:
                raise refuse(str(e)) from None
        return super().preprocess(payload)


class Blocks(gr.Blocks):
    """gr.Blocks whose inputs that fail Gradio's own checks before any handler runs (a value its component's data
    model refuses, e.g. a drawing that is not one; a file reference to a file no visitor uploaded) are refused in
    one line, where Gradio answers a blank error and prints a traceback."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        from gradio.exceptions import InvalidPathError
        from pydantic import ValidationError

        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except ValidationError as e:
            raise refuse(f"an input is not what this endpoint takes ({e.title}): see the API page") from None
        except InvalidPathError:
            raise refuse("a file input must be a file uploaded to this Space (gradio_client's handle_file does it)") from None


def proxy_hops(environ=None) -> int:
    """The appending proxies in front of this server: DDPM_PROXY_HOPS, else 1 on a Hugging Face Space (SPACE_ID is
    set), else 0. On a Space, requests reach the app through Hugging Face's proxy: the app's TCP peer is an internal
    address and the last X-Forwarded-For entry the visitor's (how others found it: embeddings-benchmark/mteb#4754;
    Hugging Face does not document the count, so the log says once what the header looks like, see `_note_shape`)."""
    environ = os.environ if environ is None else environ
    raw = environ.get("DDPM_PROXY_HOPS", "").strip()
    if not raw:
        return 1 if environ.get("SPACE_ID") else 0
    if not raw.isdigit():
        raise ValueError(f"DDPM_PROXY_HOPS={raw[:20]!r} is not a whole number: the proxies in front of the Space (0: none)")
    return int(raw)


def forwarded_client(header: str, hops: int | None = None) -> str | None:
    """The client's address in an X-Forwarded-For value (several headers joined by commas): the entry the
    farthest trusted proxy appended, `hops` from the right; the leftmost when the list is shorter (the request
    met fewer proxies). None with no trusted proxy (hops 0) or no entry."""
    hops = proxy_hops() if hops is None else hops
    entries = [e.strip() for e in header.split(",") if e.strip()]
    if hops < 1 or not entries:
        return None
    client = entries[-min(hops, len(entries))][:64]
    _note_shape(entries, hops, client)
    return client


_shapes: set[tuple[int, bool]] = set()


def _note_shape(entries: list[str], hops: int, client: str) -> None:
    """Log once per shape how many entries X-Forwarded-For had and whether the one taken as the client is a
    private address (no address is logged): a private one means a proxy more than DDPM_PROXY_HOPS counts."""
    try:
        private = ipaddress.ip_address(client).is_private
    except ValueError:
        private = False
    if (len(entries), private) in _shapes or len(_shapes) >= 8:
        return
    _shapes.add((len(entries), private))
    if private:
        log.warning("X-Forwarded-For had %d entries and entry -%d, taken as the client, is a private address: there may "
                    "be more proxies than DDPM_PROXY_HOPS=%d counts", len(entries), hops, hops)  # fmt: skip
    else:
        log.info("X-Forwarded-For had %d entries; entry -%d is the client (DDPM_PROXY_HOPS=%d)", len(entries), hops, hops)


def _address(forwarded: list[str], peer: str | None) -> str:
    return (forwarded_client(",".join(forwarded)) if forwarded else None) or peer or "?"


def client_of(scope) -> str:
    """The client's address (an ASGI scope): from X-Forwarded-For (`forwarded_client`), else the TCP peer."""
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
    return _address(forwarded, scope["client"][0] if scope.get("client") else None)


def client_of_request(request) -> str:
    """`client_of` for the gr.Request a handler gets (None outside a server: one anonymous client)."""
    if request is None:
        return ""
    headers = request.headers
    forwarded = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for", "")]
    return _address([f for f in forwarded if f], request.client.host if request.client else None)


class _Window:
    """Bytes per client and in all over the last `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.events: collections.deque[tuple[float, str, int]] = collections.deque()

    def used(self, who: str | None = None) -> int:
        cutoff = time.monotonic() - self.seconds
        while self.events and self.events[0][0] < cutoff:
            self.events.popleft()
        return sum(n for _, w, n in self.events if who is None or w == who)

    def add(self, who: str, n: int) -> None:
        self.events.append((time.monotonic(), who, n))


class _Refused(Exception):
    def __init__(self, status: int, text: str):
        self.status, self.text = status, text


class RequestGuard:
    """ASGI middleware: every POST's body read up to its cap before Gradio sees it; uploads budgeted per client and
    in all; at most `per_client` events queued or running per client (see the module's docstring)."""

    def __init__(
        self,
        app,
        blocks=None,
        max_upload_bytes: int = 10 * 2**20,
        max_body_bytes: int = MAX_BLOB_BYTES + 2**20,
        client_upload_bytes: int = 200 * 2**20,
        total_upload_bytes: int = 2 * 2**30,
        window_s: float = 600.0,
        per_client: int = 3,
    ):
        self.app, self.blocks = app, blocks
        self.max_upload, self.max_body = max_upload_bytes, max_body_bytes
        self.client_upload, self.total_upload = client_upload_bytes, total_upload_bytes
        self.uploads = _Window(window_s)
        self.per_client = per_client
        self.joining: collections.Counter[str] = collections.Counter()  # joins of each client Gradio has not queued yet

    def busy(self, who: str) -> int:
        """Events of this client queued or running now, and those on their way into the queue."""
        queue = getattr(self.blocks, "_queue", None)
        events = list(getattr(queue, "event_ids_to_events", {}).values())
        queued = sum(1 for e in events if e.request is not None and client_of(e.request.scope) == who)
        return queued + self.joining[who]

    def cap(self, path: str, who: str, entry: str | None = None) -> tuple[int, str]:
        """The most bytes this request may send, and the line that says so when it sends more."""
        too_large = f"the request is larger than {_mb(self.max_body)}: send a smaller file"
        if path.endswith("/upload"):
            left = min(self.client_upload - self.uploads.used(who), self.total_upload - self.uploads.used())
            window = f"{self.uploads.seconds / 60:.0f} minutes"
            if left <= 0:
                raise _Refused(429, f"upload limit reached ({_mb(self.client_upload)} per {window}): try again later")
            if left < self.max_upload:
                return left, f"this upload is larger than the {_mb(left)} you may still upload in these {window}: try later"
            return self.max_upload, f"the file is larger than {_mb(self.max_upload)}: upload a smaller one"
        if entry and self.busy(who) >= self.per_client:
            raise _Refused(429, f"you have {self.per_client} requests queued or running: wait for one to finish or stop it")
        return self.max_body, too_large

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path, who = scope["path"].rstrip("/"), client_of(scope)
        entry = entry_to_queue(path)
        join = entry is not None
        try:
            limit, too_large = self.cap(path, who, entry)
            self.joining[who] += join  # before any await: concurrent joins of one client see each other
            try:
                body = await self._read(scope, receive, limit, too_large)
                call = _json(body) if _is_json(scope) or join else None
                if join:
                    self._check_call(entry, call)
                if path.endswith("/cancel"):
                    self._check_cancel(_json(body), who)
                if path.endswith("/component_server"):
                    self._check_component_call(call if _is_json(scope) else await _form(scope, body))
                if path.endswith("/upload"):
                    self.uploads.add(who, upload_charge(body))
                await self.app(scope, _replay(body, receive), send)
            finally:
                self.joining[who] -= join
                if self.joining[who] <= 0:
                    del self.joining[who]
        except _Refused as e:
            log.warning("refused: %s %s: %s", scope["method"], path.rsplit("/", 1)[-1], e.text)
            await _reply(send, e.status, e.text)

    def _check_call(self, api_name: str, call) -> None:
        """A call into the queue names a public event and sends one value per input, with a short session id:
        anything else is refused here, in one line, where Gradio would fail inside its processing with a traceback
        in the log, keep what it was sent (a session id of megabytes), or run a UI-only event."""
        if not isinstance(call, dict):
            raise _Refused(422, "a call is a JSON object: fn_index, data and session_hash (or data alone, by name)")
        session = call.get("session_hash", "")
        if not isinstance(session, str) or not SESSION_ID.fullmatch(session or "s"):
            raise _Refused(422, "a session id is at most 64 letters, digits, '-' or '_'")
        if self.blocks is None:
            return
        if api_name == "join":  # /queue/join: the event by its index
            fn = self.blocks.fns.get(call.get("fn_index")) if isinstance(call.get("fn_index"), int) else None
            if fn is None:
                raise _Refused(422, "a call names one of this Space's events by its fn_index")
        else:  # /call/<name>: only the endpoints the API lists
            fn = next((f for f in self.blocks.fns.values() if f.api_name == api_name and f.api_visibility == "public"), None)
            if fn is None:
                raise _Refused(404, f"no endpoint /{shown(api_name, 40)}: see the API page for this Space's endpoints")
            if "data" not in call:
                return  # /call/v2/<name>: arguments by name, checked by Gradio against the endpoint's parameters
        data = call.get("data")
        if not isinstance(data, list) or len(data) != len(fn.inputs):
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise _Refused(422, f"this endpoint takes {len(fn.inputs)} input values, got {got}")

    def _check_cancel(self, call, who: str) -> None:
        """A visitor cancels only their own requests: the event must be of the session the call names and of the
        same client. Gradio's /cancel ends whatever event id it is sent (another visitor's run ended in 2 of 3
        trials); an id of nothing queued or running is left to Gradio, which has nothing of it to end."""
        if not isinstance(call, dict):
            raise _Refused(422, "a cancel is a JSON object: session_hash, fn_index and event_id")
        events = getattr(getattr(self.blocks, "_queue", None), "event_ids_to_events", {})
        event = events.get(call.get("event_id")) if isinstance(call.get("event_id"), str) else None
        if event is None:
            return
        theirs = event.request is not None and client_of(event.request.scope) == who
        if event.session_hash != call.get("session_hash") or not theirs:
            raise _Refused(403, "that request is not yours to cancel")

    def _check_component_call(self, call) -> None:
        """A call of a component's server function (a drawing's parts, sent as files while the visitor draws) names
        a component of this Space, one of its server functions and a short session id, else one line here, where
        Gradio answers 500 with a traceback in the log (an unknown component, a JSON body for a file upload)."""
        if not isinstance(call, dict) or not {"component_id", "fn_name", "session_hash"} <= set(call):
            raise _Refused(422, "a component call has component_id, fn_name and session_hash")
        if not isinstance(call["session_hash"], str) or not SESSION_ID.fullmatch(call["session_hash"]):
            raise _Refused(422, "a session id is at most 64 letters, digits, '-' or '_'")
        if self.blocks is None:
            return
        cid = call["component_id"]
        block = self.blocks.blocks.get(int(cid)) if str(cid).isdigit() else None
        fn = getattr(block, str(call["fn_name"]), None) if block is not None else None
        if fn is None or not getattr(fn, "_is_server_fn", False):
            raise _Refused(404, "no such component function on this Space")
        if "data" in call and isinstance(block, Sketchpad):  # JSON: Gradio would hand a dict where files belong
            raise _Refused(422, "a drawing's parts are sent as files (multipart/form-data), not JSON")

    @staticmethod
    async def _read(scope, receive, limit: int, too_large: str) -> bytes:
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _Refused(413, too_large)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "the client went away")
            size += len(message.get("body", b""))
            if size > limit:
                raise _Refused(413, too_large)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_JSON_DEPTH = 32  # the deepest a request of this Space nests is a drawing: 5


def entry_to_queue(path: str) -> str | None:
    """'join' for Gradio's /queue/join, the endpoint's name for /call/<name> and /call/v2/<name>, else None: every
    way into the queue is checked alike (the client's share of the queue, the call itself)."""
    parts = path.rstrip("/").split("/")
    if parts[-2:] == ["queue", "join"]:
        return "join"
    if len(parts) >= 2 and (parts[-2] == "call" or parts[-3:-1] == ["call", "v2"]):
        return parts[-1]
    return None


def _is_json(scope) -> bool:
    return any(k == b"content-type" and b"json" in v.lower() for k, v in scope.get("headers", []))


def _json(body: bytes):
    """The request's JSON, refused in one line when it is not JSON or nests deeper than MAX_JSON_DEPTH (Gradio's
    own parsing and validation recurse, and a deep enough body ends in a RecursionError and a traceback)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise _Refused(422, f"the request's JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise _Refused(422, "the request's body is not valid JSON") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _Refused(422, f"the request's JSON nests deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


async def _form(scope, body: bytes) -> dict:
    """The plain fields of a multipart request's body (already read and bounded), files left out."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    try:
        async with Request(scope, _replay(body, None)).form(max_files=MAX_UPLOAD_FILES, max_fields=16) as form:
            return {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
    except Exception:  # starlette's parser refuses what is not multipart, or too many parts
        raise _Refused(422, "a component call is multipart/form-data or JSON: component_id, fn_name, session_hash") from None


def _replay(body: bytes, receive):
    """The ASGI `receive` of a request whose body was already read: the body once, then the real channel."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


MAX_UPLOAD_FILES = 16  # files in one upload request (the UI sends one)
FILE_CHARGE = 64 * 2**10  # what a file costs the upload budget at the least: Gradio gives each a folder of its own


def upload_charge(body: bytes) -> int:
    """What an upload request costs the client's budget: its bytes, each file counted as at least FILE_CHARGE (999
    files of 16 bytes made 999 folders for 16 kB of budget), and at most MAX_UPLOAD_FILES files in one request."""
    files = body.count(b'filename="')
    if files > MAX_UPLOAD_FILES:
        raise _Refused(413, f"upload at most {MAX_UPLOAD_FILES} files at once")
    return max(len(body), files * FILE_CHARGE)


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


async def _reply(send, status: int, text: str) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# Gradio's own input components, with one-line refusals of what API callers send (Gradio's checks print tracebacks)
def _check_number(component, payload) -> None:
    """API callers can send anything: text or an out-of-range number gets one line (and one log line), not the
    traceback Gradio's own check prints."""
    if payload is None:
        raise refuse(f"{component.label} needs a value")
    if isinstance(payload, bool) or not isinstance(payload, int | float) or not math.isfinite(payload):
        raise refuse(f"{component.label} must be a finite number, got {shown(str(payload), 30)!r}")
    if component.minimum is not None and payload < component.minimum:
        raise refuse(f"Value {payload} is less than minimum value {component.minimum}.")
    if component.maximum is not None and payload > component.maximum:
        raise refuse(f"Value {payload} is greater than maximum value {component.maximum}.")


class CheckedNumber(gr.Number):
    is_template = True  # drawn by Gradio's own number field

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


class CheckedSlider(gr.Slider):
    is_template = True  # drawn by Gradio's own slider

    def preprocess(self, payload):
        _check_number(self, payload)
        return super().preprocess(payload)


class CheckedRadio(gr.Radio):
    is_template = True  # drawn by Gradio's own radio buttons

    def preprocess(self, payload):
        values = [value for _, value in self.choices]
        if payload not in values:
            raise refuse(f"Value: {shown(str(payload), 40)!r} is not in the list of choices: {', '.join(map(str, values))}")
        return super().preprocess(payload)
