"""`make install` (scripts/install.sh) into a temporary root (--destdir, --no-venv): the layout,
the modes, an upgrade that keeps the configuration, an uninstall that keeps configuration and
data, a purge. The real install (the venv with our SIP stack, the user, systemctl) runs in CI
on a throwaway machine (.ci/run)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from ivr.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install.sh"


def install(root: Path, *args: str) -> str:
    done = subprocess.run([str(SCRIPT), "--destdir", str(root), "--no-venv", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_modes(tmp_path: Path) -> None:
    said = install(tmp_path)
    etc, data = tmp_path / "etc/centralino", tmp_path / "var/lib/centralino"
    assert (tmp_path / "opt/centralino/README.md").is_file()
    assert (tmp_path / "opt/centralino/share/ivr.yaml.example").is_file()
    assert mode(etc) == 0o750
    assert mode(etc / "ivr.yaml") == 0o640  # may hold SIP passwords
    assert mode(etc / "flows/demo.yaml") == 0o640
    assert mode(etc / "flows/common") == 0o750
    for folder in (data, data / "recordings", data / "prompts"):
        assert mode(folder) == 0o750, folder
    unit = tmp_path / "etc/systemd/system/centralino.service"
    assert mode(unit) == 0o644
    assert "ExecStart=/opt/centralino/venv/bin/ivr run --config /etc/centralino/ivr.yaml" \
        in unit.read_text()
    assert not (tmp_path / "etc/systemd/system/centralino-edge.service").exists()
    assert "not enabled" in said
    # the configuration is valid and keeps its data where the unit lets it write
    config = load_config(etc / "ivr.yaml")
    assert config.store == Path("/var/lib/centralino/centralino.db")
    assert config.recordings == Path("/var/lib/centralino/recordings")
    assert config.prompt_cache == Path("/var/lib/centralino/prompts")
    assert config.flow == etc / "flows/demo.yaml"


def test_upgrade_keeps_configuration_and_data(tmp_path: Path) -> None:
    install(tmp_path)
    etc = tmp_path / "etc/centralino"
    (etc / "ivr.yaml").write_text((etc / "ivr.yaml").read_text() + "# site edit\n")
    (etc / "flows/demo.yaml").write_text("# the site's own flow\n")
    (tmp_path / "var/lib/centralino/centralino.db").write_bytes(b"calls")
    said = install(tmp_path)
    assert "kept /etc/centralino/ivr.yaml" in said
    assert (etc / "ivr.yaml").read_text().endswith("# site edit\n")
    assert (etc / "flows/demo.yaml").read_text() == "# the site's own flow\n"
    assert (tmp_path / "var/lib/centralino/centralino.db").read_bytes() == b"calls"


def test_edge_unit_only_with_an_edge_section(tmp_path: Path) -> None:
    install(tmp_path)
    yaml = tmp_path / "etc/centralino/ivr.yaml"
    yaml.write_text(yaml.read_text() + "edge:\n  listen: 127.0.0.1:5060\n")
    install(tmp_path)
    edge = tmp_path / "etc/systemd/system/centralino-edge.service"
    assert "--config /etc/centralino/ivr.yaml --out /var/lib/centralino/edge" in edge.read_text()


def test_uninstall_keeps_configuration_and_data_purge_removes_them(tmp_path: Path) -> None:
    install(tmp_path)
    said = install(tmp_path, "--uninstall")
    assert not (tmp_path / "opt/centralino").exists()
    assert not (tmp_path / "etc/systemd/system/centralino.service").exists()
    assert (tmp_path / "etc/centralino/ivr.yaml").is_file()
    assert (tmp_path / "var/lib/centralino").is_dir()
    assert "PURGE=1" in said
    install(tmp_path, "--uninstall", "--purge")
    assert not (tmp_path / "etc/centralino").exists()
    assert not (tmp_path / "var/lib/centralino").exists()


def test_dry_run_touches_nothing(tmp_path: Path) -> None:
    said = install(tmp_path, "--dry-run")
    assert "would run: install" in said
    assert list(tmp_path.iterdir()) == []
