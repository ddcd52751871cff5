"""Instagram through instaloader: the post → record adapter and the resumable hashtag/profile harvest.

Why instaloader: it is the maintained tool, and it owns what breaks most often, namely the session
(cookies), the GraphQL query shapes, retries and a rate controller that knows Instagram's limits. We
never add our own sleeps or retries on top of it: when it finally gives up, we stop cleanly.

* :func:`~photocorpus.sources.instagram_posts.post_media` (its own module) turns one post into records;
  the folder import uses the same adapter on the posts that instaloader and InstaLooter saved.
* :func:`harvest_instagram` walks hashtags and profiles through an injectable *post opener*. In
  production that is :class:`InstaloaderPosts`: instaloader's own resumable ``NodeIterator``
  (``Hashtag.get_posts_resumable`` / ``Profile.get_posts``) on a logged-in context.

Resume: every few posts, one transaction commits the new photo rows, the skipped videos and the
iterator's frozen state (``NodeIterator.freeze()``) in ``harvest_log`` (page 0 of the query). A re-run
thaws the iterator there, so Ctrl-C or kill -9 lose nothing already committed, and the posts after the
last commit are simply read again. A thawed iterator repeats the last post it gave; the ids of the
last committed batch are kept, so that post is not counted twice.

Secrets: the session file is read by instaloader only. Its cookie values are registered with
:mod:`photocorpus.logs` and scrubbed from every message we raise; nothing of it reaches the catalog.
"""

from __future__ import annotations

import logging
import pickle
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import instaloader
import requests
from instaloader import (
    AbortDownloadException,
    FrozenNodeIterator,
    Hashtag,
    InstaloaderException,
    InvalidArgumentException,
    LoginException,
    LoginRequiredException,
    NodeIterator,
    Post,
    PrivateProfileNotFollowedException,
    Profile,
    ProfileNotExistsException,
    QueryReturnedForbiddenException,
    QueryReturnedNotFoundException,
    TooManyRequestsException,
)
from instaloader.instaloader import get_default_session_filename

from photocorpus.caption_text import clean_hashtag
from photocorpus.corpus import Corpus
from photocorpus.errors import ConfigError, PhotocorpusError
from photocorpus.interrupt import StopFlag
from photocorpus.logs import redact, register_secret
from photocorpus.notebook import HtmlReport
from photocorpus.records import PhotoRecord
from photocorpus.sources.instagram_posts import SOURCE, PostMedia, post_id_of, post_media

log = logging.getLogger(__name__)

HARVEST_STAGE = "harvest"
RESUME_PAGE = 0  # harvest_log page that holds a query's resume state; pages 1.. log each commit
STATE_VERSION = 1
_USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")  # what Instagram (and instaloader's --login) accept


# ---------------------------------------------------------------------------------------------- errors
class InstagramError(PhotocorpusError):
    """The harvest stopped: ``kind`` says why (``login_required``, ``rate_limited``, ``forbidden``,
    ``checkpoint``, ``not_found``, ``private``, ``connection``); the message says what to do next."""

    def __init__(self, message: str, kind: str, query: str | None = None) -> None:
        super().__init__(redact(message))
        self.kind = kind
        self.query = query


# What instaloader raises when Instagram or the network fails (a few of its requests are plain
# ``requests`` calls, whose errors it does not wrap).
INSTAGRAM_FAILURES = (InstaloaderException, AbortDownloadException, requests.exceptions.RequestException)

# Failures that concern one hashtag or profile: the harvest records them and goes on with the others.
PER_QUERY_KINDS = frozenset({"not_found", "private"})


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


# instaloader's messages read "<status> <Reason> when accessing <url>"; take the status from there.
_HTTP_STATUS = re.compile(r"(?<![\w/=&%.-])([1-5]\d\d) (?=[A-Z])")


def classify_instaloader_error(exc: BaseException) -> str:
    """Why instaloader gave up, as one of :class:`InstagramError`'s kinds.

    instaloader retries a failed request itself and then raises a plain ``ConnectionException`` whose
    cause (and text) holds the last HTTP status, so we look at the whole exception chain.
    """
    chain = _chain(exc)
    text = " | ".join(str(e) for e in chain)
    statuses = {int(s) for s in _HTTP_STATUS.findall(text)}
    if any(isinstance(e, LoginRequiredException | LoginException) for e in chain):
        return "login_required"
    if re.search(r"checkpoint_required|challenge_required|feedback_required", text):
        return "checkpoint"
    if "Redirected to login page" in text:
        return "logged_out"
    if any(isinstance(e, TooManyRequestsException) for e in chain) or 429 in statuses:
        return "rate_limited"
    if any(isinstance(e, QueryReturnedForbiddenException) for e in chain) or statuses & {401, 403}:
        return "forbidden"
    if any(isinstance(e, PrivateProfileNotFollowedException) for e in chain):
        return "private"
    if any(isinstance(e, QueryReturnedNotFoundException | ProfileNotExistsException) for e in chain):
        return "not_found"
    return "connection"


