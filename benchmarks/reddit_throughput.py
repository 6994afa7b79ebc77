"""Comment lines/s per core through the whole Reddit reading path (decompress, parse, filter, join,
sample, write parquet) versus a plain ``zstandard`` + ``json.loads`` loop with a dict join, and the
peak memory of each at two numbers of comments, in one run.

    python benchmarks/reddit_throughput.py                                 # 200k and 800k comments
    python benchmarks/reddit_throughput.py --comments 100000 400000 --posts 10000 --repeat 3

Generates (cached in ``--cache``, keyed by size) one month of submissions (``RS``, ``--posts`` of
them, 3-6 KB a line, about 40% with an image) and, per size, its comments (``RC``, 1-2 KB a line of
about 60 fields, comments per post heavy-tailed, a tenth on older posts, a few percent deleted,
removed or by AutoModerator), both written by ``write_zstd_ndjson`` like the dumps: level 3,
long-distance matching, a window of ``2**--window-log`` declared by frames of unknown size.

ours:      ``join_dumps`` end to end (DuckDB with ``--memory-limit`` and one thread)
baseline:  ``ZstdDecompressor(max_window_size=2**31).stream_reader`` + ``io.TextIOWrapper`` lines +
           ``json.loads``; image submissions into a dict by id, the comments that pass the same filters
           appended to per-post lists in a dict, ``random.sample`` of at most 100 per post, and the same
           parquet columns, ordered by id, written by pyarrow

Each runs in a process of its own per size, so that its peak resident memory (``VmHWM``; ``ru_maxrss``
may carry over the peak of the parent it was forked from) is its own; lines/s per core = comment lines / the
process's CPU seconds (user + system, all its threads) from the start of the work to its end, imports
left out. The memory of the work is its peak less the resident memory after the imports (``vise_plugin``
imports torch). The last line is ``ratio: <ours / baseline lines/s per core at the largest size>``.

The dumps declare a ``2**31`` window; a decoder keeps up to a window of output, so on a file smaller
than the window its buffer grows with the file. Real monthly files are far larger than the window, so
the default ``--window-log 27`` keeps the generated files larger than theirs too; ``--window-log 31``
writes them as the dumps are.
"""

import argparse
import html
import io
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vise_plugin.reddit.fixture import base36  # noqa: E402

#: bumped whenever the generated lines change, so that stale cached files are not reused
FORMAT = 1
MONTH = "2023-01"
MONTH_START = 1672531200
MAX_COMMENTS = 100
#: kinds of submission and their share; image, gallery and link-with-preview posts have an image
KINDS = {"image": 0.22, "gallery": 0.05, "preview": 0.13, "self": 0.38, "video": 0.07, "link": 0.15}
SUBREDDITS = [
    "pics",
    "aww",
    "FoodPorn",
    "EarthPorn",
    "memes",
    "gaming",
    "AskReddit",
    "news",
    "funny",
    "mildlyinteresting",
]
COMMON = (
    "the to a i and it is of you that in this for be was on not but with my have so just like are what "
    "they if your at do all one would can me an or get about people no think he as more there how"
).split()
EXTRAS = ["😂", "❤️", "lol", "haha", "café", "naïve", "&gt; quoted", "**bold**", "*edit*", "...", "?", "!"]
BOTS = ["AutoModerator", "RemindMeBot", "sneakpeekbot"]
#: the window the dumps declare, which a reader must allow
MAX_WINDOW_SIZE = 2**31


# -- generated dumps ---------------------------------------------------------------------------------------------


def _vocabulary(size: int = 6000) -> Tuple[List[str], List[float]]:
    """Common words and pseudo-words of 2-4 syllables, with Zipf-like cumulative weights."""
    rng = random.Random(1234)
    syllables = [a + b for a in "bcdfghklmnprstvwz" for b in "aeiouy"] + ["th", "ing", "er", "ly", "ion"]
    words = COMMON + ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(size - len(COMMON))]
    cumulative = np.cumsum(1.0 / np.arange(1, size + 1) ** 1.05).tolist()
    return words, cumulative


WORDS, CUM_WEIGHTS = _vocabulary()


