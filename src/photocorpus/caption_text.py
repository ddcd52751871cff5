"""Caption and hashtag text handling shared by sources, curate, featurize and learn.

Captions are untrusted user text: these functions only ever *read* them, and nothing here turns text
into paths or markup.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

# A hashtag is '#' followed by letters, digits, marks or underscores in any script, as Instagram allows;
# it must not be glued to a preceding word character (so "a#b" and "&#39;" are not hashtags).
_HASHTAG = re.compile(r"(?<![\w&])#([^\W_]\w*|_\w+)", re.UNICODE)


def extract_hashtags(text: str | None) -> list[str]:
    """Hashtags in order of first appearance, NFKC-normalised and lower-cased, without the ``#``."""
    if not text:
        return []
    found: dict[str, None] = {}
    for match in _HASHTAG.finditer(unicodedata.normalize("NFKC", text)):
        found.setdefault(match.group(1).casefold(), None)
    return list(found)


# ---------------------------------------------------------------------------------- caption cleaning
# The catalog keeps captions exactly as the source gave them; these functions derive the *clean* text
# that curate, featurize and the exports use, so every stage cleans the same way.

# Invisible characters that only get in the way of text analysis: C0/C1 controls (newlines, tabs and
# U+0085 are whitespace, handled below), zero-width space, direction marks, word joiner and byte-order
# mark. The zero-width joiner (U+200D) and non-joiner (U+200C) are kept: emoji sequences and several
# scripts (Persian, Indic) need them.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u200e\u200f\u2060\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_MAX_UNESCAPE_ROUNDS = 3  # "&amp;amp;" (escaped twice) is common in scraped captions; three rounds suffice


def unescape_entities(text: str) -> str:
    """Turn HTML entities into characters, repeatedly, so doubly escaped text (``&amp;amp;``) comes out
    right. Only entities are touched: markup-like text such as ``<3`` is left alone."""
    for _ in range(_MAX_UNESCAPE_ROUNDS):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return text


def clean_caption_text(text: str | None) -> str:
    """A raw caption as clean, single-line text: entities unescaped, NFC, invisible characters removed,
    every run of whitespace (newlines included) collapsed to one space.

    Emoji, hashtags and mentions stay. Single-line matches InstaCities1M, whose caption files hold
    the caption with its newlines replaced by spaces.
    """
    if not text:
        return ""
    cleaned = unicodedata.normalize("NFC", unescape_entities(text))
    cleaned = _INVISIBLE.sub("", cleaned)
    return _WHITESPACE.sub(" ", cleaned).strip()


def caption_hashtags(text: str | None) -> list[str]:
    """The hashtags of a *raw* caption, read after entities are unescaped (``#caf&eacute;`` is
    ``café``): unicode-aware, NFKC, lower-cased, without ``#``, in order of first appearance."""
    return extract_hashtags(clean_caption_text(text))


def clean_hashtag(tag: str) -> str | None:
    """One hashtag as a source listed it (``#London``, ``caf&eacute;``) in our canonical form, or
    ``None`` when it is not a hashtag at all (empty, punctuation only)."""
    body = unicodedata.normalize("NFKC", clean_caption_text(tag).lstrip("#"))
    match = _HASHTAG.fullmatch("#" + body)
    return match.group(1).casefold() if match else None


def clean_hashtags(tags: Iterable[str]) -> list[str]:
    """:func:`clean_hashtag` over a list, dropping non-hashtags and repeats, keeping the first order."""
    out: dict[str, None] = {}
    for tag in tags:
        cleaned = clean_hashtag(tag)
        if cleaned:
            out.setdefault(cleaned, None)
    return list(out)


def caption_description(text: str | None) -> str:
    """The clean caption without its hashtags: what the uploader wrote around them."""
    cleaned = clean_caption_text(text)
    without = _HASHTAG.sub(" ", unicodedata.normalize("NFKC", cleaned))
    return _WHITESPACE.sub(" ", without).strip()


def instacities_caption(text: str | None, hashtags: Iterable[str] = ()) -> str:
    """The caption as InstaCities1M kept it: the description and its hashtags, as one line.

    That is the clean caption (entities unescaped, newlines as spaces, nothing else changed), plus any
    of ``hashtags`` (e.g. from a source's separate tag list) that it does not already contain, appended
    as ``#tag``. For text to learn from (URLs dropped, ftfy, NFKC), use :func:`curated_caption`.
    """
    cleaned = clean_caption_text(text)
    present = set(extract_hashtags(cleaned))
    extra = [f"#{tag}" for tag in clean_hashtags(hashtags) if tag not in present]
    return " ".join(part for part in (cleaned, *extra) if part)


# ---------------------------------------------------------------------- curate: clean text, tokens, language
# The curated caption (``curation.caption_clean``) is what exports, featurize and learn read: title +
# description + hashtags, as InstaCities1M used description + hashtags, with Flickr's HTML taken out.

