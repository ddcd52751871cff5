"""Caption and hashtag cleaning (caption_text.py), shared by the Instagram sources and the curate stage."""

from __future__ import annotations

from photocorpus.caption_text import (
    caption_description,
    caption_hashtags,
    clean_caption_text,
    clean_hashtag,
    clean_hashtags,
    instacities_caption,
    unescape_entities,
)


def test_entities_are_unescaped_even_when_escaped_twice() -> None:
    assert unescape_entities("Tom &amp; Jerry&#39;s") == "Tom & Jerry's"
    assert unescape_entities("fish &amp;amp; chips") == "fish & chips"
    assert unescape_entities("I <3 NY &lt;3") == "I <3 NY <3"  # markup-like text is left alone


def test_clean_caption_is_one_readable_line_with_emoji_kept() -> None:
    raw = "Sunset \u200bover\tthe Hudson 🌇 &amp; friends\r\n\n#NewYork\ufeff #nyc  "
    assert clean_caption_text(raw) == "Sunset over the Hudson 🌇 & friends #NewYork #nyc"
    family = "👨\u200d👩\u200d👧 day"  # the zero-width joiners hold the family emoji together
    assert clean_caption_text(family) == family
    assert clean_caption_text("Cafe\u0301") == "Café"  # NFC
    assert clean_caption_text(None) == "" and clean_caption_text("  \n ") == ""


def test_hashtags_of_a_raw_caption_are_read_after_unescaping() -> None:
    raw = "Brunch &#64; Tom &amp; Jerry&#39;s #caf&eacute; #Brunch #東京 #brunch a#b #_under"
    assert caption_hashtags(raw) == ["café", "brunch", "東京", "_under"]
    assert caption_hashtags("&#35;london is an entity") == ["london"]  # '&#35;' is '#'
    assert caption_hashtags(None) == []


def test_hashtag_lists_from_sources_are_normalised() -> None:
    assert clean_hashtag("#London") == "london"
    assert clean_hashtag("caf&eacute;") == "café"
    assert clean_hashtag("new york") is None and clean_hashtag("#") is None and clean_hashtag("!!") is None
    assert clean_hashtags(["#NYC", "nyc", "Food", "??", "ｆｏｏｄ"]) == [
        "nyc",
        "food",
    ]  # NFKC folds full-width


def test_instacities_caption_is_the_description_and_the_hashtags() -> None:
    raw = "Big Ben\n&amp; me #London #travel"
    assert caption_description(raw) == "Big Ben & me"
    assert instacities_caption(raw) == "Big Ben & me #London #travel"  # InstaCities1M: newlines to spaces
    # Hashtags a source lists apart from the caption are appended once, after the text.
    assert instacities_caption(raw, ["london", "#UK", "uk"]) == "Big Ben & me #London #travel #uk"
    assert instacities_caption(None, ["nyc"]) == "#nyc"