def _text(rng: random.Random, median_words: float) -> str:
    """Text of a lognormal number of words, now and then a paragraph break, a link, an emoji."""
    n = 1 + int(rng.lognormvariate(np.log(median_words), 0.9))
    words = rng.choices(WORDS, cum_weights=CUM_WEIGHTS, k=n)
    if rng.random() < 0.15:
        words.insert(rng.randrange(n), rng.choice(EXTRAS))
    if n > 30 and rng.random() < 0.5:
        words.insert(n // 2, "\n\n")
    if rng.random() < 0.04:
        words.append(f"https://www.example.com/{rng.getrandbits(32):x}")
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _hex(rng: random.Random, bits: int = 160) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _award(rng: random.Random) -> Dict[str, Any]:
    """An ``all_awardings`` entry as the dumps write it (icons in seven sizes)."""
    name = rng.choice(["Silver", "Gold", "Helpful", "Wholesome"])
    icon = f"https://www.redditstatic.com/gold/awards/icon/{name.lower()}_512.png"
    sizes = [{"height": s, "url": icon.replace("512", str(s)), "width": s} for s in (16, 32, 48, 64, 128, 256, 512)]
    return {
        "award_sub_type": "GLOBAL",
        "award_type": "global",
        "awardings_required_to_grant_benefits": None,
        "coin_price": 100,
        "coin_reward": 0,
        "count": 1 + int(rng.random() < 0.1),
        "days_of_drip_extension": None,
        "days_of_premium": None,
        "description": f"Shows the {name} Award... and that's it.",
        "end_date": None,
        "giver_coin_reward": None,
        "icon_format": None,
        "icon_height": 512,
        "icon_url": icon,
        "icon_width": 512,
        "id": f"gid_{rng.randint(1, 3)}",
        "is_enabled": True,
        "is_new": False,
        "name": name,
        "penny_donate": None,
        "penny_price": None,
        "resized_icons": sizes,
        "resized_static_icons": sizes,
        "start_date": None,
        "static_icon_height": 512,
        "static_icon_url": icon,
        "static_icon_width": 512,
        "sticky_duration_seconds": None,
        "subreddit_coin_reward": 0,
        "subreddit_id": None,
        "tiers_by_required_awardings": None,
    }


def _flair(rng: random.Random) -> Dict[str, Any]:
    """The author flair fields: none for most authors, a text and an emoji for some."""
    if rng.random() < 0.8:
        return {}
    text = " ".join(rng.choices(WORDS[:300], k=rng.randint(1, 3)))
    return {
        "author_flair_css_class": "flair",
        "author_flair_richtext": [
            {"a": ":star:", "e": "emoji", "u": f"https://emoji.redditmedia.com/{_hex(rng, 64)}/star"},
            {"e": "text", "t": f" {text}"},
        ],
        "author_flair_template_id": f"{_hex(rng, 128)}",
        "author_flair_text": text,
        "author_flair_text_color": "dark",
        "author_flair_type": "richtext",
        "author_flair_background_color": "#edeff1",
    }


def _preview_image(rng: random.Random, post_id: str) -> Dict[str, Any]:
    """A ``preview.images`` entry: the source, six resolutions, HTML-escaped URLs."""
    name = f"https://preview.redd.it/{_hex(rng, 64)}.jpg"
    resolutions = [
        {"height": w * 3 // 4, "url": f"{name}?width={w}&amp;crop=smart&amp;auto=webp&amp;s={_hex(rng)}", "width": w}
        for w in (108, 216, 320, 640, 960, 1080)
    ]
    return {
        "id": post_id,
        "resolutions": resolutions,
        "variants": {},
        "source": {"height": 1536, "url": f"{name}?auto=webp&amp;s={_hex(rng)}", "width": 2048},
    }


def _gallery(rng: random.Random, post_id: str) -> Dict[str, Any]:
    """``gallery_data`` and ``media_metadata`` of 2-6 images, each with its resolutions."""
    ids = [_hex(rng, 52) for _ in range(rng.randint(2, 6))]
    meta = {}
    for media_id in ids:
        url = f"https://preview.redd.it/{media_id}.jpg"
        meta[media_id] = {
            "e": "Image",
            "id": media_id,
            "m": "image/jpg",
            "status": "valid",
            "p": [
                {"u": f"{url}?width={w}&amp;crop=smart&amp;auto=webp&amp;s={_hex(rng)}", "x": w, "y": w * 4 // 3}
                for w in (108, 216, 320, 640)
            ],
            "s": {"u": f"{url}?width=1080&amp;format=pjpg&amp;auto=webp&amp;s={_hex(rng)}", "x": 1080, "y": 1440},
        }
    items = [{"id": rng.getrandbits(28), "media_id": m} for m in ids]
    return {"gallery_data": {"items": items}, "is_gallery": True, "media_metadata": meta}


def _kind_fields(rng: random.Random, kind: str, post_id: str, permalink: str) -> Dict[str, Any]:
    """What differs between image, gallery, link, self and video posts."""
    if kind == "image":
        url = f"https://i.redd.it/{base36(rng.getrandbits(64))}.jpg"
        return {
            "domain": "i.redd.it",
            "post_hint": "image",
            "url": url,
            "url_overridden_by_dest": url,
            "preview": {"enabled": True, "images": [_preview_image(rng, post_id)]},
            "is_reddit_media_domain": True,
        }
    if kind == "gallery":
        url = f"https://www.reddit.com/gallery/{post_id}"
        return {"domain": "reddit.com", "url": url, "url_overridden_by_dest": url, **_gallery(rng, post_id)}
    if kind in ("preview", "link"):
        url = f"https://www.news{rng.randint(1, 40)}.example.com/{_text(rng, 4).replace(' ', '-')[:60]}"
        fields = {"domain": url.split("/")[2], "url": url, "url_overridden_by_dest": url, "post_hint": "link"}
        if kind == "preview":
            fields["preview"] = {"enabled": False, "images": [_preview_image(rng, post_id)]}
        return fields
    if kind == "video":
        url = f"https://v.redd.it/{base36(rng.getrandbits(64))}"
        video = {
            "reddit_video": {
                "bitrate_kbps": 2400,
                "dash_url": f"{url}/DASHPlaylist.mpd",
                "duration": 31,
                "fallback_url": f"{url}/DASH_720.mp4?source=fallback",
                "height": 720,
                "hls_url": f"{url}/HLSPlaylist.m3u8",
                "is_gif": False,
                "width": 1280,
            }
        }
        return {
            "domain": "v.redd.it",
            "post_hint": "hosted:video",
            "url": url,
            "is_video": True,
            "media": video,
            "secure_media": video,
            "preview": {"enabled": False, "images": [_preview_image(rng, post_id)]},
        }
    text = _text(rng, 60)
    markup = f'&lt;!-- SC_OFF --&gt;&lt;div class="md"&gt;&lt;p&gt;{html.escape(text)}&lt;/p&gt;\n&lt;/div&gt;'
    return {
        "domain": "self.pics",
        "is_self": True,
        "post_hint": "self",
        "url": f"https://www.reddit.com{permalink}",
        "selftext": text,
        "selftext_html": markup + "&lt;!-- SC_ON --&gt;",
    }


def _submission(rng: random.Random, i: int, post_id: str, kind: str, num_comments: int) -> Dict[str, Any]:
    """A submission with the hundred-odd fields of the dumps (3-6 KB as JSON)."""
    subreddit, created = SUBREDDITS[i % len(SUBREDDITS)], MONTH_START + i * 60
    title = _text(rng, 9)[:300]
    permalink = f"/r/{subreddit}/comments/{post_id}/{'_'.join(title.lower().split()[:8])}/"
    score = int(rng.paretovariate(0.9)) - 1
    awards = [_award(rng)] if rng.random() < 0.04 else []
    sub = {
        "all_awardings": awards,
        "allow_live_comments": False,
        "approved_at_utc": None,
        "approved_by": None,
        "archived": False,
        "author": f"user_{base36(rng.getrandbits(40))}",
        "author_created_utc": created - 10**8,
        "author_flair_background_color": None,
        "author_flair_css_class": None,
        "author_flair_richtext": [],
        "author_flair_template_id": None,
        "author_flair_text": None,
        "author_flair_text_color": None,
        "author_flair_type": "text",
        "author_fullname": f"t2_{base36(rng.getrandbits(40))}",
        "author_is_blocked": False,
        "author_patreon_flair": False,
        "author_premium": rng.random() < 0.05,
        "awarders": [],
        "banned_at_utc": None,
        "banned_by": None,
        "can_gild": True,
        "can_mod_post": False,
        "category": None,
        "clicked": False,
        "content_categories": None,
        "contest_mode": False,
        "created": created,
        "created_utc": created,
        "discussion_type": None,
        "distinguished": None,
        "domain": "",
        "downs": 0,
        "edited": False,
        "gilded": 0,
        "gildings": {"gid_1": 1} if awards else {},
        "hidden": False,
        "hide_score": False,
        "id": post_id,
        "is_created_from_ads_ui": False,
        "is_crosspostable": True,
        "is_meta": False,
        "is_original_content": False,
        "is_reddit_media_domain": False,
        "is_robot_indexable": True,
        "is_self": False,
        "is_video": False,
        "likes": None,
        "link_flair_background_color": "",
        "link_flair_css_class": None,
        "link_flair_richtext": [],
        "link_flair_text": None,
        "link_flair_text_color": "dark",
        "link_flair_type": "text",
        "locked": False,
        "media": None,
        "media_embed": {},
        "media_only": False,
        "mod_note": None,
        "mod_reason_by": None,
        "mod_reason_title": None,
        "mod_reports": [],
        "name": f"t3_{post_id}",
        "no_follow": score < 2,
        "num_comments": num_comments,
        "num_crossposts": 0,
        "num_reports": None,
        "over_18": rng.random() < 0.06,
        "parent_whitelist_status": "all_ads",
        "permalink": permalink,
        "pinned": False,
        "pwls": 6,
        "quarantine": False,
        "removal_reason": None,
        "removed_by": None,
        "removed_by_category": None,
        "report_reasons": None,
        "retrieved_on": created + 43200,
        "saved": False,
        "score": score,
        "secure_media": None,
        "secure_media_embed": {},
        "selftext": "",
        "send_replies": True,
        "spoiler": False,
        "stickied": False,
        "subreddit": subreddit,
        "subreddit_id": f"t5_{base36(100000 + i % len(SUBREDDITS))}",
        "subreddit_name_prefixed": f"r/{subreddit}",
        "subreddit_subscribers": 30_000_000,
        "subreddit_type": "public",
        "suggested_sort": None,
        "thumbnail": f"https://b.thumbs.redditmedia.com/{_hex(rng, 256)[:43]}.jpg",
        "thumbnail_height": 140,
        "thumbnail_width": 140,
        "title": title,
        "top_awarded_type": None,
        "total_awards_received": len(awards),
        "treatment_tags": [],
        "upvote_ratio": round(rng.uniform(0.6, 1.0), 2),
        "ups": score,
        "url": "",
        "user_reports": [],
        "view_count": None,
        "visited": False,
        "whitelist_status": "all_ads",
        "wls": 6,
    }
    sub.update(_kind_fields(rng, kind, post_id, permalink))
    return sub


#: the fields every comment carries, in the dumps' (alphabetical) order; ``_comment`` fills in the rest
COMMENT_FIELDS = {
    "all_awardings": [],
    "archived": False,
    "associated_award": None,
    "author": "",
    "author_created_utc": 0,
    "author_flair_background_color": None,
    "author_flair_css_class": None,
    "author_flair_richtext": [],
    "author_flair_template_id": None,
    "author_flair_text": None,
    "author_flair_text_color": None,
    "author_flair_type": "text",
    "author_fullname": "",
    "author_is_blocked": False,
    "author_patreon_flair": False,
    "author_premium": False,
    "awarders": [],
    "banned_at_utc": None,
    "banned_by": None,
    "body": "",
    "can_gild": True,
    "can_mod_post": False,
    "collapsed": False,
    "collapsed_because_crowd_control": None,
    "collapsed_reason": None,
    "collapsed_reason_code": None,
    "comment_type": None,
    "controversiality": 0,
    "created": 0,
    "created_utc": 0,
    "distinguished": None,
    "downs": 0,
    "edited": False,
    "gilded": 0,
    "gildings": {},
    "id": "",
    "is_submitter": False,
    "likes": None,
    "link_id": "",
    "locked": False,
    "mod_note": None,
    "mod_reason_by": None,
    "mod_reason_title": None,
    "mod_reports": [],
    "name": "",
    "no_follow": True,
    "num_reports": None,
    "parent_id": "",
    "permalink": "",
    "removal_reason": None,
    "report_reasons": None,
    "retrieved_on": 0,
    "saved": False,
    "score": 1,
    "score_hidden": False,
    "send_replies": True,
    "stickied": False,
    "subreddit": "",
    "subreddit_id": "",
    "subreddit_name_prefixed": "",
    "subreddit_type": "public",
    "top_awarded_type": None,
    "total_awards_received": 0,
    "treatment_tags": [],
    "unrepliable_reason": None,
    "ups": 1,
    "user_reports": [],
}


def _author_and_body(rng: random.Random) -> Tuple[str, str]:
    """A user's comment mostly; a few percent deleted, removed or by a bot."""
    draw = rng.random()
    if draw < 0.03:
        return "[deleted]", "[deleted]"
    if draw < 0.055:
        return "[deleted]", "[removed]"
    if draw < 0.075:
        bot = BOTS[0] if draw < 0.07 else rng.choice(BOTS[1:])
        return (
            bot,
            "I am a bot, and this action was performed automatically. Please contact the moderators of "
            "this subreddit if you have any questions or concerns.",
        )
    return f"user_{base36(rng.getrandbits(40))}", _text(rng, 14)


def _comment(rng: random.Random, n: int, post: str, subreddit: str) -> Dict[str, Any]:
    """Comment ``n`` of the month on post ``post`` (1-2 KB as JSON)."""
    comment_id, created = base36(36**6 * 30 + n), MONTH_START + n // 4
    author, body = _author_and_body(rng)
    score = int(rng.paretovariate(1.3)) - 1 if rng.random() < 0.9 else -rng.randint(1, 20)
    parent = f"t3_{post}" if rng.random() < 0.4 else f"t1_{base36(36**6 * 30 + rng.randrange(n + 1))}"
    comment = dict(COMMENT_FIELDS)
    comment.update(
        author=author,
        author_created_utc=created - rng.randint(10**6, 4 * 10**8),
        body=body,
        author_fullname=f"t2_{base36(rng.getrandbits(40))}",
        controversiality=int(rng.random() < 0.04),
        created=created,
        created_utc=created,
        id=comment_id,
        link_id=f"t3_{post}",
        name=f"t1_{comment_id}",
        no_follow=score < 2,
        parent_id=parent,
        permalink=f"/r/{subreddit}/comments/{post}/comment/{comment_id}/",
        retrieved_on=created + rng.randint(30, 7200),
        score=score,
        ups=score,
        subreddit=subreddit,
        subreddit_id=f"t5_{base36(100000 + SUBREDDITS.index(subreddit))}",
        subreddit_name_prefixed=f"r/{subreddit}",
        is_submitter=rng.random() < 0.05,
    )
    comment.update(_flair(rng))
    if rng.random() < 0.01:
        comment.update(all_awardings=[_award(rng)], total_awards_received=1, gildings={"gid_1": 1})
    if rng.random() < 0.03:
        comment["edited"] = created + rng.randint(60, 86400)
    if author == "AutoModerator":
        comment.update(distinguished="moderator", stickied=True)
    return comment


def post_plan(posts: int, seed: int = 0) -> Tuple[List[str], List[str], np.ndarray]:
    """The month's post ids, their kinds, and their shares of its comments: Pareto-distributed, so a
    few posts draw thousands of comments and most a handful or none."""
    rng = np.random.default_rng(seed)
    ids = [base36(36**5 * 30 + i) for i in range(posts)]
    kinds = rng.choice(list(KINDS), size=posts, p=list(KINDS.values())).tolist()
    weights = rng.pareto(1.5, posts) + 0.05
    return ids, kinds, weights / weights.sum()


def _submissions(posts: int, comments_hint: int) -> Iterator[Dict[str, Any]]:
    ids, kinds, shares = post_plan(posts)
    rng = random.Random(1)
    for i, (post_id, kind, share) in enumerate(zip(ids, kinds, shares)):
        yield _submission(rng, i, post_id, kind, int(share * comments_hint))


def _comments(posts: int, count: int, older_share: float = 0.1) -> Iterator[Dict[str, Any]]:
    """``count`` comments in time order; ``older_share`` of them on posts of earlier months."""
    ids, _, shares = post_plan(posts)
    picks = np.random.default_rng([2, count]).choice(len(ids), size=count, p=shares)
    older = np.random.default_rng([3, count]).random(count) < older_share
    rng = random.Random(count)
    for n, (pick, old) in enumerate(zip(picks.tolist(), older.tolist())):
        post = base36(36**5 * 20 + rng.randrange(10**6)) if old else ids[pick]
        yield _comment(rng, n, post, SUBREDDITS[pick % len(SUBREDDITS)])


def _write_once(path: str, objects: Iterator[Dict[str, Any]], window_log: int) -> str:
    """Writes ``path`` unless a previous run did (through a temporary name, so never half of it)."""
    from vise_plugin.reddit.zstd_ndjson import write_zstd_ndjson  # imports torch: not in the baseline's process

    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_zstd_ndjson(path + ".tmp", objects, window_log=window_log)
        os.replace(path + ".tmp", path)
    return path


def month_files(cache: str, posts: int, comments: int, window_log: int) -> Tuple[str, str]:
    """``(RS, RC)`` paths of the generated month: one RS per number of posts, one RC per size."""
    folder = os.path.join(cache, f"v{FORMAT}_w{window_log}_posts{posts}")
    rs = _write_once(os.path.join(folder, f"RS_{MONTH}.zst"), _submissions(posts, 10 * posts), window_log)
    rc = _write_once(
        os.path.join(folder, f"comments{comments}", f"RC_{MONTH}.zst"), _comments(posts, comments), window_log
    )
    return rs, rc


# -- the measured processes --------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1]) / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measured(work) -> Dict[str, Any]:
    """``work()``'s CPU and wall seconds, the resident memory before it and the peak of the process."""
    before = _status_mb("VmRSS")
    cpu, wall = _cpu_seconds(), time.perf_counter()
    details = work()
    return {
        "cpu_s": _cpu_seconds() - cpu,
        "wall_s": time.perf_counter() - wall,
        "rss_before_mb": before,
        "peak_mb": _status_mb("VmHWM"),
        **details,
    }


def run_ours(args) -> Dict[str, Any]:
    """``join_dumps`` on the month, DuckDB with ``args.memory_limit`` and ``args.threads``."""
    from vise_plugin.labels.job.bad_records import BadRecordReport
    from vise_plugin.reddit import RedditSettings, join_dumps

    settings = RedditSettings(memory_limit=args.memory_limit, threads=args.threads or None, max_comments=MAX_COMMENTS)

    def work():
        summary = join_dumps(
            [args.rs], [args.rc], args.out, settings, args.out + ".work", BadRecordReport(), progress=False
        )
        return {"posts": summary["posts"], "sampled": summary["comments_sampled"]}

    return _measured(work)


def _lines(path: str) -> Iterator[str]:
    import zstandard

    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    with open(path, "rb") as f, decompressor.stream_reader(f) as reader:
        yield from io.TextIOWrapper(reader, encoding="utf-8")


def _plain_image_urls(sub: Dict[str, Any]) -> List[str]:
    """``vise_plugin.reddit.images.image_urls`` on a dict."""
    if sub.get("is_self"):
        return []
    if sub.get("post_hint") == "image" and (sub.get("url") or sub.get("url_overridden_by_dest")):
        return [sub.get("url") or sub["url_overridden_by_dest"]]
    if sub.get("is_gallery"):
        media = sub.get("media_metadata") or {}
        found = [media.get(item.get("media_id")) or {} for item in (sub.get("gallery_data") or {}).get("items") or ()]
        urls = [
            html.unescape(m["s"]["u"])
            for m in found
            if m.get("status") == "valid" and m.get("e") == "Image" and (m.get("s") or {}).get("u")
        ]
        if urls:
            return urls
    images = (sub.get("preview") or {}).get("images")
    if sub.get("is_video") or not images or not (images[0].get("source") or {}).get("url"):
        return []
    return [html.unescape(images[0]["source"]["url"])]


def _plain_reactions(sub: Dict[str, Any]) -> Dict[str, int]:
    """The default reaction channels of ``RedditSettings`` from a submission dict."""
    score = sub.get("score") or 0
    ratio = 1.0 if sub.get("upvote_ratio") is None else sub["upvote_ratio"]
    upvotes = max(round(score * ratio / (2 * ratio - 1)), 0) if abs(2 * ratio - 1) > 1e-9 else 0
    awards = sub.get("total_awards_received")
    if awards is None:
        awards = sum(a.get("count", 0) for a in sub.get("all_awardings") or ()) + sum(
            (sub.get("gildings") or {}).values()
        )
    return {
        "upvotes": upvotes,
        "downvotes": max(upvotes - score, 0),
        "comments": sub.get("num_comments") or 0,
        "awards": awards,
    }


def _plain_posts(path: str) -> Dict[str, Tuple[List[str], str, Dict[str, int]]]:
    posts = {}
    for line in _lines(path):
        sub = json.loads(line)
        urls = _plain_image_urls(sub)
        if urls:
            posts[sub["id"]] = (urls, sub.get("title") or "", _plain_reactions(sub))
    return posts


def _plain_comments(path: str, posts: Dict[str, Any]) -> Dict[str, List[str]]:
    """The comments on ``posts`` that pass ``RedditSettings``' default filters, per post."""
    skip_bodies, skip_authors = {"[deleted]", "[removed]"}, {"AutoModerator"}
    comments: Dict[str, List[str]] = {}
    for line in _lines(path):
        comment = json.loads(line)
        body = comment.get("body")
        if body is None or body in skip_bodies or not body.strip() or comment.get("author") in skip_authors:
            continue
        link = comment.get("link_id") or ""
        link = link[3:] if link.startswith("t3_") else link
        if link in posts:
            comments.setdefault(link, []).append(body)
    return comments


def run_baseline(args) -> Dict[str, Any]:
    """The plain loop: ``json.loads`` of every line, a dict join, ``random.sample``, parquet by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def work():
        posts = _plain_posts(args.rs)
        comments = _plain_comments(args.rc, posts)
        rng = random.Random(0)
        ids = sorted(posts)
        sampled = [rng.sample(c, min(MAX_COMMENTS, len(c))) for c in (comments.get(i, []) for i in ids)]
        table = pa.table(
            {
                "id": ids,
                "image": [posts[i][0][0] for i in ids],
                "comments": sampled,
                "reactions": [posts[i][2] for i in ids],
                "urls": [posts[i][0] for i in ids],
                "title": [posts[i][1] for i in ids],
            }
        )
        os.makedirs(args.out, exist_ok=True)
        pq.write_table(table, os.path.join(args.out, "part-00000.parquet"))
        return {"posts": len(ids), "sampled": sum(map(len, sampled))}

    return _measured(work)


def measure(path: str, rs: str, rc: str, out: str, args) -> Dict[str, Any]:
    """Runs one path in a process of its own, ``args.repeat`` times; the run of least CPU time."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--run",
        path,
        "--rs",
        rs,
        "--rc",
        rc,
        "--out",
        out,
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
    ]
    runs = []
    for _ in range(args.repeat):
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{path} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    shutil.rmtree(out, ignore_errors=True)
    best = min(runs, key=lambda r: r["cpu_s"])
    best["cpu_runs"] = [r["cpu_s"] for r in runs]
    return best


# -- the report ---------------------------------------------------------------------------------------------------


def machine() -> str:
    """CPU model, cores, and the versions that matter here."""
    import duckdb
    import msgspec
    import pyarrow
    import zstandard

    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {model}, {os.cpu_count()} cores ({usable} usable); Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}, zstandard {zstandard.__version__}, "
        f"msgspec {msgspec.__version__}"
    )


