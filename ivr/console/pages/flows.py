"""Flows (``/flows``, admins only): the flows in service (name, version, file, when loaded, the
routes that use each), each one's graph (Graphviz ``dot`` on an I/O thread, served as an image
from ``/flows/graph.svg`` so the page needs no inline SVG or script), how the last reload went,
and the upload of a new version of a flow file.

An upload replaces only a flow in service (chosen from a list, never a path typed in), and only
once the switchboard's own loader accepted it: the text is written to a temporary file beside
the flow (so its subflows and prompts resolve as they will), loaded with the
:class:`~ivr.driver.service.Reloader`'s ``load``; on problems they are shown as
``file:line:col: path: message`` and nothing changes. Accepted, the old file is kept as
``<file>.bak``, the temporary file is renamed over the flow (atomic), and the Reloader reloads
that flow at once; if the reload is refused (its prompts cannot be rendered...) the old file is
put back, so the file on disk is always the flow in service. Every upload, accepted or not, is
in the audit log with the versions before and after.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from ivr.console import i18n
from ivr.console.web import Console, console_of, require
from ivr.flow import DocumentError, Flow
from ivr.flow.graph import GraphError, render, to_dot
from ivr.yamlsrc import Problem

MAX_BYTES = 1024 * 1024
"""The largest flow file an upload may send."""
GRAPH_TIMEOUT = 20.0
"""Seconds Graphviz may take to draw a flow."""
GRAPHS_KEPT = 16
GRAPHS = web.AppKey("flows.graphs", dict)
_REPLACING = threading.Lock()
"""One upload at a time replaces a file."""

i18n.add({
    "en": {
        "flows.title": "Flows",
        "flows.in_service": "Flows in service",
        "flows.name": "Flow",
        "flows.version": "Version",
        "flows.file": "File",
        "flows.loaded_at": "Loaded at",
        "flows.routes": "Called numbers",
        "flows.default": "default flow",
        "flows.subflows": "Also read",
        "flows.graph": "Graph of flow {name}",
        "flows.no_reloader": "The flows in service are not known to the console here: "
                             "reloads and uploads are not available.",
        "flows.last_reload": "Last reload",
        "flows.no_reload": "No reload since the switchboard started.",
        "flows.result.reloaded": "reloaded",
        "flows.result.unchanged": "unchanged",
        "flows.result.failed": "refused: the flow in service stays",
        "flows.trigger": "Cause",
        "flows.result": "Result",
        "flows.problems": "Problems",
        "flows.upload": "Upload a new version",
        "flows.upload.target": "Flow to replace",
        "flows.upload.file": "Flow file (YAML, at most 1 MiB)",
        "flows.upload.submit": "Check and put in service",
        "flows.upload.help": "The file is checked first: with problems nothing changes. "
                             "Accepted, the old file is kept as .bak and the flow is "
                             "reloaded (calls in progress finish on the version they "
                             "started with).",
        "flows.upload.refused": "The file was not accepted: the flow in service and its "
                                "file are unchanged.",
        "flows.upload.reloaded": "Flow {name} is in service: version {before} → {after}.",
        "flows.upload.unchanged": "The file is the same as the flow in service (version "
                                  "{after}): nothing to reload.",
        "flows.upload.failed": "The reload was refused: the old file was put back and "
                               "version {before} stays in service.",
        "flows.upload.no_target": "Choose one of the flows in service.",
        "flows.upload.no_file": "Choose a file to upload.",
        "flows.upload.too_big": "The file is larger than 1 MiB.",
        "flows.upload.not_text": "The file is not UTF-8 text.",
    },
    "it": {
        "flows.title": "Flussi",
        "flows.in_service": "Flussi in servizio",
        "flows.name": "Flusso",
        "flows.version": "Versione",
        "flows.file": "File",
        "flows.loaded_at": "Caricato il",
        "flows.routes": "Numeri chiamati",
        "flows.default": "flusso predefinito",
        "flows.subflows": "Legge anche",
        "flows.graph": "Grafo del flusso {name}",
        "flows.no_reloader": "Qui la console non conosce i flussi in servizio: ricarica e "
                             "caricamento non sono disponibili.",
        "flows.last_reload": "Ultima ricarica",
        "flows.no_reload": "Nessuna ricarica dall'avvio del centralino.",
        "flows.result.reloaded": "ricaricato",
        "flows.result.unchanged": "invariato",
        "flows.result.failed": "rifiutata: resta in servizio il flusso attuale",
        "flows.trigger": "Causa",
        "flows.result": "Esito",
        "flows.problems": "Problemi",
        "flows.upload": "Carica una nuova versione",
        "flows.upload.target": "Flusso da sostituire",
        "flows.upload.file": "File del flusso (YAML, al massimo 1 MiB)",
        "flows.upload.submit": "Controlla e metti in servizio",
        "flows.upload.help": "Il file viene prima controllato: se ha problemi non cambia "
                             "nulla. Se è accettato, il file vecchio resta come .bak e il "
                             "flusso viene ricaricato (le chiamate in corso finiscono sulla "
                             "versione con cui sono iniziate).",
        "flows.upload.refused": "Il file non è stato accettato: il flusso in servizio e il "
                                "suo file non sono cambiati.",
        "flows.upload.reloaded": "Il flusso {name} è in servizio: versione {before} → "
                                 "{after}.",
        "flows.upload.unchanged": "Il file è uguale al flusso in servizio (versione "
                                  "{after}): niente da ricaricare.",
        "flows.upload.failed": "La ricarica è stata rifiutata: il file vecchio è stato "
                               "rimesso e resta in servizio la versione {before}.",
        "flows.upload.no_target": "Scegli uno dei flussi in servizio.",
        "flows.upload.no_file": "Scegli un file da caricare.",
        "flows.upload.too_big": "Il file supera 1 MiB.",
        "flows.upload.not_text": "Il file non è testo UTF-8.",
    },
})


@dataclass(frozen=True)
class InService:
    n: int
    """Its place in the list: what forms and the graph's address name it by."""
    path: str
    flow: Flow
    loaded_at: float | None
    routes: tuple[str, ...]
    default: bool
    subflows: tuple[str, ...]


