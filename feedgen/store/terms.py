"""Terms: the vocabulary of `PostTerm`, the searchable terms a post is indexed under, derived from its columns.

Owns what terms a post has (`post_terms`) and how each kind is spelled: `tag:<hashtag>`, `lang:<code>` (and its base
language), `domain:<host>` (each link's host without `www.`, and its parent domains down to two labels, so
`domain:arxiv.org` finds links to `export.arxiv.org`), `link:<url>`, `mention:<did>`, `quote:<at-uri>`,
`reply-to:<did>` (the author of the post replied to) and `thread-of:<did>` (the author of the thread's root). The
indexer writes these terms and deletes them with the post by computing them again from the same columns, so the
terms are a pure function of a post's row.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def tag_term(tag: str) -> str:
    return f'tag:{tag.lower().lstrip("#")}'


def lang_term(lang: str) -> str:
    return f'lang:{lang.lower()}'


def domain_term(domain: str) -> str:
    """The term of posts linking to `domain` or any of its subdomains (`arxiv.org`, `www.arxiv.org`: the same)."""
    return f'domain:{_host(domain)}'


def link_term(url: str) -> str:
    """The term of posts linking to exactly `url` (as the author wrote it)."""
    return f'link:{url}'


def mention_term(did: str) -> str:
    return f'mention:{did}'


def quote_term(uri: str) -> str:
    """The term of posts quoting the record `uri` (a post, a feed, a list...)."""
    return f'quote:{uri}'


def reply_to_term(did: str) -> str:
    """The term of replies to a post by `did`."""
    return f'reply-to:{did}'


def thread_of_term(did: str) -> str:
    """The term of replies in a thread that `did` started."""
    return f'thread-of:{did}'


def uri_author(uri: str | None) -> str | None:
    """The DID in an at-uri (`at://did:plc:x/app.bsky.feed.post/3k...` -> `did:plc:x`), or None."""
    if not uri or not uri.startswith('at://did:'):
        return None
    return uri[5:].split('/', 1)[0]


def _host(domain: str) -> str:
    host = domain.lower().strip('.')
    return host[4:] if host.startswith('www.') else host


def link_domains(url: str) -> list[str]:
    """The domains a link is indexed under: its host without `www.`, then its parent domains down to two labels."""
    try:
        host = urlsplit(url).hostname or ''
    except ValueError:
        return []
    labels = _host(host).split('.')
    if len(labels) < 2:
        return [host] if host else []
    return ['.'.join(labels[start:]) for start in range(len(labels) - 1)]


def post_terms(
    tags: Iterable[str],
    langs: Iterable[str],
    links: Iterable[str] = (),
    mentions: Iterable[str] = (),
    quote: str | None = None,
    reply_parent: str | None = None,
    reply_root: str | None = None,
) -> list[str]:
    """The `PostTerm` terms of a post with these column values (see the module docstring), once each."""
    terms = [tag_term(tag) for tag in tags]
    for lang in langs:
        terms.append(lang_term(lang))
        base = lang.split('-', 1)[0]
        if base != lang:
            terms.append(lang_term(base))
    for link in links:
        terms.extend(f'domain:{domain}' for domain in link_domains(link))
        terms.append(link_term(link))
    terms.extend(mention_term(did) for did in mentions)
    if quote:
        terms.append(quote_term(quote))
    if parent_author := uri_author(reply_parent):
        terms.append(reply_to_term(parent_author))
    if root_author := uri_author(reply_root):
        terms.append(thread_of_term(root_author))
    return list(dict.fromkeys(terms))


POST_TERM_COLUMNS = ('tags', 'langs', 'links', 'mentions', 'quote', 'reply_parent', 'reply_root')
"""The `Post` columns `post_terms` reads, in its arguments' order (`row_terms` takes their values)."""


def row_terms(tags: str, langs: str, links: str, mentions: str, *rest: str | None) -> list[str]:
    """`post_terms` of the values of `POST_TERM_COLUMNS` as stored (space-separated lists)."""
    quote, reply_parent, reply_root = rest
    return post_terms(tags.split(), langs.split(), links.split(), mentions.split(), quote, reply_parent, reply_root)
