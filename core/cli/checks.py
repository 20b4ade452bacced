"""Checks several commands make before anything is written: a run-level model litellm can serve
(``flow run``, ``flow resume``, ``flow fork``), and a file the command will write at the end
(``flow batch --output``, ``flow run --record``), so a bad one is a usage error (exit 2) up front, not a
failure after the work is done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from flow_engine.errors import UsageError


def check_model(name: str | None, engine: Any) -> None:
    """A run-level model that litellm cannot map to a provider would fail the run's first LLM step;
    it is a usage error, found before the run row exists."""
    if not name:
        return
    providers = engine.plugins.model_providers()
    if name.split("/", 1)[0] in providers:
        return
    from flow_engine.llm.loader import ensure_providers

    litellm = ensure_providers(providers)
    try:
        litellm.get_llm_provider(name, api_base=engine.settings.api_base)
    except Exception:
        raise UsageError(
            f"unknown model '{name}': litellm cannot tell which provider serves it; write it as "
            f"provider/model (openai/{name.split('/')[-1]} for an OpenAI-compatible server, "
            "anthropic/..., ollama/...); see docs/models.md"
        ) from None


def check_output_file(given: str, option: str, *, makes_folders: bool = False) -> Path:
    """``given`` as a file the command can write when it is done: not a folder, in a folder that
    exists (or, with ``makes_folders``, under one that does, the rest made on writing) and takes a
    new file (tried with a temporary one, removed at once). ``UsageError`` naming ``option`` and the
    problem otherwise."""
    path = Path(given).expanduser()
    where = f"{option} {given}"
    if not given.strip():
        raise UsageError(f"{option}: give a file name")
    if path.is_dir():
        raise UsageError(f"{where}: is a folder, not a file; name the file to write")
    if path.exists() and not path.is_file():
        raise UsageError(f"{where}: is not a regular file")
    folder = path.parent
    if makes_folders:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.exists():
        raise UsageError(f"{where}: no folder {folder}; create it first")
    if not folder.is_dir():
        raise UsageError(f"{where}: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise UsageError(f"{where}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)
    return path
