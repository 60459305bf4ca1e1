"""The status page at `/`: what an on-call person needs at a glance, as one self-contained HTML page.

`render` is a pure function of a `StatusSnapshot`: no I/O, no clock, no JavaScript and no external
assets (clusters without internet access must show it whole). Every dynamic value goes through
`html.escape`. The page reloads itself with `<meta http-equiv="refresh">`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from html import escape
from typing import Final

from ..outbound.breaker import BreakerState
from .metrics import UNKNOWN_CHANNEL

REFRESH_S: Final = 5


class Tone(StrEnum):
    """What a state means to the reader; each is a colour and always comes with words."""

    good = "good"
    warn = "warn"
    bad = "bad"
    idle = "idle"


@dataclass(frozen=True, slots=True)
class BrokerLink:
    url: str
    """Without its password."""
    connected: bool
    detail: str | None = None
    """Why the link is down, when known."""


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    name: str
    depth: int = 0
    oldest_age_s: float | None = None
    published: int = 0
    stored: int = 0
    replayed: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)
    """Reason -> count."""
    deprecated: bool = False
    in_catalog: bool = True
    """False: stored events of a channel the loaded catalog no longer has (kept, not replayed)."""


@dataclass(frozen=True, slots=True)
class ReplayStatus:
    configured_rate: float
    """Events/s, the bound."""
    achieved_rate: float | None
    """Events/s actually replayed over the last `window_s`; None until there are two samples."""
    window_s: float | None
    replayed_total: int


@dataclass(frozen=True, slots=True)
class StoreStatus:
    path: str
    depth: int
    used_bytes: int
    max_bytes: int
    writable: bool
    oldest_age_s: float | None
    # Remembered idempotency keys and the age of the oldest; None: the window is turned off.
    idempotency_keys: int | None = None
    idempotency_reach_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    version: str
    taken_at: datetime
    breaker: BreakerState
    breaker_retry_after_s: float
    outbound: BrokerLink
    inbound: BrokerLink
    store: StoreStatus
    replay: ReplayStatus
    channels: tuple[ChannelStatus, ...]
    refresh_s: int = REFRESH_S
    topology: tuple[str, ...] = ()
    """Broker objects that exist with other arguments than the gateway declares, and what it costs."""
    consumers: tuple[tuple[str, str], ...] = ()
    """(inbound queue, `active` | `standby` | `shared`) for each queue this process consumes."""


class RateMeter:
    """The rate at which a growing count grows, from samples taken when the page is rendered.

    It keeps the newest sample at least `window_s` old as the baseline, so a page reloaded every
    few seconds shows the rate over about the last `window_s`; after a long unobserved spell the
    rate is the average since the last look, and the page says over how long.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, count: int) -> tuple[float, float] | None:
        """Record `count` now; return (events/s, seconds measured over), or None on the first."""
        now = self._clock()
        self._samples.append((now, count))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window_s:
            self._samples.popleft()
        since, baseline = self._samples[0]
        span = now - since
        if span <= 0:
            return None
        return (count - baseline) / span, span


# -- formatting --------------------------------------------------------------------------------


def format_count(value: int) -> str:
    return f"{value:,}"


def format_bytes(value: int) -> str:
    """Three significant digits in decimal units, as the store's own messages use (1 MB = 10^6 B)."""
    if value < 1000:
        return f"{value} B"
    units = ("kB", "MB", "GB", "TB")
    scaled, index = value / 1000, 0
    while scaled >= 999.5 and index < len(units) - 1:
        scaled, index = scaled / 1000, index + 1
    unit = units[index]
    decimals = 2 if scaled < 9.995 else 1 if scaled < 99.95 else 0
    return f"{scaled:.{decimals}f} {unit}"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_rate(rate: float) -> str:
    if rate >= 100 or rate == int(rate):
        return f"{rate:,.0f} events/s"
    return f"{rate:,.1f} events/s"


# -- what the states mean ---------------------------------------------------------------------

_BREAKER_WORDS: Final = {
    BreakerState.closed: (Tone.good, "Closed", "publishing directly to the broker"),
    BreakerState.half_open: (Tone.warn, "Half-open", "a trial publish decides"),
    BreakerState.open: (Tone.bad, "Open", "events go to the fallback store"),
}


