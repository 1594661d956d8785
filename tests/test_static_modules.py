"""The chat script's ES modules under production static files: `collectstatic` with the
project's storage rewrites every relative `import` to the imported module's hashed name, so a
deploy never mixes new and old modules (chatsite/staticfiles.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.core.management import call_command

IMPORT = re.compile(r"""(?:import|export)[^;]*?from\s*["']([^"']+)["']\s*;""", re.S)


def test_it_rewrites_the_chat_modules_imports_to_hashed_names(
    settings: Any, tmp_path: Path
) -> None:
    settings.STATIC_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "chatsite.staticfiles.ChatStaticFilesStorage"}}
    call_command("collectstatic", interactive=False, verbosity=0)

    paths = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    hashed = set(paths.values())
    modules = [name for name in paths if name.startswith("chat/") and name.endswith(".js")]
    assert "chat/main.js" in modules and "chat/state.js" in modules
    checked = 0
    for name in modules:
        source = tmp_path / paths[name]
        for url in IMPORT.findall(source.read_text(encoding="utf-8")):
            target = (source.parent / url).resolve().relative_to(tmp_path.resolve()).as_posix()
            assert target in hashed, f"{paths[name]} imports {url}"
            checked += 1
    assert checked > 50