def in_service(console: Console) -> list[InService]:
    """The Reloader's flows (none without a Reloader), in the order of ivr.yaml."""
    reloader = console.reloader
    if reloader is None:
        return []
    config = console.config
    routes: dict[str, list[str]] = {}
    for number, route in (getattr(config, "routes", None) or {}).items():
        routes.setdefault(str(route.flow), []).append(str(number))
    default = str(getattr(config, "flow", "")) if config is not None else ""
    current: list[tuple[str, Flow]] = list(reloader.current.items())
    loaded: dict[str, float] = dict(getattr(reloader, "loaded_at", {}))
    from ivr.watch import flow_files

    return [InService(n, path, flow, loaded.get(path), tuple(routes.get(path, ())),
                      path == default or len(current) == 1, flow_files(flow)[1:])
            for n, (path, flow) in enumerate(current)]


# -- the upload (on an I/O thread) ----------------------------------------------------------------
@dataclass
class Upload:
    state: str
    """'refused' (not accepted: nothing changed), 'reloaded', 'unchanged', or 'failed' (the
    reload was refused and the old file put back)."""
    name: str
    before: str
    after: str
    problems: list[Problem] = field(default_factory=list)
    reload_problems: tuple[str, ...] = ()


def _read(source: IO[bytes], limit: int) -> bytes:
    source.seek(0)
    return source.read(limit)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_beside(target: Path, data: bytes, prefix: str) -> Path:
    """*data* in a new hidden file in *target*'s folder, on disk, with *target*'s mode."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(OSError):
            os.chmod(name, stat.S_IMODE(target.stat().st_mode))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def _replace(target: Path, data: bytes) -> None:
    """*target* holds *data*, atomically (a temporary file renamed over it)."""
    tmp = _write_beside(target, data, f".{target.name}.")
    os.replace(tmp, target)
    _fsync_folder(target.parent)


def replace_flow(reloader: Any, path: str, data: bytes, trigger: str) -> Upload:
    """Check *data* as the flow file *path* with the reloader's loader; accepted, put it in
    place of *path* (old one kept as .bak) and reload that flow. See the module doc."""
    target = Path(path)
    old: Flow = reloader.current[path]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return Upload("refused", old.name, old.version, "", [Problem(
            path, line, 1, "", "the file is not UTF-8 text")])
    with _REPLACING:
        old = reloader.current[path]
        try:
            tmp = _write_beside(target, data, ".upload-")
        except OSError as exc:
            return Upload("refused", old.name, old.version, "", [Problem(
                path, 1, 1, "", f"cannot write beside it: {exc.strerror or exc}")])
        try:
            try:
                new: Flow = reloader.load(str(tmp))
            except DocumentError as exc:
                return Upload("refused", old.name, old.version, "", [
                    Problem(path if Path(p.file).name == tmp.name else p.file, p.line,
                            p.column, p.path, p.message) for p in exc.problems])
            except Exception as exc:  # noqa: BLE001 - shown, and nothing changes
                return Upload("refused", old.name, old.version, "", [Problem(
                    path, 1, 1, "", f"{type(exc).__name__}: {exc}")])
            try:
                previous = target.read_bytes()
                _replace(target.with_name(target.name + ".bak"), previous)
                os.replace(tmp, target)
            except OSError as exc:
                return Upload("refused", old.name, old.version, "", [Problem(
                    path, 1, 1, "", f"cannot replace it: {exc.strerror or exc}")])
            _fsync_folder(target.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        outcome = reloader.reload_file(path, trigger)
        if outcome.result == "failed":
            _replace(target, previous)
        now: Flow = reloader.current[path]
        state = outcome.result
        if state == "unchanged" and now.version != old.version:
            state = "reloaded"  # the file watcher's reload came first
        return Upload(state, new.name, old.version, now.version,
                      reload_problems=tuple(outcome.problems))


# -- the routes -----------------------------------------------------------------------------------
def _page(request: web.Request, console: Console, status: int = 200,
          upload: Upload | None = None, error: str = "", chosen: int = 0) -> web.Response:
    reloader = console.reloader
    return console.render(request, "flows.html", status=status, flows=in_service(console),
                          has_reloader=reloader is not None,
                          last=getattr(reloader, "last", None), upload=upload, error=error,
                          chosen=chosen, max_bytes=MAX_BYTES, when=_when)


def _when(at: float | None) -> str:
    """A time as the server's local time (the page's script shows the browser's)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


