"""harness config: where the harness reads data and writes its caches, and where each value comes from."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="show or set the data root and the cache (one file; environment wins)",
                       description="Without arguments: each setting, its value and where it comes from. "
                                   "`set KEY PATH` and `unset KEY` change the configuration file.")
    p.add_argument("action", nargs="?", choices=["show", "set", "unset"], default="show",
                   help="show (the default): each setting and where it comes from; set KEY PATH; unset KEY")
    p.add_argument("key", nargs="?", choices=["data", "cache"], help="data: the data root; cache: the cache")
    p.add_argument("value", nargs="?", help="a folder (stored as an absolute path)")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.io import atomic_write_json
    from harness.paths import SETTINGS, cache_root, config_path, data_root, read_config, setting

    if args.action == "show":
        resolved = {"data": data_root(), "cache": cache_root()}
        print(f"configuration file: {config_path()}")
        for key in SETTINGS:
            _, where = setting(key)
            print(f"{key:<6} {resolved[key]}  ({where})")
        return 0
    if args.key is None or (args.action == "set" and not args.value):
        raise HarnessError(f"harness config {args.action} needs a key (data or cache)"
                           + (" and a folder" if args.action == "set" else ""))
    values = read_config()
    if args.action == "set":
        values[args.key] = str(Path(args.value).expanduser().resolve())
        _check_folder(args.key, Path(values[args.key]))
    else:
        values.pop(args.key, None)
    atomic_write_json(config_path(), values)
    print(f"{config_path()}: {args.key} = {values.get(args.key, '(default)')}")
    if setting(args.key)[1] == SETTINGS[args.key]:
        print(f"note: {SETTINGS[args.key]} is set in this shell and wins over the file")
    return 0


def _check_folder(key: str, folder: Path) -> None:
    """A value that points nowhere is refused: a file, or a folder whose parent does not exist either (a
    typo: nothing would ever be read or written there). A folder whose parent exists may appear later (a
    fetch, a mount, the cache made on first use): stored, with one line saying so."""
    import sys

    from harness.errors import HarnessError

    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"harness config set {key} {folder}: not a folder (it is a file); give a folder")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise HarnessError(f"harness config set {key} {folder}: does not exist, nor does {folder.parent} "
                               "(a typo?); give a folder that exists, or whose parent does")
        made = "`harness fetch` or a mount makes it" if key == "data" else "it is made on first use"
        print(f"harness: warning: {folder} does not exist yet ({made}); stored", file=sys.stderr)