def login_instructions(username: str | None = None) -> str:
    """How to get a session photocorpus can use: log in once with instaloader itself."""
    user = username or "YOUR_USERNAME"
    return (
        f"Log in once with instaloader: `instaloader --login {user}` (it asks for the password and any "
        f"two-factor code, then saves a session file), and run the harvest with `--login {user}` "
        "(or `--session-file PATH`). photocorpus never asks for or stores your password."
    )


def _error_message(
    kind: str, query: InstagramQuery, committed_posts: int, detail: str, user: str | None
) -> str:
    where = query.key
    resume = (
        f"Nothing committed is lost ({committed_posts} posts of {where} so far); re-run the same command "
        "to resume where it stopped."
        if committed_posts
        else "Then re-run the same command."
    )
    detail = detail.strip().replace("\n", " ")[:300]
    if kind == "login_required":
        return f"Instagram needs a logged-in session for {where}. {login_instructions(user)} {resume}"
    if kind == "rate_limited":
        return (
            f"Instagram answered 429 Too Many Requests for {where}, after instaloader's rate controller had "
            "already waited and retried. Wait a while (an hour is usually enough) and do not use this "
            f"account elsewhere meanwhile. {resume}"
        )
    if kind == "forbidden":
        return (
            f"Instagram refused the requests for {where} (401/403): the session is probably expired or "
            f"flagged. {login_instructions(user)} {resume} ({detail})"
        )
    if kind in ("checkpoint", "logged_out"):
        return (
            f"Instagram logged this session out or asks for a security check while reading {where}. Open "
            f"instagram.com in a browser with this account and complete the check, then log in again. "
            f"{login_instructions(user)} {resume} ({detail})"
        )
    if kind == "not_found":
        return f"{where} does not exist on Instagram ({detail})"
    if kind == "private":
        return f"{where} is a private profile that this account does not follow"
    return f"Could not read {where} from Instagram: {detail}. {resume}"


# ---------------------------------------------------------------------------------------------- queries
@dataclass(frozen=True, slots=True)
class InstagramQuery:
    """One hashtag or profile to harvest. Its name is the photos' label."""

    kind: Literal["hashtag", "profile"]
    name: str

    @classmethod
    def hashtag(cls, text: str) -> InstagramQuery:
        name = clean_hashtag(text)
        if not name:
            raise ConfigError(f"{text!r} is not a hashtag (letters, digits and underscores, e.g. london)")
        return cls("hashtag", name)

    @classmethod
    def profile(cls, text: str) -> InstagramQuery:
        name = text.strip().lstrip("@")
        if not _USERNAME.match(name):
            raise ConfigError(f"{text!r} is not an Instagram username (letters, digits, '.' and '_')")
        return cls("profile", name.lower())

    @property
    def key(self) -> str:
        """How the harvest log names it: ``#london`` or ``@natgeo``."""
        return ("#" if self.kind == "hashtag" else "@") + self.name

    @property
    def label(self) -> str:
        return self.name


# ---------------------------------------------------------------------------------------------- instaloader
PostOpener = Callable[[InstagramQuery], Iterator[Post]]


class InstaloaderPosts:
    """The production post opener: instaloader's own resumable iterators on a (logged-in) context."""

    def __init__(self, loader: instaloader.Instaloader) -> None:
        self.loader = loader

    def __call__(self, query: InstagramQuery) -> Iterator[Post]:
        context = self.loader.context
        if query.kind == "hashtag":
            if not context.is_logged_in:
                # Instagram lists hashtags only to logged-in sessions; fail before sending anything.
                raise LoginRequiredException(f"Login required to list the posts of {query.key}.")
            return Hashtag.from_name(context, query.name).get_posts_resumable()
        return Profile.from_username(context, query.name).get_posts()


def _username_from_session_file(path: Path) -> str | None:
    """instaloader names its session files ``session-<username>``."""
    name = path.name
    return name[len("session-") :] if name.startswith("session-") and _USERNAME.match(name[8:]) else None