def _verdict(snapshot: StatusSnapshot) -> tuple[Tone, str, str]:
    """The one line at the top: can events be accepted, and where do they go."""
    store, breaker = snapshot.store, snapshot.breaker
    direct = breaker is BreakerState.closed and snapshot.outbound.connected
    if not direct and not store.writable:
        return (
            Tone.bad,
            "Refusing events",
            "neither the broker nor the fallback store can take them: producers get 503",
        )
    if not direct:
        waiting = format_count(store.depth)
        return (
            Tone.warn,
            "Degraded: storing events",
            f"the broker is not taking publishes; {waiting} events wait in the fallback store"
            " and are replayed once it is back",
        )
    if store.depth:
        return (
            Tone.warn,
            "Recovering: replaying",
            f"{format_count(store.depth)} stored events are being replayed in order;"
            " new events of those channels queue behind them",
        )
    if not store.writable:
        return (
            Tone.warn,
            "Healthy, but no fallback",
            "events are published directly, but the fallback store cannot be written:"
            " an outage now would mean 503s",
        )
    return Tone.good, "Healthy", "events are published directly to the broker"


def _badge(tone: Tone, words: str, element_id: str | None = None) -> str:
    ident = f' id="{escape(element_id)}"' if element_id else ""
    return f'<span class="badge {tone.value}"{ident}><i></i>{escape(words)}</span>'


def _card(title: str, body: str, wide: bool = False) -> str:
    classes = "card wide" if wide else "card"
    return f'<section class="{classes}"><h2>{escape(title)}</h2>{body}</section>'


def _fact(label: str, value: str, element_id: str | None = None) -> str:
    """A label and an already-escaped value."""
    ident = f' id="{escape(element_id)}"' if element_id else ""
    return f'<div class="fact"><span>{escape(label)}</span><b{ident}>{value}</b></div>'


def _breaker_card(snapshot: StatusSnapshot) -> str:
    tone, words, meaning = _BREAKER_WORDS[snapshot.breaker]
    body = _badge(tone, words, "breaker-state") + f'<p class="meaning">{escape(meaning)}</p>'
    if snapshot.breaker is BreakerState.open:
        body += _fact(
            "Next trial publish in", escape(format_duration(snapshot.breaker_retry_after_s))
        )
    return _card("Circuit breaker", body)


CONSUMER_WORDS = {
    "active": (Tone.good, "Active", "this process consumes it; other replicas stand by"),
    "standby": (Tone.idle, "Standing by", "another replica consumes it, or it has been empty"),
    "shared": (Tone.warn, "Shared", "every replica consumes it: no order across replicas"),
    "unknown": (
        Tone.warn,
        "Unknown",
        "declared by someone else; replicas may share it (see the broker objects below)",
    ),
}


def _consumers(snapshot: StatusSnapshot) -> str:
    if not snapshot.consumers:
        return ""
    rows = "".join(
        f"<li><code>{escape(queue)}</code> {_badge(tone, words)}"
        f' <small class="meaning">{escape(meaning)}</small></li>'
        for queue, state in snapshot.consumers
        for tone, words, meaning in (CONSUMER_WORDS[state],)
    )
    return f'<ul class="consumers" id="consumers">{rows}</ul>'


def _link_card(
    title: str, link: BrokerLink, element_id: str, up: str, down: str, extra: str = ""
) -> str:
    if link.connected:
        body = _badge(Tone.good, "Connected", element_id)
        meaning = up
    else:
        body = _badge(Tone.bad, "Disconnected", element_id)
        meaning = f"{link.detail}; {down}" if link.detail else down
    body += f'<p class="meaning">{escape(meaning)}</p>'
    body += f'<p class="url">{escape(link.url)}</p>' + extra
    return _card(title, body)


def _replay_card(snapshot: StatusSnapshot) -> str:
    replay = snapshot.replay
    if snapshot.store.depth == 0:
        tone, words = Tone.idle, "Idle"
    elif snapshot.breaker is BreakerState.open:
        tone, words = Tone.bad, "Paused"
    else:
        tone, words = Tone.warn, "Replaying"
    body = _badge(tone, words, "replay-state")
    body += _fact("Configured limit", escape(format_rate(replay.configured_rate)), "replay-rate")
    if replay.achieved_rate is None or replay.window_s is None:
        achieved = "measuring…"
    else:
        achieved = (
            f"{escape(format_rate(replay.achieved_rate))}"
            f" <small>over the last {escape(format_duration(replay.window_s))}</small>"
        )
    body += _fact("Achieved", achieved, "replay-achieved")
    body += _fact("Replayed since start", escape(format_count(replay.replayed_total)))
    return _card("Replay", body)


