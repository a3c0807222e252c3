"""One discoverable configuration: `harness config set` writes the data root and cache to a file that every
later command reads; the environment still wins; a broken file is one line."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.paths import cache_root, data_root


def test_config_file_is_read_and_the_environment_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    assert main(["config", "set", "data", str(tmp_path / "data")]) == 0
    assert main(["config", "set", "cache", str(tmp_path / "cache")]) == 0
    assert data_root() == tmp_path / "data" and cache_root() == tmp_path / "cache"
    capsys.readouterr()
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert f"data   {tmp_path / 'data'}  ({tmp_path / 'cfg' / 'config.json'})" in out
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "env-data"))
    assert data_root() == tmp_path / "env-data"
    assert main(["config"]) == 0 and "(HARNESS_DATA)" in capsys.readouterr().out
    assert main(["config", "unset", "cache"]) == 0
    assert cache_root() != tmp_path / "cache"


@pytest.mark.parametrize("text", ["{broken", '["a list"]', '{"data": 3}', '{"colour": "blue"}'])
def test_a_broken_config_file_is_one_line(tmp_path, monkeypatch, capsys, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    monkeypatch.setenv("HARNESS_CONFIG", str(path))
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    assert main(["config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
