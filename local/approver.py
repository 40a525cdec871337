"""An approver without a browser: the demo's auto-approver and the tests' scripted approver.

It does what a person does, over plain HTTP with its own cookie jar: opens the emailed link, is sent
to the local OIDC provider (`local.oidc`), signs in there as itself (the provider's button for its
subject), comes back through `/callback` with a session cookie, opens the link again, reads the form's
nonce and presses a button, sending the Origin and Sec-Fetch-Site a browser sends. Nothing bypasses
the sign-in.
"""

from __future__ import annotations

import base64
import html
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from local.oidc import subject_of

TIMEOUT_SECONDS = 30


def link_approver(link: str) -> str:
    """The approver a link was issued to (its token's `apr`; read, not verified)."""
    token = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["t"][0]
    payload = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["apr"])


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Approver:
    """One person's HTTP client: their cookies, their sign-in as `email`."""

    email: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _fetch(self, request: urllib.request.Request | str) -> tuple[int, str, str]:
        """(status, body, final URL), following redirects."""
        try:
            with self.opener.open(request, timeout=TIMEOUT_SECONDS) as reply:
                return int(reply.status), reply.read().decode(), reply.geturl()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(), exc.geturl()

    def open(self, link: str) -> tuple[int, str]:
        """Open the link, signing in at the provider when sent there; (status, page) of the approval page."""
        status, body, url = self._fetch(link)
        if "/oauth2/authorize" in url and status == 200:  # the provider's sign-in page: press our own button
            form = urllib.parse.urlencode({"sub": subject_of(self.email)}).encode()
            status, body, url = self._fetch(urllib.request.Request(url, data=form, method="POST"))
            if status != 200 or "/callback" not in url:
                return status, body
            status, body, url = self._fetch(link)  # what the callback page's refresh does
        return status, body

    def decide(self, link: str, decision: str, comment: str = "") -> tuple[int, str]:
        """Open the link (signing in) and press `decision` on the page's form; (status, page)."""
        status, page = self.open(link)
        nonce = re.search(r'name="n" value="([^"]+)"', page)
        token = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)["t"][0]
        if status != 200 or nonce is None:
            return status, page
        body = urllib.parse.urlencode({"t": token, "n": html.unescape(nonce.group(1)), "decision": decision,
                                       "comment": comment}).encode()
        request = urllib.request.Request(link.split("?")[0], data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": _origin(link), "Sec-Fetch-Site": "same-origin"})
        status, page, _ = self._fetch(request)
        return status, page