def open_instaloader(
    *,
    login: str | None = None,
    session_file: Path | None = None,
    max_connection_attempts: int = 3,
    request_timeout_s: float = 300.0,
    sleep: bool = True,
    rate_controller: Callable[[instaloader.InstaloaderContext], instaloader.RateController] | None = None,
) -> instaloader.Instaloader:
    """An Instaloader with the user's saved session (or anonymous when neither option is given).

    ``--login USER`` loads instaloader's default session file for USER; ``--session-file PATH`` loads
    that file (USER comes from ``--login`` or the ``session-USER`` file name). We never log in with a
    password ourselves: that is instaloader's job (see :func:`login_instructions`).
    """
    loader = instaloader.Instaloader(
        sleep=sleep,
        quiet=True,
        download_pictures=False,
        download_videos=False,
        download_video_thumbnails=False,
        save_metadata=False,
        max_connection_attempts=max_connection_attempts,
        request_timeout=request_timeout_s,
        rate_controller=rate_controller,
        resume_prefix=None,  # resume state lives in the catalog, not in files next to downloads
    )
    _route_messages_through_our_log(loader.context)
    username = login.strip().lstrip("@").lower() if login else None
    if session_file is not None and username is None:
        username = _username_from_session_file(session_file)
        if username is None:
            raise InstagramError(
                f"cannot tell whose session {session_file.name} is: pass --login USERNAME too",
                "login_required",
            )
    if username is None:
        return loader
    if not _USERNAME.match(username):
        raise ConfigError(f"{login!r} is not an Instagram username")
    path = session_file or Path(get_default_session_filename(username))
    try:
        loader.load_session_from_file(username, str(session_file) if session_file else None)
    except FileNotFoundError:
        raise InstagramError(
            f"no instaloader session for {username} at {path}. {login_instructions(username)}",
            "login_required",
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, TypeError, ValueError, OSError):
        raise InstagramError(
            f"{path} is not a readable instaloader session file. {login_instructions(username)}",
            "login_required",
        ) from None
    for name, value in loader.save_session().items():
        if name != "ds_user_id":  # the account's public numeric id; every other cookie is a secret
            register_secret(str(value) if value is not None else None)
    return loader


def _route_messages_through_our_log(context: instaloader.InstaloaderContext) -> None:
    """Send instaloader's own messages through our redacting logger instead of straight to stderr.

    instaloader prints request errors ("JSON Query to ...: <the server's message> [retrying]") with a
    bare ``print``, past our log filter, so a server that echoed a cookie back in an error message would
    put the session on the terminal. Its end-of-run error list gets the redacted text too.
    """

    def error(msg: object, repeat_at_end: bool = True) -> None:
        text = redact(str(msg))
        log.warning("instaloader: %s", text)
        if repeat_at_end:
            context.error_log.append(text)

    context.error = error  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- harvest
@dataclass(slots=True)
class QueryReport:
    """What a run did for one hashtag or profile."""

    query: str
    posts: int = 0  # posts read in this run
    photos: int = 0  # photo records committed in this run (existing photos merge)
    videos: int = 0  # videos skipped in this run
    posts_in_pass: int = 0  # posts read since this query's pass started, all runs together
    resumed: bool = False
    unreadable: int = 0  # posts skipped because their data was malformed
    status: str = "pending"  # complete, max_reached, interrupted, already_complete, not_found, private
    detail: str = ""


@dataclass(slots=True)
class HarvestReport(HtmlReport):
    """What one ``harvest instagram`` run did."""

    queries: list[QueryReport] = field(default_factory=list)
    interrupted: bool = False

    @property
    def photos(self) -> int:
        return sum(q.photos for q in self.queries)

    @property
    def posts(self) -> int:
        return sum(q.posts for q in self.queries)


@dataclass(slots=True)
class _ResumeState:
    posts_in_pass: int = 0
    photos: int = 0
    videos: int = 0
    batches: int = 0
    complete: bool = False
    stopped: str | None = None
    recent_post_ids: list[str] = field(default_factory=list)
    frozen: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "posts_in_pass": self.posts_in_pass,
            "photos": self.photos,
            "videos": self.videos,
            "batches": self.batches,
            "complete": self.complete,
            "stopped": self.stopped,
            "recent_post_ids": self.recent_post_ids,
            "frozen": self.frozen,
        }

    @classmethod
    def from_json(cls, data: Any) -> _ResumeState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return cls()
        return cls(
            posts_in_pass=int(data.get("posts_in_pass") or 0),
            photos=int(data.get("photos") or 0),
            videos=int(data.get("videos") or 0),
            batches=int(data.get("batches") or 0),
            complete=bool(data.get("complete")),
            stopped=data.get("stopped"),
            recent_post_ids=[str(i) for i in data.get("recent_post_ids") or []],
            frozen=data.get("frozen") if isinstance(data.get("frozen"), dict) else None,
        )