def _line_size(path: str, lines: int) -> float:
    """Mean decompressed bytes per line of ``path`` (the first ``lines`` lines)."""
    total, n = 0, 0
    for line in _lines(path):
        total, n = total + len(line.encode()), n + 1
        if n == lines:
            break
    return total / max(n, 1)


def describe_input(rs: str, rc: str, args) -> None:
    """What was generated and what each path does."""
    _, kinds, _ = post_plan(args.posts)
    with_image = sum(k in ("image", "gallery", "preview") for k in kinds) / len(kinds)
    print(
        f"input: {args.posts:,} submissions ({_line_size(rs, 2000) / 1024:.1f} KB/line, {with_image:.0%} with an "
        f"image), comments {_line_size(rc, 20000) / 1024:.2f} KB/line; zstd level 3, long-distance matching, "
        f"2**{args.window_log} window (the dumps: 2**31, smaller than their files)"
    )
    print(
        f"ours: join_dumps (decompress, parse, filter, join, sample, parquet by DuckDB), memory_limit "
        f"{args.memory_limit}, DuckDB threads={args.threads or 'all'}"
    )
    print(
        "baseline: zstandard stream_reader + io.TextIOWrapper + json.loads, dict join, random.sample, "
        "the same parquet columns written by pyarrow"
    )
    print(f"CPU time of each process's work (imports left out), least of {args.repeat} run(s)")


