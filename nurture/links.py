"""The links an email carries: signed unsubscribe, click and open tokens, and the rewritten HTML part.

A click token binds the lead, the sequence, the step and the exact target URL under one HMAC, so
the web endpoint redirects only to a URL that an email really carried (no open redirect), and
nobody can make a click count for another lead. Tokens carry the lead's numeric id, never its email.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Container
from dataclasses import dataclass
from urllib.parse import urlsplit

from leadflow.nurture import tokens
from leadflow.nurture.tokens import BadToken

UNSUBSCRIBE = "unsubscribe"
CLICK = "click"
OPEN = "open"
# Longer URLs stay as they are (untracked): a token grows with its URL, and some proxies cut long paths.
MAX_TRACKED_URL = 1800

_FIELDS = {UNSUBSCRIBE: 2, OPEN: 3, CLICK: 4}
# An <a> start tag; quoted attribute values may contain ">".
_A_TAG = re.compile(r"""<a\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_HREF = re.compile(r"""(?<![\w-])(href\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'<>`]+))""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class SignedLink:
    """What a verified token says: whose email, which sequence and step, and (clicks) where to go."""

    lead_id: int
    sequence: str
    step: int | None = None
    url: str | None = None


def is_trackable(url: str) -> bool:
    """An absolute http(s) URL of printable characters, short enough to sign into a link."""
    if len(url) > MAX_TRACKED_URL or not url.isprintable() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def click_token(secret: str, lead_id: int, sequence: str, step: int, url: str) -> str:
    return tokens.sign(secret, CLICK, lead_id, sequence, step, url)


def open_token(secret: str, lead_id: int, sequence: str, step: int) -> str:
    return tokens.sign(secret, OPEN, lead_id, sequence, step)


def read_token(secret: str, purpose: str, token: str) -> SignedLink:
    """The link a token was signed for, or BadToken (tampered, another purpose or key, or malformed)."""
    fields = tokens.verify(secret, purpose, token)
    if len(fields) != _FIELDS[purpose]:
        raise BadToken("malformed token")
    try:
        lead_id = int(fields[0])
        step = int(fields[2]) if len(fields) > 2 else None
    except ValueError:
        raise BadToken("malformed token") from None
    url = fields[3] if purpose == CLICK else None
    if url is not None and not is_trackable(url):
        raise BadToken("not a web address")
    return SignedLink(lead_id=lead_id, sequence=fields[1], step=step, url=url)


def rewrite_links(body: str, tracked: Callable[[str], str], *, keep: Container[str] = ()) -> str:
    """Replace the http(s) href of every <a> in an HTML part by `tracked(url)`.

    mailto:, tel:, anchors, relative links, URLs in `keep` (the unsubscribe link) and URLs that
    are not trackable are left as they are. Values are unescaped before signing and escaped again.
    """

    def one_href(match: re.Match[str]) -> str:
        raw = next(v for v in match.groups()[1:] if v is not None)
        url = html.unescape(raw).strip()
        if url in keep or not is_trackable(url):
            return match.group(0)
        return f'{match.group(1)}"{html.escape(tracked(url), quote=True)}"'

    return _A_TAG.sub(lambda tag: _HREF.sub(one_href, tag.group(0), count=1), body)


def add_open_pixel(body: str, url: str) -> str:
    """A 1×1 image just before </body> (or at the end), hidden from screen readers."""
    pixel = (
        f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" aria-hidden="true">'
    )
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return body + pixel
    at = ends[-1].start()
    return body[:at] + pixel + body[at:]


@dataclass(frozen=True)
class LinkSigner:
    """Makes the public links an email carries: unsubscribe, tracked clicks and (optionally) an open pixel."""

    secret_key: str
    public_base_url: str
    track_opens: bool = False

    def unsubscribe_url(self, lead_id: int, sequence: str) -> str:
        token = tokens.sign(self.secret_key, UNSUBSCRIBE, lead_id, sequence)
        return f"{self.public_base_url.rstrip('/')}/u/{token}"

    def click_url(self, lead_id: int, sequence: str, step: int, url: str) -> str:
        token = click_token(self.secret_key, lead_id, sequence, step, url)
        return f"{self.public_base_url.rstrip('/')}/c/{token}"

    def open_url(self, lead_id: int, sequence: str, step: int) -> str:
        token = open_token(self.secret_key, lead_id, sequence, step)
        return f"{self.public_base_url.rstrip('/')}/o/{token}.gif"

    def track(self, html: str, *, lead_id: int, sequence: str, step: int, unsubscribe_url: str | None = None) -> str:
        """The HTML part with its web links made tracked clicks (never the unsubscribe link), and the pixel."""
        html = rewrite_links(
            html,
            lambda url: self.click_url(lead_id, sequence, step, url),
            keep={unsubscribe_url or self.unsubscribe_url(lead_id, sequence)},
        )
        return add_open_pixel(html, self.open_url(lead_id, sequence, step)) if self.track_opens else html
