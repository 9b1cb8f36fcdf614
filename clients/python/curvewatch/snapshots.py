"""Following edited snapshots: load the file a SnapshotEvent points at, safely.

The service writes `<snapshot.dir>/<run>/<snapshot_id>.safetensors` and publishes a SnapshotEvent
whose uri is exactly `<run_id>/<snapshot_id>.safetensors` (the grammar of docs/SPEC-SHARED-RULES.md,
Snapshot URIs: `parse_uri`, the same as Java's SnapshotUris; golden vectors in
spec/snapshot-uris.json), with its sha256 and size (SERVICE-CONTRACT §4). `load_snapshot` takes an
event's uri only in that grammar and only naming the event's own run and snapshot, resolves it
under the store's root, refuses anything that leaves the root (symbolic links pointing out), reads
the file once, checks size and sha256 of the bytes it read, and parses those. A path the caller
passes by hand (not a record's uri) may also be absolute or a file: URI, as long as it lies in the
store: that is the caller's own input, not the service's.
An edit request the service could not serve ends in a FAILED SnapshotEvent (v2) with the reason
and no file: load_snapshot raises SnapshotError with that reason and never looks for a file.
A ROLLBACK event (v2) holds the weights before the edit it names (`restores`) and loads like any.
"""
import hashlib
import hmac
import os
import re
import stat
import urllib.parse

from . import _avro
from .hooks import is_transposed
from .limits import ID_PATTERN
from .safetensors import loads

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded: outside the store, wrong size or digest, or not fitting the model.

    `reason`: a short code, the same words as the Java trainer's SnapshotStore refusals (path, missing,
    size, sha256, format, run, unknown-tensor, shape, failed), reported to the live guard with the message.
    """

    def __init__(self, message, reason="format"):
        super().__init__(message)
        self.reason = reason


SUFFIX = ".safetensors"


def parse_uri(uri):
    """(run_id, snapshot_id) of a SnapshotEvent uri: exactly `<run_id>/<snapshot_id>.safetensors`, both ids
    of ID_PATTERN and neither `.` nor `..`; anything else (absolute paths, schemes, backslashes, %, empty or
    dot segments, deeper directories) raises SnapshotError."""
    text = uri if isinstance(uri, str) else None
    if not text or len(text) > 2 * 128 + 1 + len(SUFFIX):
        raise SnapshotError(f"snapshot uri must be <run_id>/<snapshot_id>{SUFFIX}, got {uri!r}", "path")
    run_id, slash, rest = text.partition("/")
    if not slash or "/" in rest or not rest.endswith(SUFFIX) or len(rest) == len(SUFFIX):
        raise SnapshotError(f"snapshot uri {text[:120]!r} is not <run_id>/<snapshot_id>{SUFFIX}", "path")
    snapshot_id = rest[:-len(SUFFIX)]
    for name, value in (("run_id", run_id), ("snapshot_id", snapshot_id)):
        if not ID_PATTERN.fullmatch(value) or value in (".", ".."):
            raise SnapshotError(f"snapshot uri {text[:120]!r}: {name} {value[:130]!r} cannot name a file", "path")
    return run_id, snapshot_id


def resolve(uri, root):
    """The real path of an event's `uri` (the grammar of parse_uri) under root; it must stay inside root."""
    run_id, snapshot_id = parse_uri(uri)
    return _inside(os.path.join(os.path.realpath(root), run_id, snapshot_id + SUFFIX), root, uri)


def _resolve_local(path, root):
    """The real path of a path the caller passed by hand: relative to root, absolute, or a file: URI, inside root."""
    path = os.fspath(path)
    if "\x00" in path or not path:
        raise SnapshotError(f"invalid snapshot path {path!r}", "path")
    if path.startswith("file:"):
        parsed = urllib.parse.urlparse(path)
        if parsed.netloc not in ("", "localhost"):
            raise SnapshotError(f"snapshot path {path!r} names a remote host", "path")
        path = urllib.parse.unquote(parsed.path)
    elif _SCHEME.match(path):
        raise SnapshotError(f"snapshot path {path!r}: only paths in the snapshot store and file: URIs are supported",
                            "path")
    return _inside(path if os.path.isabs(path) else os.path.join(os.path.realpath(root), path), root, path)


