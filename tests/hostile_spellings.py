"""Spellings of a host that Unicode normalisation (IDNA/NFKC, as yarl applies it) turns into ASCII.

Written as translations rather than literals: the characters are indistinguishable from ASCII on screen.
"""

from __future__ import annotations

FULLWIDTH_DIGITS = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))
CIRCLED_DIGITS = str.maketrans("0123456789", chr(0x24EA) + "".join(chr(0x2460 + digit) for digit in range(9)))
# Full stops IDNA maps to ".": ideographic, fullwidth and halfwidth ideographic.
IDEOGRAPHIC_FULL_STOP = str.maketrans(".", "\u3002")
UNICODE_FULL_STOPS = ("\u3002", "\uff0e", "\uff61")
UNICODE_DIGITS = {
    digit: (
        chr(0xFF10 + int(digit)),
        chr(0x1D7CE + int(digit)),
        chr(0x24EA) if digit == "0" else chr(0x245F + int(digit)),
    )
    for digit in "0123456789"
}  # fullwidth, mathematical bold and circled spellings of each ASCII digit


def fullwidth(host: str) -> str:
    """127.0.0.1 with fullwidth digits and ASCII dots."""
    return host.translate(FULLWIDTH_DIGITS)


def circled(host: str) -> str:
    """127.0.0.1 with circled digits and ASCII dots."""
    return host.translate(CIRCLED_DIGITS)


def ideographic(host: str) -> str:
    """127.0.0.1 with ASCII digits and ideographic full stops."""
    return host.translate(IDEOGRAPHIC_FULL_STOP)
