"""Languages of the console: Chinese (the templates' own language) and English via Babel catalogs.

Message ids are the Chinese texts, so a string without a translation still shows in
Chinese, the first language; the `en` catalog translates them. The language comes
from the `rollcall_lang` cookie, set by the switch at /admin/lang.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from gettext import NullTranslations
from pathlib import Path
from typing import Final

from babel.support import Translations
from starlette.requests import HTTPConnection

TRANSLATIONS_DIR: Final = Path(__file__).parent / "translations"
LANG_COOKIE: Final = "rollcall_lang"
DEFAULT_LANGUAGE: Final = "zh_CN"
# Each language named in itself, for the switch.
LANGUAGES: Final = {"zh_CN": "中文", "en": "English"}
# The HTML lang attribute of each language.
HTML_LANG: Final = {"zh_CN": "zh-CN", "en": "en"}

_active: ContextVar[NullTranslations | None] = ContextVar("rollcall_translations", default=None)


@cache
def catalog(language: str) -> NullTranslations:
    """The compiled catalog of a language (an empty one if it has none)."""
    return Translations.load(str(TRANSLATIONS_DIR), [language], domain="messages")


def language_of(connection: HTTPConnection) -> str:
    """The language a request asked for by cookie, or Chinese."""
    wanted = connection.cookies.get(LANG_COOKIE, DEFAULT_LANGUAGE)
    return wanted if wanted in LANGUAGES else DEFAULT_LANGUAGE


@contextmanager
def active_language(language: str) -> Iterator[None]:
    """Translate with this language's catalog inside the block."""
    token = _active.set(catalog(language))
    try:
        yield
    finally:
        _active.reset(token)


def gettext(message: str) -> str:
    """The message in the active language (Chinese outside any)."""
    translations = _active.get()
    return message if translations is None else translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural message in the active language."""
    translations = _active.get()
    if translations is None:
        return singular if n == 1 else plural
    return translations.ngettext(singular, plural, n)


def translator(connection: HTTPConnection) -> Callable[[str], str]:
    """A gettext for the request's language, for texts made in Python (flash messages)."""
    translations = catalog(language_of(connection))
    return translations.gettext
