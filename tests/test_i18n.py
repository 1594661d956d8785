"""English and Canadian French: complete compiled catalogues, the language chosen from the browser
or the switcher, and vendor titles in the user's language on pages, the API and the websocket."""

from __future__ import annotations

import ast
import gettext
import io
import json
import os
import re
import shutil
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import translation
from django.utils.translation.template import templatize

from chatsite.asgi import application
from conversations.frames import conversation_json
from conversations.models import Agent, Conversation
from conversations.relay import conversation_group
from tests.conftest import csrf_headers
from tests.wsclient import HOST, ORIGIN, session_cookie

BASE = Path(settings.BASE_DIR)
PO = BASE / "locale" / "fr_CA" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
# What `makemessages -l fr_CA --ignore=.venv --ignore=bench --ignore=tests --ignore=staticfiles`
# reads: the project's Python and templates (JS takes its strings from the chat template).
SOURCE_IGNORE = {".venv", "bench", "tests", "staticfiles", "static", "docs", "locale",
                 "node_modules", "__pycache__"}
TITLES = {"en-ca": "Parcel question", "fr-ca": "Question sur le colis"}
FR = {"HTTP_ACCEPT_LANGUAGE": "fr-CA,fr;q=0.9,en;q=0.5"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-CA,en;q=0.9"}

Key = tuple[str | None, str]  # (msgctxt, msgid)


@pytest.fixture(autouse=True)
def _back_to_the_default_language() -> Iterator[None]:
    """LocaleMiddleware activates the request's language in the test's thread and nothing
    resets it: later tests must not inherit French."""
    yield
    translation.deactivate()


# The catalogue ------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    text = text.strip()
    assert text[0] == '"' and text[-1] == '"', text
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m[1]], text[1:-1])


def parse_po(path: Path) -> list[dict[str, Any]]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural, msgstr {index|None: str},
    flags; obsolete (#~) entries are left out."""
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = None
    field: tuple[str, int | None] = ("msgid", None)
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if entry is not None and entry["msgid"] is not None:
                entries.append(entry)
            entry = None
            continue
        if line.startswith("#~"):
            continue
        if entry is None:
            entry = {"msgctxt": None, "msgid": None, "msgid_plural": None, "msgstr": {},
                     "flags": set()}
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif match := re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")$',
                               line):
            name, index, value = match.groups()
            if name.startswith("msgstr"):
                field = ("msgstr", int(index) if index is not None else None)
                entry["msgstr"][field[1]] = _unquote(value)
            else:
                field = (name, None)
                entry[name] = _unquote(value)
        else:
            if field[0] == "msgstr":
                entry["msgstr"][field[1]] += _unquote(line)
            else:
                entry[field[0]] += _unquote(line)
    return entries


@pytest.fixture(scope="module")
def catalogue() -> dict[Key, dict[str, Any]]:
    return {(e["msgctxt"], e["msgid"]): e for e in parse_po(PO) if e["msgid"]}


def _placeholders(text: str) -> list[str]:
    """Python-format (%(name)s, %s) and the chat script's {name} placeholders."""
    return sorted(re.findall(r"%\([^)]+\)[sdif]|%[sdif]|\{\w+\}", text))


def test_it_every_catalogue_entry_is_translated(catalogue: dict[Key, dict[str, Any]]):
    assert len(catalogue) > 200
    untranslated = [key for key, e in catalogue.items()
                    if not all(e["msgstr"].values()) or not e["msgstr"]]
    fuzzy = [key for key, e in catalogue.items() if "fuzzy" in e["flags"]]
    assert untranslated == [], f"empty msgstr in {PO.name}: {untranslated}"
    assert fuzzy == [], f"fuzzy entries in {PO.name} (check, then drop the flag): {fuzzy}"


def test_it_translations_keep_every_placeholder(catalogue: dict[Key, dict[str, Any]]):
    for key, e in catalogue.items():
        if e["msgid_plural"] is None:
            assert _placeholders(e["msgstr"][None]) == _placeholders(e["msgid"]), key
        else:
            assert set(e["msgstr"]) == {0, 1}, key  # French: nplurals=2
            assert _placeholders(e["msgstr"][0]) == _placeholders(e["msgid"]), key
            assert _placeholders(e["msgstr"][1]) == _placeholders(e["msgid_plural"]), key