async def flows_page(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    return _page(request, console_of(request))


async def upload_flow(request: web.Request) -> web.StreamResponse:
    user = require(request, "admin")
    console = console_of(request)
    form = await request.post()
    flows = in_service(console)
    chosen = next((f for f in flows if str(f.n) == str(form.get("target", ""))), None)
    if console.reloader is None or chosen is None:
        return _page(request, console, 400, error="flows.upload.no_target")
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return _page(request, console, 400, error="flows.upload.no_file", chosen=chosen.n)
    data = await console.run(_read, upload.file, MAX_BYTES + 1)
    detail: dict[str, Any] = {"filename": upload.filename, "bytes": len(data),
                              "flow": chosen.flow.name, "version_before": chosen.flow.version}
    if len(data) > MAX_BYTES:
        await console.audit(request, "flow.upload", chosen.path,
                            {**detail, "result": "too_big"})
        return _page(request, console, 413, error="flows.upload.too_big", chosen=chosen.n)
    result = await console.run(replace_flow, console.reloader, chosen.path, data,
                               f"console upload by {user.name}")
    detail.update(result=result.state, version_after=result.after or result.before)
    if result.problems or result.reload_problems:
        detail["problems"] = [str(p) for p in result.problems] + list(result.reload_problems)
    await console.audit(request, "flow.upload", chosen.path, detail)
    status = {"refused": 422, "failed": 409}.get(result.state, 200)
    return _page(request, console, status, upload=result, chosen=chosen.n)


async def flow_graph(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    console = console_of(request)
    chosen = next((f for f in in_service(console) if str(f.n) == request.query.get("n")),
                  None)
    if chosen is None:
        raise web.HTTPNotFound(text="No such flow in service.")
    cache: dict[tuple[str, str], bytes] = request.app[GRAPHS]
    key = (chosen.path, chosen.flow.version)
    svg = cache.get(key)
    if svg is None:
        flow = chosen.flow
        try:
            svg = await console.run(lambda: render(to_dot(flow), "svg", GRAPH_TIMEOUT))
        except GraphError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        while len(cache) >= GRAPHS_KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = svg
    return web.Response(body=svg, content_type="image/svg+xml",
                        headers={"Cache-Control": "private, max-age=86400"})


def setup(app: web.Application, console: Console) -> None:
    app[GRAPHS] = {}
    app.router.add_get("/flows", flows_page)
    app.router.add_post("/flows", upload_flow)
    app.router.add_get("/flows/graph.svg", flow_graph)
