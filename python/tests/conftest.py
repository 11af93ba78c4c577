"""Helpers shared by the Python tests."""

import os
import pathlib
import shutil
import subprocess

import pyarrow as pa

#: The `skewless` binary of this build, and the driver_stats repo with its data (not applied).
BIN = os.environ["SKEWLESS_BIN"]
TEMPLATE = pathlib.Path(os.environ["SKEWLESS_REPO"])


def same_bits(a, b):
    """Equal nulls and, where valid, equal value bits (NaN payloads included)."""
    a, b = a.combine_chunks(), b.combine_chunks()
    if a.type != b.type or len(a) != len(b) or a.is_null().to_pylist() != b.is_null().to_pylist():
        return False
    if not (pa.types.is_floating(a.type) or pa.types.is_integer(a.type) or pa.types.is_timestamp(a.type)):
        return a.to_pylist() == b.to_pylist()
    width = a.type.bit_width // 8
    va, vb = a.buffers()[1].to_pybytes(), b.buffers()[1].to_pybytes()
    for i in range(len(a)):
        if a[i].is_valid:
            x, y = (a.offset + i) * width, (b.offset + i) * width
            if va[x : x + width] != vb[y : y + width]:
                return False
    return True


def copy_repo(tmp_path, name="repo"):
    target = tmp_path / name
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns(".skewless"))
    return target


def cli(repo, *args):
    out = subprocess.run([BIN, "--repo", str(repo), *args], capture_output=True, text=True)
    assert out.returncode == 0, f"skewless {args} failed:\n{out.stderr}"
    return out.stdout


def cli_backfilled(tmp_path, name="cli"):
    repo = copy_repo(tmp_path, name)
    cli(repo, "apply")
    cli(repo, "backfill")
    return repo