def test_it_the_header_declares_french_plurals():
    header = next(e for e in parse_po(PO) if e["msgid"] == "")["msgstr"][None]
    assert "Language: fr_CA\n" in header
    assert "Plural-Forms: nplurals=2; plural=(n > 1);\n" in header
    assert "charset=UTF-8" in header


# Strings in the source, found at test time ---------------------------------------------------

# Django's makemessages keywords: name -> the role of each string argument.
KEYWORDS = {
    "_": ("msgid",), "gettext": ("msgid",), "gettext_lazy": ("msgid",),
    "gettext_noop": ("msgid",), "ngettext": ("msgid", "plural"),
    "ngettext_lazy": ("msgid", "plural"), "pgettext": ("ctx", "msgid"),
    "pgettext_lazy": ("ctx", "msgid"), "npgettext": ("ctx", "msgid", "plural"),
    "npgettext_lazy": ("ctx", "msgid", "plural"),
}
SKIP_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}


def extract_python(source: str) -> set[Key]:
    """(msgctxt, msgid) of every gettext-family call whose arguments are string literals."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in SKIP_TOKENS]
    found: set[Key] = set()
    for i, tok in enumerate(tokens[:-1]):
        if tok.type != tokenize.NAME or tok.string not in KEYWORDS:
            continue
        if tokens[i + 1].string != "(" or (i and tokens[i - 1].string in (".", "def")):
            continue
        args: list[str] = []
        j, parts = i + 2, []
        while j < len(tokens):
            if tokens[j].type == tokenize.STRING:
                parts.append(tokens[j].string)
            elif tokens[j].string in (",", ")") and parts:
                try:
                    args.append("".join(ast.literal_eval(p) for p in parts))
                except (ValueError, SyntaxError):  # f-strings: not extractable, not ours
                    break
                parts = []
                if tokens[j].string == ")":
                    break
            else:
                break
            j += 1
        named = dict(zip(KEYWORDS[tok.string], args, strict=False))
        if "msgid" in named:
            found.add((named.get("ctx"), named["msgid"]))
    return found


# templatize() turns a template into the Python-like text makemessages hands to xgettext:
# ` gettext('...') `, ` pgettext('ctx', '...') `, ` ngettext('...', '...', count) `, ` _("...") `.
_TEMPLATE_CALL = re.compile(
    r"""\b(gettext|pgettext|ngettext|npgettext|_)\(\s*((?:u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"""\s*,?\s*)+)""", re.S)
_LITERAL = re.compile(r"""u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.S)


def extract_template(source: str, origin: str) -> set[Key]:
    found: set[Key] = set()
    for match in _TEMPLATE_CALL.finditer(templatize(source, origin)):
        args = [ast.literal_eval(lit) for lit in _LITERAL.findall(match[2])]
        if match[1] in ("pgettext", "npgettext"):
            found.add((args[0], args[1]))
        else:
            found.add((None, args[0]))
    return found


def source_files(*suffixes: str) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(BASE):
        top = Path(root) == BASE
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                         and not (top and d in SOURCE_IGNORE))
        files += [Path(root) / n for n in sorted(names) if Path(n).suffix in suffixes]
    return files


def _missing(found: set[Key], catalogue: dict[Key, dict[str, Any]]) -> list[Key]:
    return sorted((key for key in found
                   if key not in catalogue or not all(catalogue[key]["msgstr"].values())),
                  key=lambda k: (k[0] or "", k[1]))


def test_it_every_template_string_has_a_french_translation(catalogue: dict[Key, dict[str, Any]]):
    """Each {% translate %} / {% blocktranslate %} in every template (the review desk's too),
    read at test time: a new untranslated template string fails here."""
    templates = source_files(".html", ".txt")
    assert any(p.name == "chat.html" for p in templates)
    found: set[Key] = set()
    for path in templates:
        found |= extract_template(path.read_text(encoding="utf-8"), str(path))
    assert (None, "Send") in found and (None, "Message %(agent)s…") in found
    assert _missing(found, catalogue) == [], (
        "run `manage.py makemessages -l fr_CA` (options in this module), translate, then "
        "`manage.py compilemessages`")


def test_it_every_python_string_has_a_french_translation(catalogue: dict[Key, dict[str, Any]]):
    found: set[Key] = set()
    for path in source_files(".py"):
        found |= extract_python(path.read_text(encoding="utf-8"))
    assert (None, "Conversation renamed.") in found and (None, "New conversation") in found
    assert _missing(found, catalogue) == []


def test_it_the_extractors_read_what_makemessages_reads():
    assert extract_python(
        'x = _("a") + gettext_lazy("b" "c")\nngettext("%(n)d d", "%(n)d ds", n)\n'
        'pgettext("ctx", "e")\nf(_(f"{x}"))\nobj._("not me")\n'
    ) == {(None, "a"), (None, "bc"), (None, "%(n)d d"), ("ctx", "e")}
    assert extract_template(
        '{% load i18n %}{% translate "A" %}{% translate "B" context "k" %}'
        "{% blocktranslate with n=x %}C {{ n }}{% endblocktranslate %}"
        '{% blocktranslate trimmed %}\n  D\n  E\n{% endblocktranslate %}{{ _("F") }}', "t.html"
    ) == {(None, "A"), ("k", "B"), (None, "C %(n)s"), (None, "D E"), (None, "F")}


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext is not installed")
def test_it_makemessages_finds_nothing_the_catalogue_lacks(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch,
    catalogue: dict[Key, dict[str, Any]],
):
    """The authoritative check: makemessages itself, on a copy of the sources (so the real
    catalogue is not touched), extracts nothing that is missing from the committed one."""
    for path in source_files(".py", ".html", ".txt"):
        target = tmp_path / path.relative_to(BASE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    monkeypatch.chdir(tmp_path)
    call_command("makemessages", locale=["fr_CA"], verbosity=0, stdout=io.StringIO())
    fresh = parse_po(tmp_path / "locale" / "fr_CA" / "LC_MESSAGES" / "django.po")
    keys = {(e["msgctxt"], e["msgid"]) for e in fresh if e["msgid"]}
    assert len(keys) > 200
    assert _missing(keys, catalogue) == []


def test_it_the_chat_script_strings_all_come_from_the_template():
    """The chat script keeps English fallbacks; each key must be in the template's table."""
    script = (BASE / "static" / "chat" / "strings.js").read_text(encoding="utf-8")
    block = re.search(r"^const strings = \{\n(.*?)^\};", script, re.S | re.M)
    assert block is not None
    keys = set(re.findall(r"^\s+(\w+):", block[1], re.M))
    table = set(re.findall(r'data-key="(\w+)"',
                           (BASE / "templates" / "conversations" / "chat.html").read_text()))
    assert len(keys) > 50 and keys <= table, keys - table


def test_it_the_compiled_catalogue_matches_the_po_file():
    """The committed .mo is `compilemessages` of the committed .po (compared as catalogues, so
    the gettext version that compiled it does not matter)."""
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    expected: dict[Any, str] = {}
    for e in parse_po(PO):
        key = e["msgid"] if e["msgctxt"] is None else f"{e['msgctxt']}\x04{e['msgid']}"
        if e["msgid_plural"] is None:
            expected[key] = e["msgstr"][None]
        else:
            for index, text in e["msgstr"].items():
                expected[(key, index)] = text
    # msgfmt leaves the template's creation date out of the compiled header.
    for catalog in (compiled, expected):
        catalog[""] = re.sub(r"^POT-Creation-Date: .*\n", "", catalog[""], flags=re.M)
    assert compiled == expected, "run `manage.py compilemessages` after editing the .po file"


# The language: browser, switcher -------------------------------------------------------------


@pytest.mark.django_db
def test_it_the_login_page_follows_the_browser_language():
    french = Client().get("/accounts/login/", **FR).content.decode()
    assert '<html lang="fr-ca" ' in french
    assert "Se connecter" in french and "Passer au contenu" in french
    assert "Nom d’utilisateur" in french  # Django's own catalogue for the auth form
    english = Client().get("/accounts/login/", **EN).content.decode()
    assert '<html lang="en" ' in english and "Log in" in english and "Se connecter" not in english
    # A plain "fr" browser gets the Canadian French we ship; an unknown language, English.
    plain_fr = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Se connecter" in plain_fr
    german = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Log in" in german


@pytest.mark.django_db
def test_it_the_chat_page_follows_the_browser_language(alice_client: Client, conversation: Any):
    french = alice_client.get(f"/c/{conversation.id}/", **FR).content.decode()
    for text in ("Envoyer", "Arrêter", "Renommer", "Se déconnecter", "Rechercher",
                 'placeholder="Écrire à Demo agent…"', 'data-key="connected">Connecté<',
                 'data-key="retry">Réessayer<', "Contexte du client"):
        assert text in french, text
    assert ">Send<" not in french
    english = alice_client.get(f"/c/{conversation.id}/", **EN).content.decode()
    assert "Send" in english and 'data-key="connected">Connected<' in english
    assert "Envoyer" not in english


@pytest.mark.django_db
def test_it_messages_and_form_errors_are_in_the_users_language(alice_client: Client,
                                                           conversation: Any, demo_agent: Any):
    r = alice_client.post(f"/c/{conversation.id}/archive", {"archived": "1"}, follow=True, **FR)
    assert "Conversation archivée." in r.content.decode()
    r = alice_client.post("/conversations/new", {"agent": "demo", "metadata": "[1]"}, **FR)
    assert r.status_code == 400
    assert "Les métadonnées doivent être un objet JSON." in r.content.decode()


@pytest.mark.django_db
def test_it_the_api_keeps_english_codes_with_translated_messages(api_client: Client):
    body = api_client.get("/api/v1/conversations?page=0", **FR).json()["error"]
    assert body["code"] == "invalid" and body["message"] == "page doit être un entier positif."
    body = api_client.get("/api/v1/conversations?page=0", **EN).json()["error"]
    assert body["message"] == "page must be a positive integer."


@pytest.mark.django_db
def test_it_the_switcher_sets_the_language(alice: Any, conversation: Any):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get(f"/c/{conversation.id}/?customer=", **EN).content.decode()
    # One button per other language, posting to set_language and coming back here.
    assert 'action="/i18n/setlang/"' in page
    assert f'name="next" value="/c/{conversation.id}/?customer="' in page
    assert 'name="language" value="fr-ca" lang="fr-ca">Français</button>' in page
    assert 'value="en"' not in page.split('id="language-form"')[1].split("</form>")[0]
    r = client.post("/i18n/setlang/", {"language": "fr-ca", "next": f"/c/{conversation.id}/"},
                    **EN, **csrf_headers(client))
    assert r.status_code == 302 and r["Location"] == f"/c/{conversation.id}/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr-ca"
    # The choice beats the browser's Accept-Language from now on, on every page.
    page = client.get(f"/c/{conversation.id}/", **EN).content.decode()
    assert '<html lang="fr-ca" ' in page and "Envoyer" in page
    assert 'name="language" value="en" lang="en">English</button>' in page
    assert "Nouvelle conversation" in client.get("/", **EN).content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"}, **csrf_headers(client))
    assert "Send" in client.get(f"/c/{conversation.id}/", **FR).content.decode()


@pytest.mark.django_db
def test_it_the_switcher_works_before_logging_in():
    client = Client()
    r = client.post("/i18n/setlang/", {"language": "fr-ca", "next": "/accounts/login/"})
    assert r["Location"] == "/accounts/login/"
    assert "Se connecter" in client.get("/accounts/login/").content.decode()


# Vendor titles in the user's language ---------------------------------------------------------


@pytest.fixture
def titled(alice: Any, demo_agent: Agent) -> Conversation:
    return Conversation.objects.create(owner=alice, agent=demo_agent, generated_titles=TITLES)


@pytest.mark.django_db
def test_it_generated_titles_show_in_the_users_language(alice_client: Client, titled: Any):
    for headers, mine, other in ((FR, "Question sur le colis", "Parcel question"),
                                 (EN, "Parcel question", "Question sur le colis")):
        home = alice_client.get("/", **headers).content.decode()
        assert f'<span class="conversation-title">{mine}</span>' in home
        chat = alice_client.get(f"/c/{titled.id}/", **headers)
        html = chat.content.decode()
        assert f'<h1 id="conversation-title" class="chat-title">{mine}</h1>' in html
        assert f"<title>{mine} · chatsite</title>" in html
        assert chat.context["initial_state"]["conversation"]["display_title"] == mine
        assert other not in html.split('id="chat-initial"')[0]
        delete = alice_client.get(f"/c/{titled.id}/delete", **headers).content.decode()
        assert mine in delete
        api = alice_client.get(f"/api/v1/conversations/{titled.id}", **headers).json()
        assert api["display_title"] == api["generated_title"] == mine
        assert api["generated_titles"] == TITLES and api["title"] == ""
        listed = alice_client.get("/api/v1/conversations", **headers).json()["data"][0]
        assert listed["display_title"] == mine


@pytest.mark.django_db
def test_it_a_users_own_title_wins_and_no_title_is_translated(alice_client: Client, titled: Any,
                                                           alice: Any, demo_agent: Any):
    titled.title = "Mine"
    titled.save()
    assert "Mine" in alice_client.get(f"/c/{titled.id}/", **FR).content.decode()
    untitled = Conversation.objects.create(owner=alice, agent=demo_agent)
    assert untitled.display_title("fr-ca") == "Nouvelle conversation"
    assert untitled.display_title("en") == "New conversation"
    html = alice_client.get(f"/c/{untitled.id}/", **FR).content.decode()
    assert '<h1 id="conversation-title" class="chat-title">Nouvelle conversation</h1>' in html


async def _socket(client: Client, conversation_id: Any, **headers: str) -> WebsocketCommunicator:
    extra = [(name.encode(), value.encode()) for name, value in headers.items()]
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/",
                                 [(b"host", HOST), (b"origin", ORIGIN),
                                  (b"cookie", session_cookie(client)), *extra])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


async def _frame(comm: WebsocketCommunicator) -> dict[str, Any]:
    """The next frame other than `presence` (sockets opening and closing)."""
    while True:
        frame = json.loads(await comm.receive_from(timeout=5))
        if frame.get("type") != "presence":
            return frame


@pytest.mark.django_db(transaction=True)
async def test_it_websocket_frames_use_the_sockets_language(alice_client: Client, titled: Any):
    french = await _socket(alice_client, titled.id, **{"accept-language": "fr-CA,fr;q=0.9"})
    english = await _socket(alice_client, titled.id, **{"accept-language": "en-CA"})
    # The switcher's cookie beats Accept-Language, as for pages.
    cookie = session_cookie(alice_client) + b"; django_language=fr-ca"
    chosen = WebsocketCommunicator(application, f"/ws/conversations/{titled.id}/",
                                   [(b"host", HOST), (b"origin", ORIGIN), (b"cookie", cookie),
                                    (b"accept-language", b"en")])
    assert (await chosen.connect(timeout=5))[0]
    try:
        syncs = [await _frame(c) for c in (french, english, chosen)]
        assert [s["conversation"]["display_title"] for s in syncs] == [
            "Question sur le colis", "Parcel question", "Question sur le colis"]
        # conversation.updated is built once by the run and fanned out: each socket localizes.
        titled.generated_titles = {"en-ca": "Lost parcel", "fr-ca": "Colis perdu"}
        frame = {"type": "conversation.updated", "conversation": conversation_json(titled, "en")}
        await get_channel_layer().group_send(
            conversation_group(titled.id), {"type": "relay.frames", "skip": None, "frames": [frame]}
        )
        updates = [await _frame(c) for c in (french, english)]
        assert [u["conversation"]["display_title"] for u in updates] == ["Colis perdu",
                                                                        "Lost parcel"]
        assert updates[0]["conversation"]["generated_title"] == "Colis perdu"
        assert frame["conversation"]["display_title"] == "Lost parcel"  # not mutated
        # Error frames: English codes, messages in the socket's language (services' too).
        await french.send_to(text_data="{oops")
        error = await _frame(french)
        assert error == {"type": "error", "code": "bad_json",
                         "message": "La trame n'est pas du JSON valide."}
        await french.send_to(text_data=json.dumps({"type": "message.send", "content": "  "}))
        error = await _frame(french)
        assert error["code"] == "invalid" and error["message"] == "Le message est vide."
        await english.send_to(text_data=json.dumps({"type": "message.send", "content": "  "}))
        assert (await _frame(english))["message"] == (
            "The message is empty.")
    finally:
        for comm in (french, english, chosen):
            await comm.disconnect()