def _work_mb(run: Dict[str, Any]) -> float:
    """The peak resident memory of a process less what it held before the work (its imports)."""
    return run["peak_mb"] - run["rss_before_mb"]


def report(size: int, ours: Dict[str, Any], base: Dict[str, Any]) -> None:
    """A line per path at ``size`` comments, and whether both kept the same posts and numbers of comments."""
    for name, run in (("ours", ours), ("baseline", base)):
        print(
            f"{size:>11,} comments  {name:<8}  {size / run['cpu_s']:>9,.0f} lines/s/core  "
            f"cpu {run['cpu_s']:5.1f} s (max {max(run['cpu_runs']):5.1f})  wall {run['wall_s']:5.1f} s  "
            f"peak RSS {run['peak_mb']:5.0f} MB "
            f"({_work_mb(run):4.0f} MB above the imports)  {run['posts']:,} posts, {run['sampled']:,} sampled"
        )
    if (ours["posts"], ours["sampled"]) != (base["posts"], base["sampled"]):
        print(f"{size:>11,} comments  the two paths disagree on the posts or the comments sampled")


def _growth(results: Dict[int, Tuple[Dict[str, Any], Dict[str, Any]]], path: int) -> str:
    """``, +X MB per million comments`` of a path between the smallest and the largest size."""
    small, large = min(results), max(results)
    if small == large:
        return ""
    mb = _work_mb(results[large][path]) - _work_mb(results[small][path])
    return f", {mb / (large - small) * 1e6:+.0f} MB per million comments"


