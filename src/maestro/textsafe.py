"""Stored text on a terminal: shown as data, never obeyed as a command.

Feature requests, reasons, branches and paths come from users, from git
files and from imported archives.  Written raw, an escape sequence in one of
them is executed by the terminal that shows it: OSC 52 sets the clipboard,
OSC 0 the window title, CSI 2J clears the screen, and bidi overrides make
text read differently from what it is.  So:

* :func:`visible` is the one function every human-readable output passes
  stored text through: each C0 and C1 control, DEL, bidi control and line or
  paragraph separator becomes a visible escape (``\\x1b``, ``\\u202e``).
* :func:`json_text` post-processes encoded JSON for ``--json``: the encoder
  already escapes C0 controls; DEL, C1 and the bidi controls are escaped as
  ``\\uXXXX`` too, so the output still parses to exactly the same strings.

This module imports nothing, so the command line can use it without Rich.
"""

from __future__ import annotations

__all__ = ["BIDI_CONTROLS", "json_text", "visible"]

#: Characters that reorder text: ALM, LRM, RLM, LRE/RLE/PDF/LRO/RLO, LRI/RLI/FSI/PDI.
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
# Line and paragraph separators end a line in some terminals and in JavaScript.
_SEPARATORS = (0x2028, 0x2029)
_C0_C1_DEL = (*range(0x00, 0x20), *range(0x7F, 0xA0))
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}

_VISIBLE: dict[int, str] = {
    **{code: _NAMED.get(code, f"\\x{code:02x}") for code in _C0_C1_DEL},
    **{code: f"\\u{code:04x}" for code in (*sorted(BIDI_CONTROLS), *_SEPARATORS)},
}
_JSON: dict[int, str] = {
    code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *sorted(BIDI_CONTROLS), *_SEPARATORS)
}


def visible(text: str) -> str:
    """``text`` with every control, bidi control and separator written as an escape."""
    # Every character this replaces is non-printable to Python, so printable
    # text (nearly all of it) is returned without a translation pass.
    if text.isprintable():
        return text
    return text.translate(_VISIBLE)


def json_text(encoded: str) -> str:
    """Encoded JSON (from ``json.dumps(..., ensure_ascii=False)``) safe for a terminal.

    The characters replaced can only occur inside JSON strings, where
    ``\\uXXXX`` denotes the same character, so the value parses unchanged.
    """
    return encoded.translate(_JSON)
