"""The label job's first step for Reddit dumps: comments joined to image submissions, as parquet.

``RS_*.zst`` (submissions) and ``RC_*.zst`` (comments) among ``config.labels.posts`` are joined once
into ``<work>/reddit/part-NNNNN.parquet`` (:func:`vise_plugin.reddit.join.join_dumps`, larger than
memory through DuckDB); the steps after it read those files as parquet posts. The step is skipped
on a rerun once ``joined.json`` is there, and a rerun with other Reddit settings stops in one line.
"""

import os
import shutil
from typing import Any, Dict, List, Sequence, Tuple

from vise_plugin.errors import ConfigError
from vise_plugin.labels.job.bad_records import BadRecordReport
from vise_plugin.labels.job.shards import file_size
from vise_plugin.labels.job.stages import LabelSettings
from vise_plugin.labels.job.work_dir import read_json, said_change, write_json_atomic
from vise_plugin.process_state import keeps_process_state

SUBMISSIONS_PREFIX, COMMENTS_PREFIX = "RS_", "RC_"


def split_reddit(files: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """``files`` -> (Reddit submission dumps, Reddit comment dumps, the other files), each in order.

    A dump is a ``.zst`` file named ``RS_...`` or ``RC_...``, as Pushshift and Arctic Shift name them;
    another ``.zst`` file is an error (its kind cannot be told)."""
    submissions, comments, others = [], [], []
    for path in files:
        name = os.path.basename(path)
        if not name.endswith(".zst"):
            others.append(path)
        elif name.startswith(SUBMISSIONS_PREFIX):
            submissions.append(path)
        elif name.startswith(COMMENTS_PREFIX):
            comments.append(path)
        else:
            raise ConfigError(
                f"{path}: a .zst posts file is read as a Reddit dump, named RS_<month>.zst "
                "(submissions) or RC_<month>.zst (comments) as the dumps are; rename it"
            )
    if bool(submissions) != bool(comments):
        have, need = ("submissions (RS_)", "comments (RC_)") if submissions else ("comments (RC_)", "submissions (RS_)")
        raise ConfigError(f"config.labels.posts has Reddit {have} dumps but no {need} dumps; give both")
    return submissions, comments, others


def joined_folder(settings: LabelSettings) -> str:
    return settings.work.path("reddit")


@keeps_process_state
def join_reddit(
    settings: LabelSettings, reddit: Any, submissions: Sequence[str], comments: Sequence[str]
) -> Dict[str, Any]:
    """Joins the dumps into :func:`joined_folder` (once); returns ``joined.json``: the join's summary,
    its settings, and the bad lines skipped (``bad_records``)."""
    folder = joined_folder(settings)
    marker = os.path.join(folder, "joined.json")
    wanted = {
        "settings": reddit.output_settings(),
        "submissions": {p: file_size(p) for p in submissions},
        "comments": {p: file_size(p) for p in comments},
    }
    done = read_json(marker)
    if done is not None:
        changes = [
            said_change(f"config.labels.reddit.{k}", v, wanted["settings"].get(k))
            for k, v in done["settings"].items()
            if wanted["settings"].get(k) != v
        ]
        if done["submissions"] != wanted["submissions"] or done["comments"] != wanted["comments"]:
            changes.append("the Reddit dumps of config.labels.posts changed (names or sizes)")
        if changes:
            raise ConfigError(
                f"{folder}: Reddit dumps joined with other settings are here ({'; '.join(changes)}); "
                f"delete {settings.work.root} to label with the new ones"
            )
        return done
    from vise_plugin.reddit.join import join_dumps

    shutil.rmtree(folder, ignore_errors=True)
    bad = BadRecordReport() if settings.skip_bad_records else None
    summary = join_dumps(submissions, comments, folder, reddit, settings.work.path("reddit_db"), bad)
    shutil.rmtree(settings.work.path("reddit_db"), ignore_errors=True)
    result = {**wanted, "summary": summary, "bad_records": (bad or BadRecordReport()).to_dict()}
    write_json_atomic(marker, result)
    return result


def joined_files(result: Dict[str, Any], settings: LabelSettings) -> List[str]:
    """The parquet files of a finished join, in order."""
    return [os.path.join(joined_folder(settings), name) for name in result["summary"]["files"]]
