"""The ledger's Lua scripts, read from tokens/lua/ and registered once per process.

Each script is registered with tokens/lua/common.lua in front of it, so the
helpers there are local functions of every script.
"""

from __future__ import annotations

import threading
from pathlib import Path

from redis import Redis
from redis.commands.core import Script

LUA_DIRECTORY = Path(__file__).resolve().parent / "lua"
SCRIPT_NAMES = ("reserve", "reconcile", "release", "status")

_scripts: dict[str, Script] = {}
_lock = threading.Lock()


def script(name: str, client: Redis) -> Script:
    """Return the registered script `name`; call it with `client=` to use any connection.

    A Script sends EVALSHA and falls back to loading the script once when the
    server does not have it (after a restart or a SCRIPT FLUSH).
    """
    registered = _scripts.get(name)
    if registered is not None:
        return registered

    with _lock:
        if name not in _scripts:
            source = (LUA_DIRECTORY / "common.lua").read_text() + (LUA_DIRECTORY / f"{name}.lua").read_text()
            _scripts[name] = client.register_script(source)
        return _scripts[name]
