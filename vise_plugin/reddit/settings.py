"""Settings of reading the Reddit dumps and joining comments to image posts (``config.labels.reddit``)."""

import json
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

from vise_plugin.errors import ConfigError

#: the reaction counts a submission gives (see :class:`RedditSettings`)
REACTION_CHANNELS = ("upvotes", "downvotes", "comments", "awards", "score")


@dataclass
class RedditSettings:
    """What the join keeps and how it runs.

    ``reactions`` names the counts of a post's reaction vector, in order, from :data:`REACTION_CHANNELS`;
    from a submission's score ``s`` and ``upvote_ratio`` ``r`` (1.0 when missing):

    - ``upvotes`` = ``round(s * r / (2r - 1))`` when ``|2r - 1| > 1e-9``, else 0; at least 0
    - ``downvotes`` = ``max(upvotes - s, 0)``
    - ``comments`` = ``num_comments``
    - ``awards`` = ``total_awards_received`` when present, else the sum of ``all_awardings[].count`` and
      of the ``gildings`` values
    - ``score`` = ``max(s, 0)``

    A post keeps a random sample of at most ``max_comments`` comments (fixed by ``seed``); comments whose
    body is one of ``skip_bodies`` or blank, whose author is one of ``skip_authors`` or ends with one of
    ``skip_author_suffixes`` (ignoring case) are left out. ``memory_limit``, ``threads`` (None: all
    cores) and the spill folder bound DuckDB; the output has about ``rows_per_file`` posts a file.
    """

    max_comments: int = 100
    skip_bodies: Tuple[str, ...] = ("[deleted]", "[removed]")
    skip_authors: Tuple[str, ...] = ("AutoModerator",)
    skip_author_suffixes: Tuple[str, ...] = ()
    reactions: Tuple[str, ...] = ("upvotes", "downvotes", "comments", "awards")
    include_nsfw: bool = True
    seed: int = 0
    memory_limit: str = "2GB"
    threads: Optional[int] = None
    rows_per_file: int = 200_000

    def __post_init__(self):
        for name in ("skip_bodies", "skip_authors", "skip_author_suffixes", "reactions"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{_key(name)}={value!r}: expected a list of strings")
            setattr(self, name, tuple(value))
        unknown = [r for r in self.reactions if r not in REACTION_CHANNELS]
        if unknown or not self.reactions or len(set(self.reactions)) < len(self.reactions):
            raise ConfigError(
                f"{_key('reactions')}={list(self.reactions)}: expected distinct names among "
                f"{', '.join(REACTION_CHANNELS)}"
            )
        for name, least in (("max_comments", 0), ("rows_per_file", 1), ("seed", None), ("threads", 1)):
            value = getattr(self, name)
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
                raise ConfigError(
                    f"{_key(name)}={value!r}: expected an integer" + (f" >= {least}" if least is not None else "")
                )
        if not isinstance(self.include_nsfw, bool):
            raise ConfigError(f"{_key('include_nsfw')}={self.include_nsfw!r}: expected true or false")
        if not isinstance(self.memory_limit, str) or not self.memory_limit:
            raise ConfigError(f"{_key('memory_limit')}={self.memory_limit!r}: expected a size such as 2GB")

    @classmethod
    def from_config(cls, cfg: Optional[Mapping[str, Any]]) -> "RedditSettings":
        """From ``config.labels.reddit`` (missing keys take the defaults; lists may be OmegaConf lists)."""
        cfg = dict(cfg or {})
        known = [f.name for f in fields(cls)]
        for key in cfg:
            if key not in known:
                raise ConfigError(f"{_key(key)}: unknown key; known keys: {', '.join(known)}")
        values = {k: tuple(v) if not isinstance(v, (str, int, float, bool, type(None))) else v for k, v in cfg.items()}
        return cls(**values)

    def output_settings(self) -> Dict[str, Any]:
        """The settings that decide the join's output (not ``memory_limit`` and ``threads``, which only
        decide its speed), as JSON values."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SPEED_SETTINGS}
        return json.loads(json.dumps(values))


#: settings that change how fast the join runs, not what it writes
SPEED_SETTINGS = ("memory_limit", "threads")


def _key(name: str) -> str:
    return f"config.labels.reddit.{name}"
