"""The flows page: the flows in service with a real Reloader, their graph drawn by Graphviz, and
uploads checked by the switchboard's loader before they replace a flow file and reload it."""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from ivr.console.pages.flows import MAX_BYTES
from ivr.driver.messages import FlowReady
from ivr.driver.service import Reloader
from ivr.flow import load_flow
from ivr.metrics import Metrics
from tests.consolekit import Answer, Browser, start_console

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("support", "sales")
USERS = (("root", "admin", ""), ("sara", "supervisor", ""), ("tina", "team_leader", ""))


class Prompts:
    """The reloader's prompt step: counts the flows it prepared, or fails when told to."""

    def __init__(self) -> None:
        self.prepared: list[str] = []
        self.fail = False

    def prepare(self, flow) -> int:
        if self.fail:
            raise OSError("espeak-ng: not found")
        self.prepared.append(flow.version)
        return 0


@pytest.fixture(scope="module")
def accounts_kit(tmp_path_factory):
    """One console for the module (accounts take a while to make); each test gets its own flow
    file and Reloader on it."""
    tmp = tmp_path_factory.mktemp("flows")
    kit = start_console(tmp, None, users=USERS)
    yield kit
    kit.stop()


@pytest.fixture
def kit(accounts_kit, tmp_path):
    path = tmp_path / "demo.yaml"
    shutil.copy(ROOT / "flows" / "demo.yaml", path)
    flow = load_flow(path, known_queues=QUEUES)
    posted: list[object] = []
    prompts = Prompts()
    reloader = Reloader(lambda p: load_flow(p, known_queues=QUEUES), prompts.prepare,
                        posted.append, Metrics(CollectorRegistry(), process=False),
                        {str(path): flow})
    console = accounts_kit.console
    console.reloader = reloader
    console.config = SimpleNamespace(flow=path, routes={
        "0612345678": SimpleNamespace(flow=path), "default": SimpleNamespace(flow=path)})
    yield SimpleNamespace(url=accounts_kit.url, console=console, path=path, flow=flow,
                          reloader=reloader, posted=posted, prompts=prompts)
    console.reloader = None
    console.config = None


def admin(kit) -> Browser:
    b = Browser(kit.url)
    b.login("root")
    assert b.get("/flows").status == 200
    return b


def upload(b: Browser, data: bytes, target: str = "0", csrf: str | None = None,
           filename: str = "demo.yaml") -> Answer:
    """The upload form as a browser sends it (multipart/form-data)."""
    boundary = uuid.uuid4().hex
    parts = []
    fields = {"target": target}
    if csrf is not None or b.csrf:
        fields["csrf"] = b.csrf if csrf is None else csrf
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/yaml\r\n\r\n'.encode()
                 + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(
        b.base + "/flows", data=b"".join(parts), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with b.opener.open(req, timeout=20) as res:
            return Answer(res.status, res.read().decode(), dict(res.headers))
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read().decode(), dict(err.headers))


def audit(kit) -> list[dict]:
    return [e for e in kit.console.accounts.audit_log(limit=50) if e["action"] == "flow.upload"]


def test_flows_is_for_admins_only(kit):
    for name in ("sara", "tina"):
        b = Browser(kit.url)
        b.login(name)
        assert b.get("/flows").status == 403, name
        assert b.get("/flows/graph.svg?n=0").status == 403, name
        assert upload(b, b"flow: x\n").status == 403, name
    assert Browser(kit.url, follow=False).get("/flows").status == 303
    assert kit.path.read_text() == (ROOT / "flows" / "demo.yaml").read_text()


def test_page_shows_the_flows_in_service(kit):
    page = Browser(kit.url)
    page.login("root")
    body = page.get("/flows").body
    assert 'class="flow-name">demo<' in body
    assert f'class="flow-version">{kit.flow.version}<' in body
    assert str(kit.path) in body
    assert "0612345678, default" in body
    assert f'src="/flows/graph.svg?n=0&amp;v={kit.flow.version}"' in body
    assert "Nessuna ricarica" in body  # no reload yet
    assert "style=" not in body


def test_graph_is_an_svg_image(kit):
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz 'dot' is missing on CI")
        pytest.skip("Graphviz 'dot' is not installed")
    b = admin(kit)
    answer = b.get("/flows/graph.svg?n=0")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("image/svg+xml")
    assert "<svg" in answer.body
    for node in kit.flow.nodes:
        assert f"<title>{node}</title>" in answer.body
    assert b.get("/flows/graph.svg?n=7").status == 404


