"""``raftkv serve`` as an operator meets it: the config file and its precedence, JSON log
lines, the one "serving" line without -v, and one line for a port already in use."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import raftkv.serve
from chaos.cluster import free_ports
from raftkv.cli import main
from raftkv.config_file import option_keys

pytestmark = pytest.mark.timeout(60)


def serve_settings(monkeypatch: pytest.MonkeyPatch, args: list[str],
                   env: dict[str, str] | None = None) -> Any:
    """The NodeSettings ``raftkv serve ARGS`` would run with (the node itself not started)."""
    seen = []
    monkeypatch.setattr(raftkv.serve, "run_node", seen.append)
    result = CliRunner().invoke(main, ["serve", *args], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen[0]


def test_config_file_precedence_flag_env_file_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAFTKV_TICK_MS", "RAFTKV_CLIENT_ADDR", "RAFTKV_ELECTION_TICKS", "RAFTKV_ID"):
        monkeypatch.delenv(var, raising=False)
    conf = tmp_path / "raftkv.toml"
    conf.write_text(
        'id = 2\ndata-dir = "/tmp/x"\nclient-addr = "127.0.0.1:7777"\n'
        'peer-addr = "127.0.0.1:7102"\ntick-ms = 20.0\nelection-ticks = 30\n'
        'metrics-addr = "127.0.0.1:9009"\nlog-format = "json"\n'
        '[cluster]\n1 = "127.0.0.1:7101"\n2 = "127.0.0.1:7102"\n'
    )
    base = ["--config", str(conf)]
    s = serve_settings(monkeypatch, base)
    # file > default
    assert (s.node_id, s.data_dir, s.client_addr, s.tick_ms, s.election_ticks) == (
        2, "/tmp/x", "127.0.0.1:7777", 20.0, 30)
    assert s.cluster == {1: "127.0.0.1:7101", 2: "127.0.0.1:7102"}
    assert (s.metrics_addr, s.log_format) == ("127.0.0.1:9009", "json")
    assert s.heartbeat_ticks == 5  # default where the file is silent
    # env > file
    s = serve_settings(monkeypatch, base, {"RAFTKV_TICK_MS": "30", "RAFTKV_ELECTION_TICKS": "40"})
    assert (s.tick_ms, s.election_ticks) == (30.0, 40)
    # flag > env > file
    s = serve_settings(monkeypatch, [*base, "--tick-ms", "40"], {"RAFTKV_TICK_MS": "30"})
    assert s.tick_ms == 40.0 and s.election_ticks == 30
    # the file named by the environment works the same
    s = serve_settings(monkeypatch, [], {"RAFTKV_CONFIG": str(conf)})
    assert s.client_addr == "127.0.0.1:7777"


def test_config_file_errors_name_the_setting(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('id = 1\ndata-dir = "/tmp/x"\ncluster = "1=127.0.0.1:7101"\ntick_mss = 3\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(conf)])
    assert result.exit_code == 2 and "unknown setting 'tick_mss'" in result.output
    conf.write_text("id = [\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(conf)])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    conf.write_text('id = 1\ndata-dir = "/tmp/x"\ncluster = "1=127.0.0.1:7101"\n'
                    'election-ticks = "many"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(conf)])
    assert result.exit_code == 2 and "many" in result.output


def test_example_config_names_only_real_flags_and_all_of_them() -> None:
    example = Path(__file__).parent.parent / "deploy" / "raftkv.example.toml"
    text = example.read_text()
    doc = tomllib.loads(text)
    serve = main.commands["serve"]
    assert isinstance(serve, click.Command)
    keys = option_keys(serve)
    assert set(doc) <= set(keys), set(doc) - set(keys)
    hidden = {p.name for p in serve.params if getattr(p, "hidden", False)}
    public = {k for k, name in keys.items() if name not in hidden}
    shown = {k for k in public if f"{k} =" in text}  # set, or commented with its default
    assert public == shown, public - shown


def _serve(tmp_path: Path, *extra: str, client: int = 0, peer: int = 0) -> subprocess.Popen[str]:
    client = client or free_ports(1)[0]
    peer = peer or free_ports(1)[0]
    return subprocess.Popen(
        [sys.executable, "-m", "raftkv", "serve", "--id", "1",
         "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
         "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(tmp_path / "n1"), *extra],
        stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_json_log_lines_and_the_serving_line(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--log-format", "json", "-v")
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(json.loads(line))  # every line is one JSON object
            if lines[-1]["msg"] == "leader elected":
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += [json.loads(line) for line in rest.splitlines()]
    for doc in lines:
        ts = datetime.fromisoformat(doc["ts"])
        assert ts.tzinfo is not None and ts.year >= 2024 and "T" in doc["ts"]
        assert {"level", "logger", "msg", "node_id"} <= set(doc) and doc["node_id"] == 1
    serving = next(d for d in lines if d["msg"] == "node serving")
    assert serving["level"] == "INFO" and serving["logger"] == "raftkv.serving"
    assert serving["data_dir"] == str(tmp_path / "n1") and serving["client"].startswith("127.")
    elected = next(d for d in lines if d["msg"] == "leader elected")
    assert elected["term"] >= 1 and elected["leader"] == 1
    assert any(d["msg"] == "stopping" and d["term"] >= 1 for d in lines)


def test_serving_line_without_verbose_and_text_has_a_date(tmp_path: Path) -> None:
    proc = _serve(tmp_path)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    stamp, level, logger, *_ = line.split()
    assert datetime.fromisoformat(stamp).tzinfo is not None
    assert (level, logger) == ("INFO", "raftkv.serving") and "node serving" in line
    assert f"data_dir={tmp_path / 'n1'}" in line


@pytest.mark.parametrize("flag", ["--client-addr", "--peer-addr", "--metrics-addr"])
def test_a_port_in_use_is_one_line_naming_the_flag(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kw: dict[str, int] = {}
        extra: list[str] = []
        if flag == "--client-addr":
            kw["client"] = port
        elif flag == "--peer-addr":
            kw["peer"] = port
        else:
            extra = ["--metrics-addr", f"127.0.0.1:{port}"]
        proc = _serve(tmp_path, *extra, **kw)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"raftkv serve: cannot listen on 127.0.0.1:{port} ({flag}): "
                     "Address already in use"], err
