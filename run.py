#!/usr/bin/env python3
"""One entry point that needs nothing but Python 3.11+.

    python3 run.py serve [--host H --port P]   start the server (embedded defaults, no setup)
    python3 run.py test [pytest args]          run the whole test suite
    python3 run.py <any lipika command>        e.g. migrate, credits, ledger

It creates `.venv` on first use, installs the locked dependencies (again only when
requirements.lock or pyproject.toml change), then runs the command inside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".lipika-installed"


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Lipika needs Python 3.11 or newer")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = _inputs_digest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing locked dependencies ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted)


def main() -> None:
    args = sys.argv[1:] or ["serve"]
    ensure_environment()
    if args[0] == "test":
        command = [str(BIN / "python"), "-m", "pytest", *args[1:]]
    else:
        command = [str(BIN / "lipika"), *args]
    os.chdir(ROOT)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
