"""How ids and text are read: the contract's normalisation, in one place.

Ids (`user_id`, `item_id`, `scene`, `action`) are opaque strings, but two systems often write the
same id in different shapes. Ingest (events and catalog alike), `precise recall --user` and the
historical features apply these rules, so that the shapes below become one id:

1. **Unicode NFC**: `"é"` (one code point) and `"e" + U+0301` (combining accent) are one id.
2. **Trimmed**: leading and trailing whitespace (any Unicode whitespace: space, tab, newline,
   no-break space U+00A0, ideographic space U+3000 ...) is removed.
3. **Invisible characters removed anywhere**: the zero-width space U+200B, word joiner U+2060 and
   byte-order mark U+FEFF (a BOM at the start of a CSV cell, a zero-width space pasted from a web page).

Everything else is kept: **case** (`U1` and `u1` are two ids), inner spaces, punctuation, and
compatibility forms (full-width `ｕ１` stays distinct from `u1`: NFKC would also merge ligatures
and superscripts, which some id schemes use). An id that is empty after these rules is missing
(rejected as `missing <column>`); an id that holds a control character (U+0000-U+001F, U+007F-U+009F)
is rejected as `control character in <column>` (it is a corrupted field, not an id).

Titles and texts: NFC and trimmed; control characters other than tab and newline become a space;
case and inner whitespace kept.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

INVISIBLE = "\u200b\u2060\ufeff"
_INVISIBLE_RE = f"[{INVISIBLE}]"
_CONTROL_RE = r"[\x00-\x1f\x7f-\x9f]"
_TEXT_CONTROL_RE = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"


def normalize_id(value: str) -> str:
    """One id by the rules of the module docstring (control characters are left for the caller)."""
    for ch in INVISIBLE:
        value = value.replace(ch, "")
    return unicodedata.normalize("NFC", value).strip()


def normalize_ids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A column of ids -> (normalised ids, nulls kept; (N,) bool True where a control character
    makes the id invalid)."""
    s = values.astype("string")
    out = s.str.replace(_INVISIBLE_RE, "", regex=True).str.normalize("NFC").str.strip()
    control = out.str.contains(_CONTROL_RE, regex=True).to_numpy(dtype=bool, na_value=False)
    return out.astype(object).where(out.notna(), None), control


def normalize_text(values: pd.Series) -> pd.Series:
    """Titles and texts: NFC, trimmed, control characters but tab and newline as a space; nulls kept."""
    s = values.astype("string")
    out = s.str.replace(_TEXT_CONTROL_RE, " ", regex=True).str.normalize("NFC").str.strip()
    return out.astype(object).where(out.notna(), None)