_HTML_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?|!--.*?--)>", re.DOTALL)
_HTML_BREAK = re.compile(r"<\s*(?:br|/p|p|/div|div|li|/li|/h[1-6])\b[^<>]*>", re.IGNORECASE)
# a URL ends before trailing punctuation ("see http://a.b/c, then")
_URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']*[^\s<>\"'\]\),.;:!?]", re.IGNORECASE)
# Emoji: pictographs (with variation selectors, skin tones, ZWJ sequences) and regional-indicator flags.
_EMOJI_BASE = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff\u2190-\u21ff\u3030\u303d"
_EMOJI = re.compile(
    rf"[\U0001f1e6-\U0001f1ff]{{2}}|[{_EMOJI_BASE}](?:[\ufe0f\U0001f3fb-\U0001f3ff\u20e3]"
    rf"|\u200d[{_EMOJI_BASE}])*"
)
_WORD = re.compile(r"[^\W_](?:[\w'’-]*[^\W_])?", re.UNICODE)

# English stop words (the usual function words plus the contractions social captions are full of).
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
    let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
    out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the
    their theirs them themselves then there there's these they they'd they'll they're they've this those
    through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom why why's will with won't would wouldn't you you'd
    you'll you're you've your yours yourself yourselves im dont cant wont thats ive youre"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())


def strip_html(text: str | None) -> str:
    """Markup removed (line breaks and paragraphs become spaces) and entities unescaped.

    Flickr descriptions are HTML. Only well-formed tags are removed, so ``I <3 NY`` keeps its heart.
    """
    if not text:
        return ""
    spaced = _HTML_BREAK.sub(" ", text)
    return unescape_entities(_HTML_TAG.sub("", spaced))


def remove_urls(text: str) -> str:
    """Web addresses removed (http(s)://, ftp://, www.): they carry no caption meaning."""
    return _URL.sub(" ", text)


def normalize_text(text: str) -> str:
    """Mojibake repaired (ftfy), NFKC-normalised, invisible characters dropped, whitespace collapsed.

    NFKC folds the look-alike forms people use for style (full-width letters, ligatures, 𝐛𝐨𝐥𝐝) into
    plain letters; emoji are not affected by it.
    """
    import ftfy

    fixed = ftfy.fix_text(text, normalization="NFKC", unescape_html=False)
    fixed = _INVISIBLE.sub("", fixed)
    return _WHITESPACE.sub(" ", fixed).strip()


def curated_caption(title: str | None, description: str | None, hashtags: Iterable[str] = ()) -> str:
    """Title + description + hashtags as one clean line: HTML stripped, entities unescaped, URLs
    removed, ftfy + NFKC, emoji kept. Hashtags of ``hashtags`` that the text lacks are appended as
    ``#tag``; a title that merely repeats the start of the description is not repeated.
    """
    head = normalize_text(remove_urls(strip_html(title)))
    body = normalize_text(remove_urls(strip_html(description)))
    if head and body.casefold().startswith(head.casefold()):
        head = ""
    joined = " ".join(p for p in (head, body) if p)
    present = set(extract_hashtags(joined))
    extra = [f"#{tag}" for tag in clean_hashtags(hashtags) if tag not in present]
    return " ".join(p for p in (joined, *extra) if p)


def tokenize(text: str | None, *, stop_words: bool = True, keep_emoji: bool = True) -> list[str]:
    """Lower-case word tokens of a caption, in order: hashtags as their word (``#NYC`` -> ``nyc``),
    emoji as one token each (flags, skin tones and ZWJ families stay whole), URLs dropped, stop words
    dropped unless ``stop_words=False``. The shared tokenizer of curate, featurize and learn.
    """
    if not text:
        return []
    clean = normalize_text(remove_urls(strip_html(text))).casefold()
    tokens: list[str] = []
    pos = 0
    for match in _EMOJI.finditer(clean):
        tokens.extend(_words(clean[pos : match.start()], stop_words))
        if keep_emoji:
            tokens.append(match.group(0).replace("\ufe0f", ""))
        pos = match.end()
    tokens.extend(_words(clean[pos:], stop_words))
    return tokens


def _words(text: str, stop_words: bool) -> list[str]:
    words = [w.replace("’", "'") for w in _WORD.findall(text)]
    return [w for w in words if not (stop_words and w in STOP_WORDS)]


def emoji_in(text: str | None) -> list[str]:
    """The emoji of a text, in order, each as one token."""
    return [m.group(0).replace("\ufe0f", "") for m in _EMOJI.finditer(text or "")]


_LANGUAGE_IDENTIFIER = None
MIN_LANGUAGE_LETTERS = 12  # below this, any guess is noise


def detect_language(text: str | None) -> tuple[str | None, float]:
    """(ISO 639-1 code, probability) by py3langid, offline; ``(None, 0.0)`` for text too short to tell.

    Hashtags are read as words (``#sunset`` is English evidence), URLs and emoji are ignored.
    """
    global _LANGUAGE_IDENTIFIER
    words = " ".join(_words(normalize_text(remove_urls(strip_html(text or ""))), stop_words=False))
    if sum(ch.isalpha() for ch in words) < MIN_LANGUAGE_LETTERS:
        return None, 0.0
    if _LANGUAGE_IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _LANGUAGE_IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    lang, prob = _LANGUAGE_IDENTIFIER.classify(words)
    return str(lang), float(prob)
