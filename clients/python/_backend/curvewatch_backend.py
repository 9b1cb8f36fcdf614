"""The package's own PEP 517 build backend: standard library only, so `pip install ./clients/python`
works offline.

pip builds a package in an isolated environment and installs the backend's requirements there
from the package index first; with setuptools as the backend, an offline machine cannot build at
all (the isolated environment does not see Debian's python3-setuptools). This backend needs
nothing: it writes the wheel (and the sdist) with zipfile/tarfile, and bundles the Avro schemas,
read from the repository (schemas/src/main/resources/curvewatch/avro/history) or, when building
from an sdist, from the copy inside it (curvewatch/schemas).
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # clients/python
PACKAGE = ROOT / "curvewatch"
REPO_SCHEMAS = ROOT.parents[1] / "schemas/src/main/resources/curvewatch/avro/history"
NAME = "curvewatch"
REQUIRES = ["torch", "confluent-kafka", "avro"]
SUMMARY = "Watch a PyTorch fine-tune with Curvewatch: per-token K-FAC captures to Kafka, calibration answers, snapshots"


def version():
    text = (PACKAGE / "version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _schema_dir():
    for candidate in (REPO_SCHEMAS, PACKAGE / "schemas"):
        if (candidate / "index.txt").is_file():
            return candidate
    raise FileNotFoundError(f"no Curvewatch schemas at {REPO_SCHEMAS} or {PACKAGE / 'schemas'}: build from a checkout "
                            "of the repository or from its sdist")


def _files():
    """(path inside the wheel, bytes) of the package: its modules and the schemas index.txt lists."""
    out = [(f"curvewatch/{p.name}", p.read_bytes()) for p in sorted(PACKAGE.glob("*.py"))]
    schemas = _schema_dir()
    index = (schemas / "index.txt").read_text()
    out.append(("curvewatch/schemas/index.txt", index.encode()))
    for line in index.splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            out.append((f"curvewatch/schemas/{name}", (schemas / name).read_bytes()))
    return out


def _metadata():
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version()}", f"Summary: {SUMMARY}",
             "Requires-Python: >=3.9", "License: Apache-2.0"] + [f"Requires-Dist: {r}" for r in REQUIRES]
    readme = ROOT / "README.md"
    if readme.is_file():
        lines += ["Description-Content-Type: text/markdown", "", readme.read_text()]
    return ("\n".join(lines) + "\n").encode()


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _dist_info(extra=()):
    info = f"{NAME}-{version()}.dist-info"
    wheel = f"Wheel-Version: 1.0\nGenerator: curvewatch_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n".encode()
    return [(f"{info}/METADATA", _metadata()), (f"{info}/WHEEL", wheel)] + list(extra), info


def _write_wheel(directory, entries, info):
    name = f"{NAME}-{version()}-py3-none-any.whl"
    record = [_record_line(p, d) for p, d in entries] + [f"{info}/RECORD,,"]
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in entries:
            z.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta, info = _dist_info()
    return _write_wheel(wheel_directory, _files() + meta, info)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """A wheel holding a .pth file that puts clients/python on sys.path (the schemas stay in the repository)."""
    meta, info = _dist_info()
    return _write_wheel(wheel_directory, [(f"__editable__.{NAME}.pth", f"{ROOT}\n".encode())] + meta, info)


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{version()}"
    entries = [(f"{base}/{p}", d) for p, d in _files()]
    for extra in ("pyproject.toml", "README.md", "_backend/curvewatch_backend.py"):
        entries.append((f"{base}/{extra}", (ROOT / extra).read_bytes()))
    entries.append((f"{base}/PKG-INFO", _metadata()))
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, data in entries:
            member = tarfile.TarInfo(path)
            member.size, member.mtime, member.mode = len(data), 1767225600, 0o644
            tar.addfile(member, io.BytesIO(data))
    return name
