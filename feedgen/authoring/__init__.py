"""Authoring: what an algorithm author uses to build, test and preview a plugin before publishing it: a store
builder, the contract check, the pytest plugin, the scaffold and the author's commands.

This package's `__all__` is feedgen's public API for testing algorithms (with the pytest fixtures the plugin
registers); every module under it is private. Its names load on first use, so pytest, which loads the plugin in
every run, imports nothing else of feedgen until a test asks for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedgen.authoring.builder import StoreBuilder
    from feedgen.authoring.contract import ContractError, ContractReport, check_contract
    from feedgen.authoring.post_parts import (
        images_embed,
        link_card,
        link_facet,
        mention_facet,
        quote_embed,
        quote_with_media,
        tag_facet,
        video_embed,
    )

__all__ = [
    'ContractError',
    'ContractReport',
    'StoreBuilder',
    'check_contract',
    'images_embed',
    'link_card',
    'link_facet',
    'mention_facet',
    'quote_embed',
    'quote_with_media',
    'tag_facet',
    'video_embed',
]

_HOMES = {
    'ContractError': 'feedgen.authoring.contract',
    'ContractReport': 'feedgen.authoring.contract',
    'StoreBuilder': 'feedgen.authoring.builder',
    'check_contract': 'feedgen.authoring.contract',
    'images_embed': 'feedgen.authoring.post_parts',
    'link_card': 'feedgen.authoring.post_parts',
    'link_facet': 'feedgen.authoring.post_parts',
    'mention_facet': 'feedgen.authoring.post_parts',
    'quote_embed': 'feedgen.authoring.post_parts',
    'quote_with_media': 'feedgen.authoring.post_parts',
    'tag_facet': 'feedgen.authoring.post_parts',
    'video_embed': 'feedgen.authoring.post_parts',
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(import_module(_HOMES[name]), name)