def _store_card(snapshot: StatusSnapshot) -> str:
    store = snapshot.store
    share = min(store.used_bytes / store.max_bytes, 1.0) if store.max_bytes else 0.0
    fill_tone = Tone.bad if share >= 0.9 else Tone.warn if share >= 0.5 else Tone.good
    oldest = "—" if store.oldest_age_s is None else format_duration(store.oldest_age_s)
    writable = _badge(Tone.good, "Writable") if store.writable else _badge(Tone.bad, "Not writable")
    depth_tone = "warn" if store.depth else "good"
    body = (
        '<div class="store">'
        f'<div class="big {depth_tone}"><b id="store-depth">{escape(format_count(store.depth))}</b>'
        f"<span>events waiting</span></div>"
        '<div class="store-facts">'
        + _fact("Oldest waiting", escape(oldest), "store-oldest")
        + _fact(
            "Size",
            f"{escape(format_bytes(store.used_bytes))}"
            f" <small>of {escape(format_bytes(store.max_bytes))}"
            f" ({share * 100:.1f} %)</small>",
            "store-bytes",
        )
        + f'<div class="bar"><div class="{fill_tone.value}" style="width:{share * 100:.2f}%">'
        "</div></div>"
        + _fact("File", f"<code>{escape(store.path)}</code> {writable}")
        + _fact("Idempotency keys", _idempotency(store), "store-keys")
        + "</div></div>"
    )
    return _card("Fallback store", body, wide=True)


def _idempotency(store: StoreStatus) -> str:
    if store.idempotency_keys is None:
        return "off"
    count = escape(format_count(store.idempotency_keys))
    if not store.idempotency_keys:
        return count
    reach = escape(format_duration(store.idempotency_reach_s))
    return f"{count} <small>(repeats recognised back {reach})</small>"


def _topology_card(snapshot: StatusSnapshot) -> str:
    if not snapshot.topology:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in snapshot.topology)
    body = f'<ul class="warn-text" id="topology">{items}</ul>'
    return _card("Broker objects declared by someone else", body, wide=True)


def _rejected_cell(rejected: Mapping[str, int]) -> str:
    total = sum(rejected.values())
    if not total:
        return '<td class="num zero">0</td>'
    reasons = ", ".join(
        f"{escape(reason.replace('_', ' '))} {escape(format_count(count))}"
        for reason, count in sorted(rejected.items())
        if count
    )
    return f'<td class="num bad-text">{escape(format_count(total))}<small>{reasons}</small></td>'


def _num(value: int) -> str:
    zero = " zero" if value == 0 else ""
    return f'<td class="num{zero}">{escape(format_count(value))}</td>'


def _channel_note(channel: ChannelStatus) -> str:
    if not channel.in_catalog:
        return (
            '<small class="bad-text">not in the loaded catalog: its stored events are kept and'
            " not replayed; <code>breakwater store export/purge --channel</code></small>"
        )
    if channel.deprecated:
        return "<small>deprecated</small>"
    return ""


def _channels_table(snapshot: StatusSnapshot) -> str:
    rows = []
    for channel in snapshot.channels:
        if channel.name == UNKNOWN_CHANNEL:
            # Nothing is ever accepted for an unknown channel; only its rejections mean anything.
            name = "<em>requests for unknown channels</em>"
            cells = '<td class="num zero">—</td>' * 5
        else:
            name = f"<code>{escape(channel.name)}</code>{_channel_note(channel)}"
            oldest = "—" if channel.oldest_age_s is None else format_duration(channel.oldest_age_s)
            waiting_class = "num warn-text" if channel.depth else "num zero"
            cells = (
                f'<td class="{waiting_class}">{escape(format_count(channel.depth))}</td>'
                f'<td class="num">{escape(oldest)}</td>'
                + _num(channel.published)
                + _num(channel.stored)
                + _num(channel.replayed)
            )
        rows.append(
            f'<tr data-channel="{escape(channel.name)}"><th scope="row">{name}</th>{cells}'
            f"{_rejected_cell(channel.rejected)}</tr>"
        )
    head = (
        "<thead><tr><th>Channel</th><th>Waiting in store</th><th>Oldest waiting</th>"
        "<th>Published directly</th><th>Accepted into store</th><th>Replayed</th>"
        "<th>Rejected</th></tr></thead>"
    )
    note = (
        '<p class="note">Counts since the gateway started. “Accepted into store” events were'
        " answered 202 <code>stored</code> and are replayed in order.</p>"
    )
    return _card(
        "Channels",
        f'<table id="channels">{head}<tbody>{"".join(rows)}</tbody></table>{note}',
        wide=True,
    )