def _inside(path, root, named):
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == base or os.path.commonpath([real, base]) != base:
        raise SnapshotError(f"snapshot {named!r} resolves to {real}, outside the snapshot store {base}", "path")
    return real


def _read(path, size_bytes):
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)  # the resolved path has no links left; none may appear
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise SnapshotError(f"snapshot file {path} does not exist", "missing") from e
    except OSError as e:
        raise SnapshotError(f"snapshot file {path} cannot be opened: {e}", "path") from e
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SnapshotError(f"{path} is not a regular file", "path")
        if size_bytes is not None and info.st_size != size_bytes:
            raise SnapshotError(f"{path} has {info.st_size} bytes, the snapshot event says {size_bytes}", "size")
        data = f.read() if size_bytes is None else f.read(size_bytes + 1)
    if size_bytes is not None and len(data) != size_bytes:
        raise SnapshotError(f"read {len(data)} bytes of {path}, the snapshot event says {size_bytes}", "size")
    return data


def load_snapshot(event_or_path, root, *, model=None, sha256=None, size_bytes=None, with_metadata=False):
    """The state dict of an edited snapshot, for `model.load_state_dict(state, strict=False)`.

    event_or_path: a SnapshotEvent (the decoded dict, or the record's bytes as read from the
    snapshots topic), whose uri (exactly <run_id>/<snapshot_id>.safetensors of the event), sha256 and
    size_bytes are used (a FAILED event raises SnapshotError with its reason); or a path the caller
    chose (relative to root, absolute or a file: URI, inside root; then
    sha256 and size_bytes are checked when given). root: the snapshot store's directory.
    model: when given, every tensor must name one of its parameters or buffers, with its shape;
    Conv1D-style weights (stored d_out x d_in in snapshots) are transposed back to
    the layer's d_in x d_out. Raises SnapshotError; returns state (and metadata if with_metadata).
    """
    if isinstance(event_or_path, (bytes, bytearray, memoryview)):
        event_or_path = _avro.codec("SnapshotEvent").decode(bytes(event_or_path))
    if isinstance(event_or_path, dict):
        if event_or_path.get("status", "WRITTEN") == "FAILED":
            raise SnapshotError(f"edit request {event_or_path.get('idempotency_key')!r} of run "
                                f"{event_or_path.get('run_id')!r} failed: {event_or_path.get('reason') or 'no reason given'}", "failed")
        uri, sha256, size_bytes = event_or_path["uri"], event_or_path["sha256"], event_or_path["size_bytes"]
        if parse_uri(uri) != (event_or_path.get("run_id"), event_or_path.get("snapshot_id")):
            raise SnapshotError(f"snapshot uri {uri!r} is not the event's own "
                                f"{event_or_path.get('run_id')}/{event_or_path.get('snapshot_id')}{SUFFIX}", "path")
        path = resolve(uri, root)
    else:
        path = _resolve_local(event_or_path, root)
    data = _read(path, None if size_bytes is None else int(size_bytes))
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(digest, str(sha256).lower()):
            raise SnapshotError(f"{path}: sha256 {digest}, the snapshot event says {sha256}", "sha256")
    try:
        state, metadata = loads(data, path, with_metadata=True)
    except (ValueError, UnicodeDecodeError) as e:
        raise SnapshotError(f"{path} is not a valid safetensors file: {e}") from e
    if model is not None:
        state = _fit(state, model)
    return (state, metadata) if with_metadata else state


def _fit(state, model):
    own = model.state_dict()
    modules = dict(model.named_modules())
    out = {}
    for name, tensor in state.items():
        if name not in own:
            raise SnapshotError(f"snapshot tensor {name} is not in the model", "unknown-tensor")
        layer, _, leaf = name.rpartition(".")
        if leaf == "weight" and layer in modules and is_transposed(modules[layer]):
            tensor = tensor.t().contiguous()  # the contract's d_out x d_in back to Conv1D's d_in x d_out
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise SnapshotError(f"snapshot tensor {name} is {tuple(tensor.shape)}, the model's is {tuple(own[name].shape)}",
                                "shape")
        out[name] = tensor
    return out
