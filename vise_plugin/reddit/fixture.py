"""A small month of Reddit dumps (``RS_<month>.zst``, ``RC_<month>.zst``) in the dumps' layout, for tests
and benchmarks.

Posts belong to topics; a topic picks the subreddit, the words of the comments and the range of score,
upvote ratio and comment count, so clustering comments or reactions finds the topics again. Post ``i``
is, by ``i % 20``: a gallery (3, 13), a link with only a preview (5, 15), a self post (7), a video (17),
a link without an image (9, 19), else a single image. Its image is ``image_url(i)``; item ``j > 0`` of a
gallery is ``image_url(j * num_posts + i)``. The comments include ``[deleted]`` / ``[removed]`` and blank
bodies, AutoModerator and ``RemindMeBot`` comments, comments on posts without an image and one
malformed line; some ``created_utc`` are strings or floats and some lines carry a ``_meta`` object.
"""

import calendar
import html
import os
import random
from typing import Any, Callable, Dict, List

from vise_plugin.reddit.zstd_ndjson import write_zstd_ndjson

TOPICS = {
    "pets": dict(
        subreddit="aww",
        words="cute puppy kitten fluffy adorable paws whiskers sweet good boy floof purr",
        score=(800, 6000),
        ratio=(0.94, 0.99),
        comments=(40, 400),
    ),
    "food": dict(
        subreddit="FoodPorn",
        words="delicious recipe crispy tasty sauce bake cheese yummy flavor spicy dinner homemade",
        score=(100, 900),
        ratio=(0.85, 0.95),
        comments=(10, 90),
    ),
    "politics": dict(
        subreddit="pics",
        words="outrageous corrupt vote protest unacceptable shameful government disgrace rights law angry policy",
        score=(-40, 300),
        ratio=(0.52, 0.75),
        comments=(300, 1500),
    ),
}
GENERIC = "the this is so really what a just i my look".split()
AUTOMOD = (
    "Your post has been automatically flagged for review. I am a bot, and this action was performed automatically."
)
REMINDER = "I will be messaging you in 1 day to remind you of this link."
#: (count, author or None for a user's, body) of the comments the join leaves out or a suffix filter catches
SPECIAL = [
    ("deleted", "[deleted]", "[deleted]"),
    ("removed", "[deleted]", "[removed]"),
    ("blank", None, "  \n "),
    ("automoderator", "AutoModerator", AUTOMOD),
    ("reminder_bot", "RemindMeBot", REMINDER),
]