@dataclass(slots=True)
class _Batch:
    post_ids: list[str] = field(default_factory=list)
    records: list[PhotoRecord] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)


def load_resume_state(corpus: Corpus, query: InstagramQuery) -> dict[str, Any] | None:
    """The saved resume state of a query (see the module docstring), or ``None``."""
    import json

    for row in corpus.harvest_pages(SOURCE, query.key):
        if row["page"] == RESUME_PAGE and row["state"]:
            return json.loads(row["state"])
    return None


class InstagramHarvester:
    """Harvest hashtags and profiles into a corpus; see :func:`harvest_instagram`."""

    def __init__(
        self,
        corpus: Corpus,
        open_posts: PostOpener,
        *,
        max_posts: int | None = None,
        fresh: bool = False,
        owner_lookup: bool | None = None,
        commit_every_posts: int | None = None,
        commit_interval_s: float | None = None,
        login: str | None = None,
        stop: StopFlag | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> None:
        settings = corpus.settings.instagram
        if max_posts is not None and max_posts < 1:
            raise ConfigError("max_posts must be at least 1")
        self.corpus = corpus
        self.open_posts = open_posts
        self.max_posts = max_posts
        self.fresh = fresh
        self.owner_lookup = settings.owner_names if owner_lookup is None else owner_lookup
        self.commit_every_posts = commit_every_posts or settings.commit_every_posts
        self.commit_interval_s = commit_interval_s or settings.commit_interval_s
        self.login = login
        self.stop = stop
        self.advance = advance or (lambda n=1: None)

    def run(self, queries: Sequence[InstagramQuery]) -> HarvestReport:
        report = HarvestReport()
        for query in dict.fromkeys(queries):
            result = self._harvest_query(query)
            report.queries.append(result)
            if result.status == "interrupted":
                report.interrupted = True
                break
        return report

    # -------------------------------------------------------------- one query
    def _harvest_query(self, query: InstagramQuery) -> QueryReport:
        saved = None if self.fresh else load_resume_state(self.corpus, query)
        state = _ResumeState.from_json(saved) if saved else _ResumeState()
        report = QueryReport(query.key, posts_in_pass=state.posts_in_pass)
        if state.complete:
            report.status = "already_complete"
            return report
        if self.max_posts is not None and state.posts_in_pass >= self.max_posts:
            report.status = "max_reached"
            return report
        try:
            posts = self.open_posts(query)
        except INSTAGRAM_FAILURES as exc:
            return self._failed(query, report, state, exc)
        report.resumed = self._thaw(posts, state, query)
        if not report.resumed:
            state.posts_in_pass, state.recent_post_ids, state.frozen = 0, [], None
        repeat = set(state.recent_post_ids) if report.resumed else set()
        seen_this_run: set[str] = set()
        batch = _Batch()
        last_commit = time.monotonic()
        try:
            while True:
                if self.max_posts is not None and state.posts_in_pass >= self.max_posts:
                    report.status = "max_reached"
                    break
                if self.stop:
                    report.status = "interrupted"
                    break
                post = next(posts, None)
                if post is None:
                    state.complete = True
                    report.status = "complete"
                    break
                try:
                    post_id = post_id_of(post)
                except InstaloaderException as exc:  # a node without a usable id or shortcode
                    log.warning("%s: skipping a post instaloader could not read: %s", query.key, exc)
                    report.unreadable += 1
                    continue
                if post_id in repeat or post_id in seen_this_run:
                    continue  # the thawed iterator's first post, or Instagram listing a post twice
                seen_this_run.add(post_id)
                try:
                    media = post_media(post, query.label, owner_lookup=self.owner_lookup)
                except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
                    log.warning("%s: skipping post %s, its data is malformed: %s", query.key, post_id, exc)
                    report.unreadable += 1
                    media = PostMedia(post_id, "", [], [])
                batch.post_ids.append(post_id)
                batch.records.extend(media.records)
                batch.video_ids.extend(v.source_id for v in media.videos)
                state.posts_in_pass += 1
                report.posts += 1
                self.advance(1)
                if (
                    len(batch.post_ids) >= self.commit_every_posts
                    or time.monotonic() - last_commit >= self.commit_interval_s
                ):
                    self._commit(query, posts, state, batch, report)
                    batch, last_commit = _Batch(), time.monotonic()
        except INSTAGRAM_FAILURES as exc:
            self._commit(query, posts, state, batch, report, stopped="error")
            if self.stop:  # a second Ctrl-C while instaloader was retrying: the user stopped it
                report.status = "interrupted"
                return report
            return self._failed(query, report, state, exc)
        self._commit(query, posts, state, batch, report, stopped=None if state.complete else report.status)
        return report

    def _failed(
        self, query: InstagramQuery, report: QueryReport, state: _ResumeState, exc: BaseException
    ) -> QueryReport:
        kind = classify_instaloader_error(exc)
        message = _error_message(kind, query, state.posts_in_pass, redact(str(exc)), self.login)
        if kind in PER_QUERY_KINDS:
            log.warning("%s", message)
            report.status, report.detail = kind, redact(message)
            return report
        raise InstagramError(message, kind, query.key) from None

    def _thaw(self, posts: Iterator[Post], state: _ResumeState, query: InstagramQuery) -> bool:
        """Continue ``posts`` from the saved frozen iterator; False means start from the newest post."""
        if state.frozen is None:
            if state.posts_in_pass:
                log.warning("%s: no resumable position saved; reading from the newest post again", query.key)
            return False
        if not isinstance(posts, NodeIterator):
            return False
        try:
            saved = state.frozen
            frozen = FrozenNodeIterator(**{name: saved.get(name) for name in FrozenNodeIterator._fields})
            if frozen.best_before and datetime.fromtimestamp(frozen.best_before) < datetime.now():
                raise InvalidArgumentException("the saved position is older than Instagram keeps cursors")
            posts.thaw(frozen)
        except (InvalidArgumentException, TypeError, ValueError, OverflowError, OSError) as exc:
            log.warning("%s: cannot resume (%s); reading from the newest post again", query.key, exc)
            return False
        return True

    def _commit(
        self,
        query: InstagramQuery,
        posts: Iterator[Post],
        state: _ResumeState,
        batch: _Batch,
        report: QueryReport,
        stopped: str | None = None,
    ) -> None:
        """One transaction: the batch's photos, its skipped videos, its log row and the resume state."""
        if isinstance(posts, NodeIterator) and not state.complete:
            state.frozen = posts.freeze()._asdict()
        else:
            state.frozen = None
        if batch.post_ids:
            state.recent_post_ids = list(batch.post_ids)
        state.stopped = stopped
        state.photos += len(batch.records)
        with self.corpus.transaction():
            if batch.records:
                self.corpus.add_photos(batch.records)
            new_videos = self.corpus.record_skipped_media(
                HARVEST_STAGE, "video", [(SOURCE, v) for v in batch.video_ids]
            )
            state.videos += new_videos
            if batch.post_ids:
                state.batches += 1
                self.corpus.log_harvest_page(
                    SOURCE,
                    query.key,
                    state.batches,
                    len(batch.records),
                    state={
                        "posts": len(batch.post_ids),
                        "videos": len(batch.video_ids),
                        "first_post_id": batch.post_ids[0],
                        "last_post_id": batch.post_ids[-1],
                    },
                )
            self.corpus.log_harvest_page(SOURCE, query.key, RESUME_PAGE, state.photos, state=state.as_json())
        report.photos += len(batch.records)
        report.videos += len(batch.video_ids)
        report.posts_in_pass = state.posts_in_pass


def harvest_instagram(
    corpus: Corpus,
    queries: Sequence[InstagramQuery],
    open_posts: PostOpener,
    **options: Any,
) -> HarvestReport:
    """Harvest ``queries`` into ``corpus`` with posts from ``open_posts`` (production:
    :class:`InstaloaderPosts`); ``options`` are :class:`InstagramHarvester`'s keyword arguments.

    Raises :class:`InstagramError` when Instagram stops the harvest (login, 401/403/429, checkpoint,
    network), after committing everything read so far; a re-run resumes.
    """
    return InstagramHarvester(corpus, open_posts, **options).run(queries)


def queries_from_options(hashtags: Iterable[str], profiles: Iterable[str]) -> list[InstagramQuery]:
    """Validate ``--hashtag``/``--profile`` values into queries, hashtags first, repeats dropped."""
    queries = [InstagramQuery.hashtag(h) for h in hashtags] + [InstagramQuery.profile(p) for p in profiles]
    return list(dict.fromkeys(queries))