def memory_line(results: Dict[int, Tuple[Dict[str, Any], Dict[str, Any]]]) -> str:
    """The peak memory of the join (above the imports) at each size, against the baseline's."""
    ours = ", ".join(f"{_work_mb(r[0]):.0f} MB at {n:,} comments" for n, r in results.items())
    base = ", ".join(f"{_work_mb(r[1]):.0f} MB" for r in results.values())
    return (
        f"peak memory of the join: {ours} (above the imports{_growth(results, 0)}; "
        f"baseline: {base}{_growth(results, 1)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--comments",
        type=int,
        nargs="+",
        default=[200_000, 800_000],
        help="comment lines of each size (the same posts for all)",
    )
    parser.add_argument("--posts", type=int, default=20_000, help="submission lines")
    parser.add_argument("--memory-limit", default="256MB", help="DuckDB's memory_limit in ours")
    parser.add_argument("--threads", type=int, default=1, help="DuckDB threads of ours (0: all cores)")
    parser.add_argument("--all-cores", action="store_true", help="also time ours with DuckDB on all cores")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each process; the least CPU time counts")
    parser.add_argument("--window-log", type=int, default=27, help="the zstd window the files declare: 2**N")
    parser.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "vise_reddit_throughput"),
        help="folder of the generated dumps",
    )
    parser.add_argument("--run", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--rs", help=argparse.SUPPRESS)
    parser.add_argument("--rc", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps((run_ours if args.run == "ours" else run_baseline)(args)))
        return
    print(machine())
    files = {n: month_files(args.cache, args.posts, n, args.window_log) for n in args.comments}
    describe_input(*files[args.comments[0]], args)
    out = tempfile.mkdtemp(prefix="reddit_throughput_")
    results = {}
    try:
        for n, (rs, rc) in files.items():
            results[n] = (
                measure("ours", rs, rc, os.path.join(out, "ours"), args),
                measure("baseline", rs, rc, os.path.join(out, "baseline"), args),
            )
            report(n, *results[n])
            if args.all_cores:
                all_cores = argparse.Namespace(**{**vars(args), "threads": 0})
                wide = measure("ours", rs, rc, os.path.join(out, "ours"), all_cores)
                print(f"{n:>11,} comments  ours on all cores: wall {wide['wall_s']:.1f} s, cpu {wide['cpu_s']:.1f} s")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(memory_line(results))
    ours, base = results[max(results)]
    print(f"ratio: {base['cpu_s'] / ours['cpu_s']:.2f}")


if __name__ == "__main__":
    main()
