"""Caption cleaning, tokenization, language id and bot flags, on real caption shapes."""

from __future__ import annotations

import json
from pathlib import Path

from photocorpus.caption_text import (
    curated_caption,
    detect_language,
    emoji_in,
    remove_urls,
    strip_html,
    tokenize,
)
from photocorpus.config import CurateSettings
from photocorpus.corpus import Corpus
from photocorpus.curate.bots import caption_key, run_bots
from photocorpus.curate.captions import run_captions
from photocorpus.records import PhotoRecord
from tests.conftest import SHARED_DATA, shared_data


def test_flickr_html_descriptions_become_clean_text() -> None:
    """The recorded Flickr response's descriptions contain HTML and entities."""
    path = shared_data("flickr-api/photos_search_text-cat_page1.json")
    photos = json.loads(path.read_text())["photos"]["photo"]
    raw = [p["description"]["_content"] for p in photos if p["description"]["_content"]]
    assert any("<" in d or "&" in d for d in raw)
    for d in raw:
        clean = curated_caption(None, d)
        assert "<a " not in clean and "</" not in clean and "&amp;" not in clean and "&quot;" not in clean
        assert "http://" not in clean and "https://" not in clean
        assert "\n" not in clean
    assert SHARED_DATA.exists()


def test_curated_caption_is_title_description_hashtags() -> None:
    caption = curated_caption(
        "Brooklyn Bridge",
        '<p>Sunset run &amp; coffee ☕<br>more at <a href="https://x.example/p?q=1">https://x.example/p?q=1</a>'
        " and www.example.org #NYC</p>",
        ["nyc", "#Sunset", "café"],
    )
    assert caption == "Brooklyn Bridge Sunset run & coffee ☕ more at and #NYC #sunset #café"
    # a title that only repeats the start of the description is not said twice
    assert curated_caption("Sunset", "Sunset over the river") == "Sunset over the river"
    # NFKC folds styled letters and ligatures; ftfy repairs mojibake; I <3 NY keeps its heart
    assert curated_caption(None, "ﬁne 𝐛𝐨𝐥𝐝 cafÃ©") == "fine bold café"
    assert strip_html("I <3 NY") == "I <3 NY"
    assert remove_urls("see http://a.b/c?d=e, then") == "see  , then"


def test_tokenize_keeps_emoji_as_tokens_and_drops_stop_words() -> None:
    text = "I can't wait to see the #NYC skyline with you 😍🇺🇸👍🏽 👨‍👩‍👧 https://t.co/xyz"
    assert tokenize(text) == ["wait", "see", "nyc", "skyline", "😍", "🇺🇸", "👍🏽", "👨‍👩‍👧"]
    assert tokenize(text, stop_words=False)[:4] == ["i", "can't", "wait", "to"]
    assert "😍" not in tokenize(text, keep_emoji=False)
    assert emoji_in("❤️ love ❤") == ["❤", "❤"]
    assert tokenize("") == [] and tokenize(None) == []


def test_language_id_offline() -> None:
    assert detect_language("Beautiful sunset over the Brooklyn Bridge with my best friends")[0] == "en"
    assert detect_language("Une belle journée au bord de la mer avec mes amis")[0] == "fr"
    assert detect_language("Una hermosa puesta de sol en la playa con mis amigos")[0] == "es"
    assert detect_language("#nyc 😍") == (None, 0.0)


def test_bots_repeated_captions_and_reposting_owners(tmp_path: Path) -> None:
    with Corpus.create(tmp_path / "c") as corpus:
        spam = "Follow us for the best deals in town, link in bio! 123"

        def add(prefix: str, n: int, caption: str, owner: str | None) -> list[int]:
            return corpus.add_photos(
                [
                    PhotoRecord(
                        "test",
                        f"{prefix}{i}",
                        ["nyc"],
                        caption=caption.format(i=i),
                        owner=owner and owner.format(i=i),
                    )
                    for i in range(n)
                ]
            )

        ids_spam = add("s", 6, spam.replace("123", "{i}"), "u{i}")
        ids_short = add("h", 9, "#nyc ❤️", None)
        ids_owner = add("o", 4, "my photo number {i} of today", "reposter")
        ids_normal = add("n", 3, "walk {i} in the park with {i} dogs", "n{i}")
        run_captions(corpus)
        # the reposter's four photos are near-duplicates of each other (one group); n0/n1 are too,
        # but by two different owners
        with corpus.transaction() as conn:
            conn.executemany(
                "UPDATE curation SET dup_group = ? WHERE photo_id = ?",
                [(ids_owner[0], pid) for pid in ids_owner] + [(ids_normal[0], pid) for pid in ids_normal[:2]],
            )
        report = run_bots(corpus, CurateSettings(bot_caption_repeats=5, bot_owner_reposts=3))
        flagged = {
            int(r[0]): r[1]
            for r in corpus.conn.execute("SELECT photo_id, bot_reason FROM curation WHERE bot = 1")
        }
        assert {pid: flagged.get(pid) for pid in ids_spam} == {pid: "repeated_caption" for pid in ids_spam}
        assert not any(pid in flagged for pid in ids_short + ids_normal)
        assert {flagged.get(pid) for pid in ids_owner} == {"owner_reposts"}
        assert report.repeated_captions == 1 and report.reposting_owners == 1
        # stricter thresholds clear the flags again: they are recomputed, not accumulated
        run_bots(corpus, CurateSettings(bot_caption_repeats=7, bot_owner_reposts=4))
        assert corpus.conn.execute("SELECT COUNT(*) FROM curation WHERE bot = 1").fetchone()[0] == 0
    assert caption_key("Short one") is None
    assert caption_key("Deal 1 of the day here") == caption_key("Deal 22 of the day here")
