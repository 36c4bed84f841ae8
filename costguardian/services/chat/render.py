"""A model's answer as HTML: Markdown (markdown-it-py, CommonMark with tables
and strikethrough, raw HTML off, so `<script>` stays text) then an allow-list
sanitizer (nh3, the Rust ammonia library): only the tags Markdown makes,
no images, links only to http(s) and mailto, each link `rel="noopener noreferrer nofollow"`.
Nothing a model writes can run in the page."""
from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from costguardian.money import format_usd

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"])

TAGS = {"p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
        "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td"}
# No images: a model's answer must not make the browser fetch a URL it chose.
ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}


def markdown(text: str) -> Markup:
    html = _MARKDOWN.render(text or "")
    clean = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES,
                      url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow", strip_comments=True)
    return Markup(clean)


def exact_usd(nanos: int | None) -> str:
    """A cost by the one money rule (costguardian.money): $0.0000325, $0.4717, $3.50."""
    return format_usd(nanos)
