"""Parsing of the quantities a link shape is written in: rates (``10mbit``), times (``5ms``), percentages (``1%``).

One pure module, shared by the topology loader (``link:`` of a node or pod) and ``podlab link set``, so a value
means the same wherever it is written. Units follow ``tc`` (tc-tbf(8), tc-netem(8)): ``bit``/``kbit``/``mbit``/
``gbit`` are bits per second in powers of 1000 (``kibit``/``mibit``/``gibit`` in powers of 1024) and ``bps``/
``kbps``/``mbps``/``gbps`` are *bytes* per second, as in tc; a Kubernetes-style quantity (``10M``, ``500k``)
is bits per second, as in the ``kubernetes.io/egress-bandwidth`` annotation. Times take ``us``/``ms``/``s``.
Errors are ``UnitError(message, fix)`` for the caller to wrap with the file and field it came from.
"""
from __future__ import annotations

import re

from emulator.topology.model import LinkShape

SHAPE_KEYS = ("rate", "delay", "jitter", "loss")
MIN_RATE = 8_000  # 8 kbit/s: below that tbf's burst arithmetic stops making sense
MAX_RATE = 100_000_000_000
MAX_DELAY_US = 60_000_000

_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
               "kibit": 2**10, "mibit": 2**20, "gibit": 2**30,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
               "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_TIME_UNITS = {"us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 10**6, "sec": 10**6}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z%]*)\s*$")


class UnitError(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _split(value: object, what: str, example: str) -> tuple[float, str]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(f"{what} {value!r} is not a number with a unit", f"write e.g. {example}")
    m = _NUMBER.match(str(value))
    if not m:
        raise UnitError(f"{what} {str(value)!r} is not a number with a unit", f"write e.g. {example}")
    return float(m.group(1)), m.group(2).lower()


def parse_rate(value: object) -> int:
    """Bits per second from ``10mbit``, ``1.5gbit``, ``100kbps`` (bytes/s, as tc reads it) or ``10M``."""
    number, unit = _split(value, "rate", "'10mbit'")
    if unit not in _RATE_UNITS:
        raise UnitError(f"rate {str(value)!r} has no known unit ({unit or 'none'})",
                        "use bit, kbit, mbit or gbit (bits per second), e.g. '10mbit'")
    bps = int(round(number * _RATE_UNITS[unit]))
    if not MIN_RATE <= bps <= MAX_RATE:
        raise UnitError(f"rate {str(value)!r} ({bps} bit/s) is outside {MIN_RATE} bit/s .. 100 gbit/s",
                        "use a rate from '8kbit' to '100gbit'")
    return bps


def parse_time(value: object, what: str = "delay") -> int:
    """Microseconds from ``5ms``, ``250us``, ``1s``."""
    number, unit = _split(value, what, "'5ms'")
    if unit not in _TIME_UNITS:
        raise UnitError(f"{what} {str(value)!r} has no known unit ({unit or 'none'})", "use us, ms or s, e.g. '5ms'")
    us = int(round(number * _TIME_UNITS[unit]))
    if us > MAX_DELAY_US:
        raise UnitError(f"{what} {str(value)!r} is longer than 60s", "use at most '60s'")
    return us


def parse_percent(value: object, what: str = "loss") -> float:
    """A percentage from ``1%``, ``0.5%`` or a bare number (taken as percent)."""
    number, unit = _split(value, what, "'1%'")
    if unit not in ("", "%"):
        raise UnitError(f"{what} {str(value)!r} is not a percentage", "write e.g. '1%'")
    if number > 100:
        raise UnitError(f"{what} {str(value)!r} is more than 100%", "use a value from 0% to 100%")
    return number


def parse_shape(raw: dict) -> LinkShape:
    """A ``LinkShape`` from a mapping with the keys rate, delay, jitter, loss (already checked for unknown keys).

    Raises ``UnitError`` whose ``args[0]`` is the message and ``key`` attribute names the offending key.
    """
    values: dict[str, object] = {}
    for key, fn in (("rate", parse_rate), ("delay", parse_time), ("jitter", lambda v: parse_time(v, "jitter")),
                    ("loss", parse_percent)):
        if raw.get(key) is not None:
            try:
                values[key] = fn(raw[key])
            except UnitError as e:
                e.key = key  # type: ignore[attr-defined]
                raise
    if "jitter" in values and "delay" not in values:
        err = UnitError(f"jitter {raw['jitter']!r} is given without a delay (netem varies the delay by the jitter)",
                        "add a delay, e.g. 'delay: 5ms, jitter: 1ms'")
        err.key = "jitter"  # type: ignore[attr-defined]
        raise err
    if not values:
        err = UnitError("a link shape needs at least one of rate, delay, jitter, loss", "write e.g. '{rate: 10mbit}'")
        err.key = ""  # type: ignore[attr-defined]
        raise err
    return LinkShape(rate_bps=values.get("rate"), delay_us=values.get("delay"),  # type: ignore[arg-type]
                     jitter_us=values.get("jitter"), loss_pct=values.get("loss"))  # type: ignore[arg-type]


def format_rate(bps: int) -> str:
    """The rate as tc writes it: ``10mbit``, ``1500kbit``, ``123bit``."""
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps % factor == 0:
            return f"{bps // factor}{unit}"
    return f"{bps}bit"


def format_time(us: int) -> str:
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


def format_percent(pct: float) -> str:
    return f"{pct:g}%"


def shape_dict(shape: LinkShape) -> dict[str, str]:
    """The shape back in the topology file's words (for JSON output and annotations)."""
    out: dict[str, str] = {}
    if shape.rate_bps is not None:
        out["rate"] = format_rate(shape.rate_bps)
    if shape.delay_us is not None:
        out["delay"] = format_time(shape.delay_us)
    if shape.jitter_us is not None:
        out["jitter"] = format_time(shape.jitter_us)
    if shape.loss_pct is not None:
        out["loss"] = format_percent(shape.loss_pct)
    return out