def base36(n: int) -> str:
    """``n`` in Reddit's id alphabet (``0-9a-z``)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out or "0"


def _month_start(month: str) -> int:
    year, mon = (int(p) for p in month.split("-"))
    return calendar.timegm((year, mon, 1, 0, 0, 0))


def _kind(i: int) -> str:
    return {
        3: "gallery",
        13: "gallery",
        5: "preview",
        15: "preview",
        7: "self",
        17: "video",
        9: "link",
        19: "link",
    }.get(i % 20, "image")


def _submission(
    i: int, post_id: str, topic: str, kind: str, urls: List[str], created: int, rng: random.Random
) -> Dict[str, Any]:
    t = TOPICS[topic]
    score, ratio = rng.randint(*t["score"]), round(rng.uniform(*t["ratio"]), 2)
    if score <= 0:
        ratio = 0.5 if score == 0 else round(rng.uniform(0.3, 0.45), 2)
    sub: Dict[str, Any] = {
        "id": post_id,
        "name": f"t3_{post_id}",
        "author": f"user{rng.randint(1, 500)}",
        "subreddit": t["subreddit"],
        "subreddit_id": "t5_2qh1o",
        "title": f"{topic} post {i}: " + " ".join(rng.sample(t["words"].split(), 3)),
        "created_utc": created,
        "retrieved_on": created + 86400,
        "score": score,
        "upvote_ratio": ratio,
        "num_comments": rng.randint(*t["comments"]),
        "over_18": i % 25 == 11,
        "is_self": kind == "self",
        "is_video": kind == "video",
        "permalink": f"/r/{t['subreddit']}/comments/{post_id}/",
        "stickied": False,
        "locked": False,
        "edited": False,
        "domain": "i.redd.it",
        "selftext": "",
        "thumbnail": "default",
        "link_flair_text": None,
        "author_flair_text": None,
        "gilded": 0,
    }
    if i % 4 == 0:
        sub["all_awardings"] = [{"count": 1 + i % 3, "name": "Silver", "coin_price": 100}]
        sub["gildings"] = {"gid_1": (i // 4) % 2, "gid_2": int(i % 8 == 0)}
    else:
        sub["total_awards_received"] = i % 5
        sub["all_awardings"], sub["gildings"] = [], {}
    preview = {
        "images": [
            {
                "source": {
                    "url": html.escape(urls[0] if urls else f"https://preview.redd.it/{post_id}.jpg", quote=False),
                    "width": 1080,
                    "height": 810,
                },
                "resolutions": [],
                "variants": {},
                "id": post_id,
            }
        ],
        "enabled": True,
    }
    if kind == "image":
        sub.update(post_hint="image", url=urls[0], url_overridden_by_dest=urls[0], preview=preview)
    elif kind == "gallery":
        media_ids = [f"m{post_id}{j}" for j in range(len(urls) + 1)]
        animated = media_ids.pop(1)
        meta = {
            m: {
                "status": "valid",
                "e": "Image",
                "m": "image/jpg",
                "p": [],
                "s": {"u": html.escape(u, quote=False), "x": 1200, "y": 900},
                "id": m,
            }
            for m, u in zip(media_ids, urls)
        }
        meta[animated] = {
            "status": "valid",
            "e": "AnimatedImage",
            "m": "image/gif",
            "s": {"gif": "https://i.redd.it/a.gif", "mp4": "https://i.redd.it/a.mp4", "x": 320, "y": 240},
        }
        media_ids.insert(1, animated)
        sub.update(
            is_gallery=True,
            url=f"https://www.reddit.com/gallery/{post_id}",
            domain="reddit.com",
            gallery_data={"items": [{"media_id": m, "id": k} for k, m in enumerate(media_ids)]},
            media_metadata=dict(reversed(list(meta.items()))),
        )
    elif kind == "preview":
        sub.update(
            post_hint="link", url=f"https://news.example.com/{post_id}", domain="news.example.com", preview=preview
        )
    elif kind == "self":
        sub.update(
            post_hint="self",
            url=f"https://www.reddit.com/r/x/comments/{post_id}/",
            selftext="some text",
            preview=preview,
        )
    elif kind == "video":
        sub.update(
            post_hint="hosted:video",
            url=f"https://v.redd.it/{post_id}",
            domain="v.redd.it",
            preview=preview,
            media={"reddit_video": {"fallback_url": f"https://v.redd.it/{post_id}/DASH_720.mp4"}},
        )
    else:
        sub.update(url=f"https://blog.example.com/{post_id}", domain="blog.example.com")
    if i % 6 == 1:
        sub["_meta"] = {"retrieved_2nd_on": created + 172800, "was_deleted_later": False}
    return sub


def _comment(n: int, post_id: str, author: str, body: str, created: int, rng: random.Random) -> Dict[str, Any]:
    comment: Dict[str, Any] = {
        "id": base36(36**6 + n),
        "link_id": f"t3_{post_id}",
        "parent_id": f"t3_{post_id}",
        "author": author,
        "body": body,
        "score": rng.randint(-5, 200),
        "controversiality": int(rng.random() < 0.05),
        "created_utc": created,
        "subreddit": "pics",
        "subreddit_id": "t5_2qh1o",
        "retrieved_on": created + 3600,
        "archived": False,
        "collapsed": False,
        "distinguished": None,
        "edited": False,
        "is_submitter": False,
        "stickied": False,
        "author_flair_text": None,
        "permalink": f"/r/pics/comments/{post_id}/_/{n}/",
        "all_awardings": [],
        "gildings": {},
        "total_awards_received": 0,
        "send_replies": True,
    }
    if n % 7 == 2:
        comment["created_utc"] = str(created)
    elif n % 11 == 4:
        comment["created_utc"] = float(created)
    if n % 9 == 5:
        comment["_meta"] = {"removal_type": None, "retrieved_2nd_on": created + 7200}
    return comment


def write_reddit_month(
    folder: str,
    image_url: Callable[[int], str],
    num_posts: int = 200,
    seed: int = 0,
    month: str = "2023-01",
    comments_per_post: int = 8,
) -> Dict[str, Any]:
    """Writes ``folder/RS_<month>.zst`` and ``folder/RC_<month>.zst``; post 0 has ``3 * comments_per_post``
    comments, the others up to ``2 * comments_per_post`` (some none).

    Returns ``submissions`` / ``comments`` (the two paths), ``image_posts`` (ids, NSFW ones included),
    ``nsfw`` and ``non_image_posts`` (ids), ``urls`` (id -> image URLs), ``topics`` (id -> topic, every
    post), ``posts`` (id -> the submission as written), ``comments_by_post`` (id -> ``{"id", "author",
    "body"}`` of every comment line that decodes), ``malformed_line`` (its line in ``RC``) and
    ``counts``: ``deleted``, ``removed``, ``blank``, ``automoderator``, ``reminder_bot``,
    ``on_non_image_posts``, ``comment_lines`` (the malformed one included), ``submission_lines``.
    """
    rng = random.Random(seed)
    start = _month_start(month)
    topics = list(TOPICS)
    out: Dict[str, Any] = {
        "image_posts": [],
        "nsfw": [],
        "non_image_posts": [],
        "urls": {},
        "topics": {},
        "posts": {},
        "comments_by_post": {},
    }
    counts = dict.fromkeys(("deleted", "removed", "blank", "automoderator", "reminder_bot", "on_non_image_posts"), 0)
    submissions, comments = [], []
    for i in range(num_posts):
        post_id, topic, kind = base36(36**5 * 10 + i), topics[i % len(topics)], _kind(i)
        urls = {
            "image": [image_url(i)],
            "preview": [image_url(i)],
            "gallery": [image_url(j * num_posts + i) for j in range(3)],
        }.get(kind, [])
        created = start + i * 600
        sub = _submission(i, post_id, topic, kind, urls, created, rng)
        submissions.append(sub)
        out["topics"][post_id], out["posts"][post_id] = topic, sub
        if urls:
            out["image_posts"].append(post_id)
            out["urls"][post_id] = urls
            if sub["over_18"]:
                out["nsfw"].append(post_id)
        else:
            out["non_image_posts"].append(post_id)
        words = TOPICS[topic]["words"].split()
        n_comments = 3 * comments_per_post if i == 0 else rng.randint(0, 2 * comments_per_post)
        written = out["comments_by_post"].setdefault(post_id, [])
        for _ in range(n_comments):
            n = len(comments)
            author, body = (
                f"user{rng.randint(1, 2000)}",
                " ".join(rng.choices(words, k=rng.randint(4, 9)) + rng.choices(GENERIC, k=2)),
            )
            if n % 13 == 0 and n % 10 < len(SPECIAL):
                name, special_author, body = SPECIAL[n % 10]
                author = special_author or author
                counts[name] += 1
            elif n % 29 == 3:
                counts["deleted"] += 1
                author, body = "[deleted]", "[deleted]"
            elif n % 31 == 6:
                counts["automoderator"] += 1
                author, body = "AutoModerator", AUTOMOD
            counts["on_non_image_posts"] += not urls
            comments.append(_comment(n, post_id, author, body, created + 60 * (1 + len(written)), rng))
            written.append({"id": comments[-1]["id"], "author": author, "body": body})
    lines: List[Any] = list(comments)
    malformed_at = min(10, len(lines))
    lines.insert(malformed_at, '{"id": "broken", "link_id": "t3_x", "body": "a line cut sho')
    out["malformed_line"] = malformed_at + 1
    counts["comment_lines"], counts["submission_lines"] = len(lines), len(submissions)
    os.makedirs(folder, exist_ok=True)
    out["submissions"] = os.path.join(folder, f"RS_{month}.zst")
    out["comments"] = os.path.join(folder, f"RC_{month}.zst")
    write_zstd_ndjson(out["submissions"], submissions)
    write_zstd_ndjson(out["comments"], lines)
    out["counts"] = counts
    return out
