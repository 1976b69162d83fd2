"""Extract the console's messages and update and compile its catalogs (zh_CN, en).

Message ids are the Chinese texts of the templates and page modules. The zh_CN
catalog repeats them; the en catalog translates them. Run from the repository root:

    python scripts/translations.py          # extract, update both .po files, compile .mo
    python scripts/translations.py --check  # also fail if an English translation is missing
"""

import argparse
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
CATALOGS = SERVER / "web" / "translations"
LOCALES = ("zh_CN", "en")
METHODS = [
    ("web/**.py", "python"),
    ("kiosk/**.py", "python"),
    ("**/templates/**.html", "jinja2.ext:babel_extract"),
]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "false"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}


def extract() -> Catalog:
    """Every message the console's templates and modules translate."""
    template = Catalog(project="rollcall", locale="zh_CN", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(SERVER), METHODS, OPTIONS, keywords=KEYWORDS, comment_tags=("NOTE",)
    ):
        template.add(
            message, None, [(f"server/{filename}", lineno)], auto_comments=comments, context=context
        )
    return template


def update(template: Catalog, locale: str) -> tuple[Path, list[str]]:
    """Merge the template into one locale's .po, compile its .mo; the untranslated ids."""
    directory = CATALOGS / locale / "LC_MESSAGES"
    directory.mkdir(parents=True, exist_ok=True)
    po_path = directory / "messages.po"
    if po_path.exists():
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        catalog.update(template, no_fuzzy_matching=True)
    else:
        catalog = Catalog(project="rollcall", locale=locale, charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
    catalog.fuzzy = False
    missing: list[str] = []
    for message in catalog:
        if not message.id:
            continue
        if locale == "zh_CN":
            # The ids are Chinese already.
            message.string = message.id
        elif not message.string or (isinstance(message.string, tuple) and not all(message.string)):
            missing.append(str(message.id))
        message.flags.discard("fuzzy")
    with po_path.open("wb") as handle:
        write_po(handle, catalog, width=100, omit_header=False, sort_output=True)
    with (directory / "messages.mo").open("wb") as handle:
        write_mo(handle, catalog)
    return po_path, missing


def main() -> int:
    """Run the extraction and report what English still lacks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if English is incomplete")
    args = parser.parse_args()
    status = 0
    for locale in LOCALES:
        # A fresh template each time: a catalog update shares the template's messages.
        template = extract()
        path, missing = update(template, locale)
        summary = f"{len(template)} messages, {len(missing)} untranslated"
        print(f"{path.relative_to(ROOT)}: {summary}")  # noqa: T201 (a command-line tool)
        for message in missing:
            print(f"  missing: {message}")  # noqa: T201
        if missing and args.check:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
