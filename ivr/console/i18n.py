"""The console's words in Italian and English. A key missing in a language falls back to
English, then to the key itself (so a missing word shows, and a test catches it)."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("it", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "Centralino",
        "nav.agent": "My desk",
        "nav.wallboard": "Wallboard",
        "nav.reports": "Reports",
        "nav.flows": "Flows",
        "nav.audit": "Audit log",
        "nav.logout": "Log out",
        "login.title": "Sign in",
        "login.name": "User name",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.wrong": "Wrong user name or password.",
        "login.locked": "Too many wrong passwords from this address: try again in {minutes} min.",
        "login.stale": "The sign-in form expired: please try again.",
        "audit.title": "Audit log",
        "audit.at": "When",
        "audit.user": "User",
        "audit.address": "Address",
        "audit.action": "Action",
        "audit.target": "Target",
        "audit.detail": "Detail",
        "audit.filter": "Show",
        "common.none": "none",
        "common.save": "Save",
        "common.live_lost": "Connection lost: reconnecting...",
    },
    "it": {
        "app.title": "Centralino",
        "nav.agent": "La mia postazione",
        "nav.wallboard": "Cruscotto",
        "nav.reports": "Report",
        "nav.flows": "Flussi",
        "nav.audit": "Registro modifiche",
        "nav.logout": "Esci",
        "login.title": "Accesso",
        "login.name": "Nome utente",
        "login.password": "Password",
        "login.submit": "Entra",
        "login.wrong": "Nome utente o password errati.",
        "login.locked": "Troppe password errate da questo indirizzo: riprova tra {minutes} min.",
        "login.stale": "Il modulo di accesso è scaduto: riprova.",
        "audit.title": "Registro modifiche",
        "audit.at": "Quando",
        "audit.user": "Utente",
        "audit.address": "Indirizzo",
        "audit.action": "Azione",
        "audit.target": "Oggetto",
        "audit.detail": "Dettaglio",
        "audit.filter": "Mostra",
        "common.none": "nessuno",
        "common.save": "Salva",
        "common.live_lost": "Connessione persa: riconnessione...",
    },
}


def add(messages: dict[str, dict[str, str]]) -> None:
    """A page module's own words: ``add({"en": {...}, "it": {...}})`` at import."""
    for lang, words in messages.items():
        MESSAGES.setdefault(lang, {}).update(words)


def translator(lang: str) -> Callable[[str], str]:
    words = MESSAGES.get(lang, {})
    english = MESSAGES["en"]

    def t(key: str) -> str:
        return words.get(key) or english.get(key) or key

    return t
