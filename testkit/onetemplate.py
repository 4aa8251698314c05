"""The shipped OpenNebula snippets (etc-one/gfs2clvm/) as oned reads them.

A small reader for OpenNebula's template / oned.conf syntax, and the shipped
oned.conf vectors and datastore templates through it -- what the unit tests of
the snippets check and what the lab's VM tests build their domains from
(with testkit/kvmdomain.py, the stand-in for oned's attribute rules).
"""

from __future__ import annotations

import re
from pathlib import Path

SNIPPETS = Path(__file__).resolve().parents[1] / "etc-one" / "gfs2clvm"
DRIVER = "gfs2clvm"


class TemplateSyntaxError(ValueError):
    pass


_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+) | (?P<comment>\#[^\n]*) |
    (?P<string>"(?:[^"\\]|\\.)*") | (?P<name>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<punct>[=\[\],]) | (?P<word>[^\s"=\[\],\#]+)
""", re.VERBOSE)


def _tokens(text: str):
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise TemplateSyntaxError(f"line {line}: unexpected {text[pos:pos + 10]!r}")
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            value = match.group()
            if kind == "string":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            yield kind, value, text.count("\n", 0, pos) + 1
        pos = match.end()


def parse_template(text: str) -> list[tuple[str, str | dict[str, str]]]:
    """`NAME = "v"`, `NAME = v` and `NAME = [ A = "x", B = y ]` attributes, in order,
    names upper-cased as oned does; `#` starts a comment outside quotes."""
    tokens = list(_tokens(text))
    out: list[tuple[str, str | dict[str, str]]] = []
    i = 0

    def take(*kinds, value=None):
        nonlocal i
        if i >= len(tokens):
            raise TemplateSyntaxError(f"unexpected end of text, expected {kinds}")
        kind, val, line = tokens[i]
        if kind not in kinds or (value is not None and val != value):
            raise TemplateSyntaxError(f"line {line}: expected {value or kinds}, got {val!r}")
        i += 1
        return val

    def scalar():
        return take("string", "name", "word")

    while i < len(tokens):
        name = take("name").upper()
        take("punct", value="=")
        if tokens[i][:2] == ("punct", "["):
            i += 1
            vector: dict[str, str] = {}
            while True:
                key = take("name").upper()
                take("punct", value="=")
                if key in vector:
                    raise TemplateSyntaxError(f"{name}: {key} given twice")
                vector[key] = scalar()
                sep = take("punct")
                if sep == "]":
                    break
                if sep != ",":
                    raise TemplateSyntaxError(f"{name}: expected ',' or ']', got {sep!r}")
            out.append((name, vector))
        else:
            out.append((name, scalar()))
    return out


def load(name: str) -> list[tuple[str, str | dict[str, str]]]:
    return parse_template((SNIPPETS / name).read_text())


def one(attrs, name: str):
    """The single attribute NAME (a vector or a value)."""
    found = [value for key, value in attrs if key == name]
    assert len(found) == 1, f"expected exactly one {name}, found {len(found)}"
    return found[0]


def conf(attrs, vector: str, driver: str = DRIVER) -> dict[str, str]:
    """The TM_MAD_CONF / DS_MAD_CONF vector for driver."""
    found = [value for key, value in attrs if key == vector and value.get("NAME") == driver]
    assert len(found) == 1, f"expected one {vector} named {driver}, found {len(found)}"
    return found[0]


def template(name: str) -> dict[str, str]:
    attrs = load(name)
    names = [key for key, _ in attrs]
    assert len(names) == len(set(names)), f"{name}: an attribute is given twice"
    assert all(isinstance(value, str) for _, value in attrs), f"{name}: no vectors expected"
    return dict(attrs)




def shipped_datastores() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """(TM_MAD_CONF, image, ISO and system datastore as oned stores them when
    created from the shipped oned.conf and templates)."""
    from testkit.kvmdomain import datastore_as_created
    attrs = load("oned.conf")
    tm_conf, ds_conf = conf(attrs, "TM_MAD_CONF"), conf(attrs, "DS_MAD_CONF")
    image_ds, iso_ds, system_ds = (
        datastore_as_created(template(name), tm_conf, ds_conf)
        for name in ("datastore-image.tmpl", "datastore-iso.tmpl", "datastore-system.tmpl"))
    return tm_conf, image_ds, iso_ds, system_ds
