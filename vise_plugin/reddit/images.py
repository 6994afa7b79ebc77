"""Which images a submission shows."""

import html
from typing import List

from vise_plugin.reddit.records import Submission


def image_urls(sub: Submission) -> List[str]:
    """The image URLs of a submission, in order:

    - ``post_hint == "image"``: ``url`` (``url_overridden_by_dest`` when ``url`` is missing);
    - a gallery (``is_gallery``): its ``gallery_data.items`` through ``media_metadata[media_id].s.u``,
      only ``status == "valid"`` and ``e == "Image"`` (animations left out), HTML-unescaped;
    - else, for a post that is neither a self post nor a video, its first preview image
      (``preview.images[0].source.url``, HTML-unescaped);
    - a self post (``is_self``) has none.
    """
    if sub.is_self:
        return []
    if sub.post_hint == "image":
        url = sub.url or sub.url_overridden_by_dest
        if url:
            return [url]
    if sub.is_gallery:
        urls = _gallery_urls(sub)
        if urls:
            return urls
    if sub.is_video or not sub.preview or not sub.preview.images:
        return []
    source = sub.preview.images[0].source
    return [html.unescape(source.url)] if source is not None and source.url else []


def _gallery_urls(sub: Submission) -> List[str]:
    media = sub.media_metadata or {}
    urls = []
    for item in (sub.gallery_data.items or ()) if sub.gallery_data else ():
        meta = media.get(item.media_id)
        if meta is not None and meta.status == "valid" and meta.e == "Image" and meta.s and meta.s.u:
            urls.append(html.unescape(meta.s.u))
    return urls


def is_image_post(sub: Submission) -> bool:
    """Whether :func:`image_urls` finds an image."""
    return bool(image_urls(sub))
