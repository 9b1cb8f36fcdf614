"""Copies the repository's schema files into the package, for a wheel used outside the repository.

    /usr/bin/python3 -m curvewatch.bundle        # then: pip wheel clients/python

Inside the repository the package reads schemas/src/main/resources/curvewatch/avro/history
directly; the copy (curvewatch/schemas/, git-ignored) is only the packaged fallback.
"""
import shutil
import sys
from pathlib import Path

from . import _avro


def bundle(target=None):
    """Copies index.txt and every schema it lists from the repository into target; returns target."""
    source = _avro.repo_schema_dir()
    if not (source / "index.txt").is_file():
        raise FileNotFoundError(f"no schemas at {source}: run this from a Curvewatch checkout")
    target = Path(target) if target else Path(__file__).resolve().parent / "schemas"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "index.txt", target / "index.txt")
    for name in _avro.listed_files(source):
        shutil.copy2(source / name, target / name)
    return target


if __name__ == "__main__":
    print(f"copied schemas to {bundle(sys.argv[1] if len(sys.argv) > 1 else None)}")
