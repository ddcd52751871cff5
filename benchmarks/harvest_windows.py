"""How many Flickr API calls each window target costs, on bursty synthetic populations.

Runs the real harvester against the Flickr-compatible test server on 127.0.0.1 and counts calls for
several ``window_target`` values (im2gps's 250, and larger ones up to just under the 4,000 cap), over a
few seeds. The minimum possible is ceil(N / per_page). This is how the default target was chosen.

    python benchmarks/harvest_windows.py [--photos 12000] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.flickr_server import FlickrTestServer, make_population

from photocorpus.corpus import Corpus
from photocorpus.flickr_api import FlickrClient
from photocorpus.sources.flickr import FlickrHarvester, HarvestQuery, SearchFilters


def calls_for(photos: list, target: int, per_page: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp, FlickrTestServer(photos) as server:
        corpus = Corpus.create(Path(tmp) / "c")
        client = FlickrClient(server.config.api_key, api_url=server.api_url, calls_per_hour=3.6e9)
        filters = SearchFilters(
            min_upload=int(datetime(2014, 12, 1, tzinfo=UTC).timestamp()),
            max_upload=int(datetime(2020, 6, 1, tzinfo=UTC).timestamp()),
            per_page=per_page,
        )
        report = FlickrHarvester(corpus, client, filters, window_target=target).run(
            [HarvestQuery("cat", "cat")]
        )
        found = corpus.count_photos()
        corpus.close()
        client.close()
    return report.api_calls, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-page", type=int, default=500)
    args = parser.parse_args()
    minimum = math.ceil(args.photos / args.per_page)
    print(f"{args.photos} photos over 5 years (bursty days, empty months), per_page={args.per_page}, "
          f"minimum calls = {minimum}")  # fmt: skip
    print(f"{'target':>7} {'mean calls':>11} {'max calls':>10} {'ratio to min':>13} {'all found':>10}")
    for target in (250, 1000, 2000, 3000, 3500, 3900):
        results = [
            calls_for(make_population(args.photos, n_other=args.photos // 4, seed=s), target, args.per_page)
            for s in range(args.seeds)
        ]
        calls = [c for c, _ in results]
        complete = all(found == args.photos for _, found in results)
        print(f"{target:>7} {statistics.mean(calls):>11.1f} {max(calls):>10} "
              f"{statistics.mean(calls) / minimum:>13.2f} {complete!s:>10}")  # fmt: skip


if __name__ == "__main__":
    main()