_CSS: Final = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
"Liberation Sans",sans-serif;color:#1f2328;background:#f3f5f8}
header{background:#0f2540;color:#fff;padding:14px 28px;display:flex;align-items:center;gap:16px}
header h1{font-size:20px;margin:0;letter-spacing:.2px}
header .sub{color:#a9bdd6;font-size:13px}
header .when{margin-left:auto;color:#a9bdd6;font-size:12.5px;text-align:right}
main{max-width:1240px;margin:0 auto;padding:18px 28px 8px}
.verdict{display:flex;align-items:center;gap:14px;padding:12px 18px;border-radius:8px;
margin-bottom:16px;border:1px solid;border-left-width:6px;background:#fff}
.verdict strong{font-size:18px}
.verdict.good{border-color:#1a7f37}.verdict.warn{border-color:#bf8700}
.verdict.bad{border-color:#cf222e}.verdict.idle{border-color:#8c959f}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:14px}
.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:14px 16px;min-width:0}
.card.wide{grid-column:1/-1}
.card h2{margin:0 0 10px;font-size:12px;text-transform:uppercase;letter-spacing:.6px;
color:#59636e;font-weight:600}
.badge{display:inline-flex;align-items:center;gap:7px;padding:3px 11px 3px 9px;border-radius:999px;
font-weight:600;font-size:15px}
.badge i{width:9px;height:9px;border-radius:50%;background:currentColor}
.badge.good{color:#116329;background:#dafbe1}
.badge.warn{color:#7d4e00;background:#fff1c2}
.badge.bad{color:#a40e26;background:#ffebe9}
.badge.idle{color:#424a53;background:#eaeef2}
.meaning{margin:8px 0 0;color:#59636e;font-size:13px}
.url{margin:8px 0 0;font:12px ui-monospace,"DejaVu Sans Mono",monospace;color:#59636e;
overflow-wrap:anywhere}
.fact{display:flex;justify-content:space-between;gap:10px;margin-top:8px;font-size:13px}
.fact span{color:#59636e}.fact b{font-weight:600;text-align:right}
.fact small,td small{color:#59636e;font-weight:400}
.store{display:flex;gap:36px;align-items:center}
.big b{display:block;font-size:44px;line-height:1;font-weight:700}
.big span{color:#59636e}
.big.warn b{color:#9a6700}.big.good b{color:#1a7f37}
.store-facts{flex:1}.store-facts .fact{margin-top:6px}
.bar{height:8px;background:#eaeef2;border-radius:4px;overflow:hidden;margin-top:6px}
.bar div{height:100%;min-width:2px}
.bar .good{background:#2da44e}.bar .warn{background:#d4a72c}.bar .bad{background:#cf222e}
code{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace}
table{width:100%;border-collapse:collapse;font-size:13.5px}
th,td{padding:7px 10px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
thead th{font-size:12px;color:#59636e;font-weight:600;border-bottom:1px solid #d8dee4}
thead th:not(:first-child),td.num{text-align:right}
td.num{font-variant-numeric:tabular-nums}
tbody th{font-weight:400}tbody th em{color:#59636e}
td small{display:block;font-size:11.5px}
td.zero{color:#8c959f}.warn-text{color:#9a6700;font-weight:600}
.bad-text{color:#a40e26;font-weight:600}
.note{margin:8px 0 0;color:#59636e;font-size:12px}
footer{max-width:1240px;margin:0 auto;padding:6px 28px 20px;color:#59636e;font-size:13px;
display:flex;gap:18px}
footer a{color:#0969da;text-decoration:none;font-weight:600}
.consumers{list-style:none;padding:0;margin:8px 0 0}.consumers li{margin:4px 0}
"""


def render(snapshot: StatusSnapshot) -> str:
    """The whole page. Pure: the same snapshot always gives the same bytes."""
    tone, headline, explanation = _verdict(snapshot)
    taken = snapshot.taken_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    cards = (
        _breaker_card(snapshot)
        + _link_card(
            "Outbound broker",
            snapshot.outbound,
            "outbound-state",
            up="publishing to breakwater.events with confirms",
            down="reconnecting",
        )
        + _link_card(
            "Inbound broker",
            snapshot.inbound,
            "inbound-state",
            up="AMQP ingress is consuming breakwater.in.*",
            down="AMQP ingress waits for it; HTTP ingress serves",
            extra=_consumers(snapshot),
        )
        + _replay_card(snapshot)
        + _store_card(snapshot)
        + _topology_card(snapshot)
        + _channels_table(snapshot)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{snapshot.refresh_s:d}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(headline)} · Breakwater</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>Breakwater</h1>
<span class="sub">store-and-forward event gateway · v{escape(snapshot.version)}</span>
<span class="when">Updated {escape(taken)}<br>refreshes every {snapshot.refresh_s:d} s</span>
</header>
<main>
<div class="verdict {tone.value}" id="verdict">{_badge(tone, headline)}
<span>{escape(explanation)}</span></div>
<div class="grid">
{cards}
</div>
</main>
<footer>
<a href="/docs/asyncapi">AsyncAPI docs</a>
<a href="/metrics">Prometheus metrics</a>
<a href="/readyz">/readyz</a>
<a href="/healthz">/healthz</a>
</footer>
</body>
</html>
"""
