"""The console's shipped files: present, and never turning API text into HTML."""

from __future__ import annotations

import re

from api.console import static_dir


def test_console_files_ship_in_the_package() -> None:
    names = {p.name for p in static_dir().iterdir()}
    assert {"index.html", "console.css", "console.js", "dom.js", "i18n.js", "metrics.js"} <= names


def test_scripts_never_parse_html_or_eval() -> None:
    banned = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|\.style\s*=")
    for js in static_dir().glob("*.js"):
        hits = [line for line in js.read_text(encoding="utf-8").splitlines() if banned.search(line)]
        assert hits == [], f"{js.name}: {hits}"


def test_every_ui_string_exists_in_both_languages() -> None:
    text = (static_dir() / "i18n.js").read_text(encoding="utf-8")
    en = text[text.index("en: {") : text.index("ko: {")]
    ko = text[text.index("ko: {") :]
    keys = re.compile(r"^\s+(\w+):", re.M)
    assert set(keys.findall(en)) == set(keys.findall(ko)) - {"ko"}
    used = set(re.findall(r"""data-i18n(?:-placeholder)?="(\w+)\"""", (static_dir() / "index.html").read_text()))
    used |= set(re.findall(r"""\bt\("(\w+)\"""", (static_dir() / "console.js").read_text()))
    assert used <= set(keys.findall(en))
