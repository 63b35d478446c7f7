"""Refuse settings that name nothing: a typo must not silently leave a safeguard off.

``INGEST_IMAP__REQUIRE_AUTHENTICATON=true`` (one letter short) was ignored, and sender
authentication stayed off. :func:`unknown_setting` finds the first name in the environment,
a ``.env`` file, the secrets folder or the TOML file that is meant as a setting but is not
one, and says which setting is closest.

What counts as meant as a setting, for names beginning ``INGEST_`` (any case): a name with
``__`` (the section separator), a name whose first word is a section (``INGEST_IMAP_HOST``),
or a name a few letters away from a real one (``INGEST_LOGFORMAT``). Other ``INGEST_``
names are left alone, and so are Kubernetes' service links: it adds ``INGEST_SERVICE_HOST``
and ``INGEST_PORT_...`` to every pod of a namespace holding a Service named ``ingest``, and
``INGEST_METRICS_SERVICE_HOST``, ``INGEST_METRICS_PORT=tcp://...`` and the like for one named
``ingest-metrics`` (whose first word is a section). Every key of the TOML file is ours, so
there any unknown key is refused.

Example::

    >>> sections = {"imap": ["host", "require_authentication"]}
    >>> print(unknown_setting({"INGEST_IMAP__HOTS": "x"}, {}, [], {}, sections=sections))
    INGEST_IMAP__HOTS (environment) is not a setting; did you mean INGEST_IMAP__HOST?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Variables read from the process environment that are not fields of the settings model.
PROCESS_VARIABLES = ("INGEST_CONFIG", "INGEST_SECRETS_DIR", "INGEST_LOG_FORMAT", "INGEST_CRASH_AT")

_PREFIX = "INGEST_"
_CLOSE = 0.85
#: Kubernetes' service links for a Service named ``ingest``: INGEST_SERVICE_HOST, INGEST_PORT ...
_SERVICE_LINK = re.compile(r"INGEST_(SERVICE_[A-Z0-9_]+|PORT(_[A-Z0-9_]+)?)")
#: ... and for a Service named ``ingest-<anything>`` (``ingest-metrics``): no setting ends so.
_NAMED_SERVICE_LINK = re.compile(
    r"INGEST(_[A-Z0-9]+)+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)"
)
#: ``INGEST_<NAME>_PORT`` is a service link only with Kubernetes' value, ``tcp://10.0.0.1:9100``:
#: ``INGEST_IMAP_PORT=993`` is a misspelt INGEST_IMAP__PORT.
_SERVICE_PORT = re.compile(r"INGEST(_[A-Z0-9]+)+_PORT")
_SERVICE_URL = re.compile(r"(tcp|udp|sctp)://\S+")


def setting_names(sections: Mapping[str, Iterable[str]]) -> set[str]:
    """Every variable name a setting answers to: ``INGEST_IMAP__HOST``, and ``INGEST_IMAP``
    (a whole section as JSON), for ``{"imap": ["host", ...]}``."""
    names = set(PROCESS_VARIABLES)
    for section, fields in sections.items():
        names.add(f"{_PREFIX}{section.upper()}")
        names.update(f"{_PREFIX}{section.upper()}__{field.upper()}" for field in fields)
    return names


def _service_link(name: str, value: str | None) -> bool:
    """True for the variables Kubernetes adds for a Service named ``ingest`` or ``ingest-*``."""
    if _SERVICE_LINK.fullmatch(name) or _NAMED_SERVICE_LINK.fullmatch(name):
        return True
    return bool(value and _SERVICE_PORT.fullmatch(name) and _SERVICE_URL.fullmatch(value))


def _meant_as_setting(name: str, known: set[str], sections: Iterable[str], value: str | None) -> bool:
    rest = name[len(_PREFIX) :]
    if _service_link(name, value):
        return False
    if "__" in rest:
        return True
    if rest.split("_", 1)[0] in {s.upper() for s in sections}:
        return True
    return bool(difflib.get_close_matches(name, known, n=1, cutoff=_CLOSE))


def _suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else "; see the configuration reference"


def _unknown_variable(
    names: Iterable[str],
    where: str,
    sections: Mapping[str, Iterable[str]],
    known: set[str],
    environ: Mapping[str, str],
) -> str | None:
    values: Mapping[str, Any] = names if isinstance(names, Mapping) else {}
    for raw in names:
        name = raw.upper()
        if name in PROCESS_VARIABLES and (raw != name if where == "environment" else name not in environ):
            # Read from the environment only, by this exact name: set in .env or spelt
            # ingest_config, the TOML file (and the require_authentication in it) would
            # be silently ignored.
            place = "read from the environment only" if where != "environment" else "upper case only"
            return f"{raw} ({where}) is {place}; set {name} in the environment"
        if not name.startswith(_PREFIX) or name in known:
            continue
        value = values.get(raw) if where == "environment" else None
        if _meant_as_setting(name, known, sections, value if isinstance(value, str) else None):
            return f"{raw} ({where}) is not a setting{_suggestion(name, known)}"
    return None


def _unknown_toml_key(toml: Mapping[str, Any], sections: Mapping[str, Iterable[str]]) -> str | None:
    for section, table in toml.items():
        owners = [name for name, fields in sections.items() if section in fields]
        if section not in sections and owners:
            return f"{section} (INGEST_CONFIG) is not a section; put it under [{owners[0]}]"
        if section not in sections:
            close = difflib.get_close_matches(section, sorted(sections), n=1, cutoff=0.6)
            hint = f"; did you mean [{close[0]}]?" if close else f"; sections: {', '.join(sorted(sections))}"
            return f"[{section}] (INGEST_CONFIG) is not a settings section{hint}"
        if not isinstance(table, Mapping):
            return f"{section} (INGEST_CONFIG) must be a table: [{section}]"
        fields = sorted(sections[section])
        for key in table:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else "; see the configuration reference"
                return f"[{section}] {key} (INGEST_CONFIG) is not a setting{hint}"
    return None


def unknown_setting(
    environ: Mapping[str, str],
    dotenv: Mapping[str, Any],
    secret_files: Iterable[str],
    toml: Mapping[str, Any],
    *,
    sections: Mapping[str, Iterable[str]],
) -> str | None:
    """The first name, in any source, meant as a setting but naming none; None if all are known.

    ``sections`` maps each section to its fields (:func:`ingest.settings.section_fields`).
    """
    known = setting_names(sections)
    return (
        _unknown_variable(environ, "environment", sections, known, environ)
        or _unknown_variable(dotenv, ".env", sections, known, environ)
        or _unknown_variable(secret_files, "secret file", sections, known, environ)
        or _unknown_toml_key(toml, sections)
    )