def test_a_broken_upload_shows_where_and_changes_nothing(kit):
    b = admin(kit)
    before = kit.path.read_bytes()
    broken = re.sub(rb"(?m)^start:.*$", b"start: nowhere", before)
    answer = upload(b, broken)
    assert answer.status == 422
    assert "non è stato accettato" in answer.body
    problems = re.findall(r"<li><code>([^<]*)</code></li>", answer.body)
    assert problems
    assert all(re.match(rf"{re.escape(str(kit.path))}:\d+:\d+: ", p) for p in problems), \
        problems
    assert any(p.startswith(f"{kit.path}:6:8: ") for p in problems), problems  # start: ...
    assert kit.path.read_bytes() == before
    assert not kit.path.with_name("demo.yaml.bak").exists()
    assert sorted(os.listdir(kit.path.parent)) == ["demo.yaml"]  # no temporary file left
    assert kit.reloader.current[str(kit.path)] is kit.flow
    assert kit.posted == []
    entry = audit(kit)[0]
    assert entry["user"] == "root"
    assert entry["target"] == str(kit.path)
    assert entry["detail"]["result"] == "refused"
    assert entry["detail"]["version_before"] == kit.flow.version
    assert entry["detail"]["problems"]


def test_a_good_upload_replaces_the_file_and_reloads(kit):
    b = admin(kit)
    before = kit.path.read_bytes()
    new = before.replace(b"Welcome. For English", b"Hello. For English")
    answer = upload(b, new)
    assert answer.status == 200, answer.body
    assert kit.path.read_bytes() == new
    assert kit.path.with_name("demo.yaml.bak").read_bytes() == before
    now = kit.reloader.current[str(kit.path)]
    assert now.version != kit.flow.version
    assert [type(m) for m in kit.posted] == [FlowReady]
    assert kit.posted[0].flow.version == now.version
    assert kit.prompts.prepared == [now.version]
    assert kit.reloader.last.result == "reloaded"
    assert kit.reloader.last.trigger == "console upload by root"
    assert f"{kit.flow.version} → {now.version}" in answer.body
    assert "ricaricato" in answer.body  # the last reload's panel
    entry = audit(kit)[0]
    assert entry["detail"]["result"] == "reloaded"
    assert entry["detail"]["version_before"] == kit.flow.version
    assert entry["detail"]["version_after"] == now.version
    assert entry["detail"]["filename"] == "demo.yaml"
    page = b.get("/flows").body
    assert f'class="flow-version">{now.version}<' in page
    # the same file again: nothing to reload
    again = upload(b, new)
    assert again.status == 200
    assert "niente da ricaricare" in again.body
    assert len(kit.posted) == 1


def test_a_refused_reload_puts_the_old_file_back(kit):
    b = admin(kit)
    before = kit.path.read_bytes()
    kit.prompts.fail = True
    answer = upload(b, before + b"# edited\n")
    assert answer.status == 409
    assert "espeak-ng: not found" in answer.body
    assert kit.path.read_bytes() == before
    assert kit.reloader.current[str(kit.path)] is kit.flow
    assert kit.reloader.last.result == "failed"
    assert audit(kit)[0]["detail"]["result"] == "failed"


def test_upload_needs_csrf_a_flow_in_service_and_a_small_file(kit):
    b = admin(kit)
    before = kit.path.read_bytes()
    edited = before + b"# edited\n"
    assert upload(b, edited, csrf="forged").status == 403
    assert upload(b, edited, csrf="").status == 403
    assert upload(b, edited, target="3").status == 400
    assert upload(b, edited, target="../../etc/passwd").status == 400
    big = upload(b, before + b"#" * MAX_BYTES)
    assert big.status == 413
    assert "1 MiB" in big.body
    assert upload(b, b"\xff\xfe not text").status == 422
    assert kit.path.read_bytes() == before
    assert kit.posted == []


def test_without_a_reloader_there_is_no_upload(kit):
    kit.console.reloader = None
    b = Browser(kit.url)
    b.login("root")
    page = b.get("/flows")
    assert page.status == 200
    assert "non sono disponibili" in page.body
    assert 'enctype="multipart/form-data"' not in page.body
    assert upload(b, kit.path.read_bytes() + b"# x\n").status == 400
