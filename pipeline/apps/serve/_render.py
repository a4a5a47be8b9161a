"""A finished report as HTML: rendered on the server with raw HTML off, then sanitised by an allow-list.

Model output is untrusted (OWASP LLM05), so two independent layers: markdown-it-py's ``js-default``
preset (unlike its default, raw HTML is off, and ``javascript:``-style links are refused), then
nh3 (ammonia) keeping only formatting tags and ``http``/``https``/``mailto`` links. Images are
dropped: rendering one would fetch a URL the model chose, a known exfiltration channel.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

TAGS = frozenset(
    {"a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li"}
    | {"ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"}
)
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_markdown = MarkdownIt("js-default").disable("image")


def render_markdown(text: str) -> str:
    """Safe HTML for ``text``; whatever it contains shows as text or not at all, never as markup."""
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=set(TAGS),
        attributes=ATTRIBUTES,
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
