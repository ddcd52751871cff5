"""The catalog's schema, as a list of forward migrations.

``MIGRATIONS[i]`` takes a catalog from ``PRAGMA user_version`` i to i + 1; :meth:`Corpus.open` applies
the missing ones in order, each in its own transaction, and refuses a catalog newer than this code.
Never edit a published entry: append a new one. Read this file to see every table and why each
column exists (the comments beside them).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE photos (
        id            INTEGER PRIMARY KEY,
        source        TEXT NOT NULL,
        source_id     TEXT NOT NULL,
        primary_label TEXT NOT NULL,          -- the first label seen; picks the image folder
        label_seq     INTEGER NOT NULL,       -- n-th photo of primary_label; picks the chunk folder
        title         TEXT,
        caption       TEXT,                   -- raw caption / description as the source gave it
        tags          TEXT NOT NULL DEFAULT '[]',      -- JSON list
        hashtags      TEXT NOT NULL DEFAULT '[]',      -- JSON list
        owner         TEXT,
        owner_id      TEXT,
        lat           REAL,
        lon           REAL,
        geo_accuracy  INTEGER,
        license       TEXT,
        taken_at      TEXT,                   -- UTC ISO-8601
        uploaded_at   TEXT,                   -- UTC ISO-8601
        page_url      TEXT,
        extra         TEXT NOT NULL DEFAULT '{}',      -- JSON: source-specific fields
        harvested_at  TEXT NOT NULL,
        UNIQUE (source, source_id)
    );
    CREATE INDEX photos_by_label ON photos (primary_label, label_seq);

    CREATE TABLE photo_labels (
        photo_id INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        label    TEXT NOT NULL,
        PRIMARY KEY (photo_id, label)
    ) WITHOUT ROWID;
    CREATE INDEX photo_labels_by_label ON photo_labels (label);

    CREATE TABLE label_counters (
        label    TEXT PRIMARY KEY,
        next_seq INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE image_urls (
        photo_id     INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        size_key     TEXT NOT NULL,
        url          TEXT NOT NULL,
        width        INTEGER,
        height       INTEGER,
        harvested_at TEXT NOT NULL,
        PRIMARY KEY (photo_id, size_key)
    ) WITHOUT ROWID;

    CREATE TABLE stages (
        photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        stage      TEXT NOT NULL,
        status     TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed', 'skipped')),
        reason     TEXT,                      -- short stable code, e.g. http_404, not_an_image
        detail     TEXT,
        attempts   INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (photo_id, stage)
    ) WITHOUT ROWID;
    CREATE INDEX stages_by_status ON stages (stage, status, reason);

    CREATE TABLE files (
        photo_id        INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
        path            TEXT NOT NULL UNIQUE, -- relative to the corpus, POSIX separators
        sha256          TEXT NOT NULL,        -- of the original bytes, before any re-encode
        width           INTEGER NOT NULL,
        height          INTEGER NOT NULL,
        bytes           INTEGER NOT NULL,
        format          TEXT NOT NULL,
        original_width  INTEGER,
        original_height INTEGER,
        original_bytes  INTEGER,
        origin          TEXT,                 -- URL or source file it came from
        http_status     INTEGER,
        frame_removed   INTEGER NOT NULL DEFAULT 0,
        stored_at       TEXT NOT NULL
    );
    CREATE INDEX files_by_sha256 ON files (sha256);

    CREATE TABLE file_intents (
        path       TEXT PRIMARY KEY,
        photo_id   INTEGER NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE harvest_log (
        id           INTEGER PRIMARY KEY,
        source       TEXT NOT NULL,
        query        TEXT NOT NULL,
        window_start TEXT NOT NULL DEFAULT '',
        window_end   TEXT NOT NULL DEFAULT '',
        page         INTEGER NOT NULL,
        result_count INTEGER NOT NULL,
        total        INTEGER,
        state        TEXT,                    -- JSON: resumable iterator state where a source has one
        created_at   TEXT NOT NULL,
        UNIQUE (source, query, window_start, window_end, page)
    );

    CREATE TABLE feature_sets (
        name       TEXT PRIMARY KEY,
        model_id   TEXT NOT NULL,
        dims       INTEGER NOT NULL,
        dtype      TEXT NOT NULL,
        path       TEXT NOT NULL,
        rows       INTEGER NOT NULL DEFAULT 0,
        params     TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE counters (
        stage TEXT NOT NULL,
        name  TEXT NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stage, name)
    ) WITHOUT ROWID;
    """,
    # 2: media a stage skipped on purpose (videos...), remembered once each so their counter is exact
    # across re-runs, resumes and overlapping queries.
    """
    CREATE TABLE skipped_media (
        stage      TEXT NOT NULL,
        source     TEXT NOT NULL,
        source_id  TEXT NOT NULL,
        reason     TEXT NOT NULL,             -- e.g. video
        created_at TEXT NOT NULL,
        PRIMARY KEY (stage, source, source_id)
    ) WITHOUT ROWID;
    """,
    # 3: the last download of each photo, failed or not: which URL, what the server answered, how
    # many retries. (A stored file's row has the same facts; this also covers the failures.)
    """
    CREATE TABLE fetch_log (
        photo_id    INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
        size_key    TEXT,
        url         TEXT,                     -- the URL finally requested (after redirects)
        http_status INTEGER,
        bytes       INTEGER,                  -- bytes received
        sha256      TEXT,                     -- of the bytes received
        retries     INTEGER NOT NULL DEFAULT 0,
        elapsed_ms  INTEGER,
        updated_at  TEXT NOT NULL
    );
    """,
    # enrichment (MIRFLICKR-1M s16a): one row per (photo, kind) asked, available or not, with the raw
    # answer; structured EXIF with the origin of each value; albums and groups; comment and note counts.
    """
    CREATE TABLE enrichment (
        photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,            -- exif, info, comments, contexts
        status     TEXT NOT NULL CHECK (status IN ('ok', 'empty', 'unavailable')),
        reason     TEXT,                     -- why unavailable, e.g. flickr_2 (permission denied)
        raw        TEXT,                     -- the API answer, JSON
        fetched_at TEXT NOT NULL,
        PRIMARY KEY (photo_id, kind)
    ) WITHOUT ROWID;
    CREATE INDEX enrichment_by_kind ON enrichment (kind, status);

    CREATE TABLE photo_exif (
        photo_id        INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
        make            TEXT,
        model           TEXT,
        lens            TEXT,
        focal_length_mm REAL,
        exposure_s      REAL,
        f_number        REAL,
        iso             INTEGER,
        taken_at        TEXT,                -- DateTimeOriginal, as UTC ISO-8601 (naive camera time)
        sources         TEXT NOT NULL DEFAULT '{}'   -- JSON {column: "api" | "file"}
    );

    CREATE TABLE photo_social (
        photo_id      INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
        comment_count INTEGER,
        note_count    INTEGER,
        views         INTEGER
    );

    CREATE TABLE photo_contexts (
        photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        kind       TEXT NOT NULL CHECK (kind IN ('album', 'group')),
        context_id TEXT NOT NULL,
        title      TEXT,
        PRIMARY KEY (photo_id, kind, context_id)
    ) WITHOUT ROWID;

    CREATE TABLE photo_comments (
        photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        comment_id TEXT NOT NULL,
        author     TEXT,
        authorname TEXT,
        created_at TEXT,
        text       TEXT,
        PRIMARY KEY (photo_id, comment_id)
    ) WITHOUT ROWID;
    """,
    # featurize: each photo's top-5 ImageNet classes per classifier, and the ontology category of its
    # top-1 class (seed 004's rule) per ontology. See photocorpus.features.label_rows.
    """
    CREATE TABLE image_labels (
        photo_id    INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        model       TEXT NOT NULL,           -- feature set of the classifier, e.g. efficientnet-lite0
        rank        INTEGER NOT NULL,        -- 1 = most probable
        class_index INTEGER NOT NULL,        -- ImageNet-1k index, 0..999
        wnid        TEXT NOT NULL,           -- WordNet 3.0 id, e.g. n07920052
        class_name  TEXT NOT NULL,           -- human-readable, e.g. espresso
        prob        REAL NOT NULL,           -- softmax probability
        PRIMARY KEY (photo_id, model, rank)
    ) WITHOUT ROWID;
    CREATE INDEX image_labels_by_class ON image_labels (model, class_index, rank);

    CREATE TABLE image_categories (
        photo_id INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        model    TEXT NOT NULL,
        ontology TEXT NOT NULL,              -- preset (coarse, seed004) or a user mapping's name
        category TEXT NOT NULL,              -- category of the top-1 class
        mass     REAL NOT NULL,              -- summed softmax probability of all classes in it
        PRIMARY KEY (photo_id, model, ontology)
    ) WITHOUT ROWID;
    CREATE INDEX image_categories_by_category ON image_categories (model, ontology, category);
    """,
    # curate: one row per curated photo: perceptual hashes, duplicate group, bot flag, quality, clean
    # caption and language, split. Hashes are 64-bit codes stored as signed int64 (the same bits).
    """
    CREATE TABLE curation (
        photo_id        INTEGER PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
        hashed_sha256   TEXT,                 -- sha256 of the file the hashes were computed from
        phash           INTEGER,              -- 64-bit DCT pHash
        dhash           INTEGER,              -- 64-bit difference hash
        phash_deframed  INTEGER,              -- pHash after cropping a detected frame (= phash if none)
        dhash_deframed  INTEGER,
        frame           TEXT,                 -- JSON [top, bottom, left, right] border, per mille
        hash_degenerate INTEGER NOT NULL DEFAULT 0,  -- too little contrast for a meaningful pHash
        dup_group       INTEGER,              -- photo id of the group's representative (NULL: unique)
        duplicate_of    INTEGER,              -- representative's photo id; NULL for representatives
        dup_method      TEXT,                 -- exact, phash or semantic: the strongest link found
        bot             INTEGER NOT NULL DEFAULT 0,
        bot_reason      TEXT,                 -- repeated_caption, owner_reposts
        quality_sha256  TEXT,                 -- sha256 of the file the scores were computed from
        quality_scores  TEXT,                 -- JSON {metric: value}
        quality_flags   TEXT,                 -- JSON list of flag names
        caption_clean   TEXT,                 -- title + description + hashtags, cleaned
        language        TEXT,                 -- ISO 639-1 by py3langid, NULL when too short to tell
        language_score  REAL,
        split_position  REAL,                 -- stable hash of (source, source_id) in [0, 1)
        split_assigned  TEXT,                 -- sticky: the split this photo got, kept for good
        split           TEXT CHECK (split IN ('train', 'val', 'test')),  -- NULL when excluded
        exclusion       TEXT,                 -- why not in a split: duplicate, bot, quality:<flag>...
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX curation_by_group ON curation (dup_group);
    CREATE INDEX curation_by_split ON curation (split);
    """,
    # learn: trained models (weak-label classifiers, semantic image -> text-space maps) saved under
    # models/<name>/, and the labels a classifier predicted for corpus photos. See photocorpus.learn.
    """
    CREATE TABLE models (
        name        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,           -- classifier, semantic
        path        TEXT NOT NULL,           -- corpus-relative folder, e.g. models/semantic-minilm
        feature_set TEXT NOT NULL,           -- image features it reads, e.g. efficientnet-lite0
        settings    TEXT NOT NULL DEFAULT '{}',   -- JSON: everything the training run was given
        metrics     TEXT NOT NULL DEFAULT '{}',   -- JSON: val/test results
        created_at  TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE model_predictions (
        photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        model      TEXT NOT NULL,
        rank       INTEGER NOT NULL,         -- 1 = most probable
        label      TEXT NOT NULL,
        score      REAL NOT NULL,            -- softmax (multi-class) or sigmoid (multi-label) probability
        created_at TEXT NOT NULL,
        PRIMARY KEY (photo_id, model, rank)
    ) WITHOUT ROWID;
    CREATE INDEX model_predictions_by_label ON model_predictions (model, label, rank);
    """,
    # explore: k-means runs over a feature set, and each photo's cluster in a run with its distance to
    # the centroid (which orders the cluster's gallery). See photocorpus.explore.cluster.
    """
    CREATE TABLE cluster_runs (
        run         TEXT PRIMARY KEY,        -- e.g. efficientnet-lite0/k10
        feature_set TEXT NOT NULL,
        k           INTEGER NOT NULL,
        method      TEXT NOT NULL,           -- faiss-kmeans or minibatch-kmeans
        seed        INTEGER NOT NULL,
        photos      INTEGER NOT NULL,
        params      TEXT NOT NULL DEFAULT '{}',  -- JSON: PCA dims, k choice with silhouettes, inertia
        created_at  TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE clusters (
        run      TEXT NOT NULL REFERENCES cluster_runs (run) ON DELETE CASCADE,
        photo_id INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        cluster  INTEGER NOT NULL,           -- 0 .. k-1
        distance REAL NOT NULL,              -- to the cluster's centroid, in the clustered space
        PRIMARY KEY (run, photo_id)
    ) WITHOUT ROWID;
    CREATE INDEX clusters_by_cluster ON clusters (run, cluster, distance);
    CREATE INDEX clusters_by_photo ON clusters (photo_id);
    """,
    # human decisions (photocorpus.decisions): the audit table of every decision a person made (never
    # deleted; an undo is a decision of its own), which photos each one names (for a photo's history),
    # and the effective verdicts the stages read: the newest active decision per photo pair and per
    # photo field. Each decision writes its audit row and its effect in one transaction.
    """
    CREATE TABLE decisions (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL,            -- confirm_group, split_group, mark_not_duplicate, exclude...
        photo_ids  TEXT NOT NULL,            -- JSON list of the photos it names
        value      TEXT,                     -- JSON payload, e.g. {"label": "london"}
        before     TEXT,                     -- JSON snapshot of what it changed, for undo
        reviewer   TEXT,                     -- who, as the client said (untrusted, capped)
        request_id TEXT UNIQUE,              -- the client's id of the request: a retry is not a 2nd write
        created_at TEXT NOT NULL,
        undone_by  INTEGER,                  -- id of the undo decision that reverted this one
        undoes     INTEGER                   -- for kind 'undo': the decision it reverted
    );

    CREATE TABLE decision_photos (
        photo_id INTEGER NOT NULL,
        decision INTEGER NOT NULL REFERENCES decisions (id),
        PRIMARY KEY (photo_id, decision)
    ) WITHOUT ROWID;
    CREATE INDEX decision_photos_by_decision ON decision_photos (decision);

    CREATE TABLE pair_verdicts (
        a        INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        b        INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        verdict  TEXT NOT NULL CHECK (verdict IN ('same', 'different')),
        decision INTEGER NOT NULL,           -- the newest active decision about this pair
        PRIMARY KEY (a, b),
        CHECK (a < b)
    ) WITHOUT ROWID;
    CREATE INDEX pair_verdicts_by_b ON pair_verdicts (b);

    CREATE TABLE photo_verdicts (
        photo_id INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
        field    TEXT NOT NULL CHECK (field IN ('exclude', 'label', 'bot', 'quality')),
        value    TEXT NOT NULL,              -- JSON: true/false (exclude, bot, quality ok) or the label
        decision INTEGER NOT NULL,           -- the newest active decision about this field
        PRIMARY KEY (photo_id, field)
    ) WITHOUT ROWID;
    """,
    # photocorpus serve: the indexes its grid filters and sorts need at 100,000 photos (each turns a
    # scan of the wide photos rows, a third of a second, into an index range). The expressions are
    # spelled exactly as photocorpus.serve.photo_filters writes them, or SQLite would not use them.
    """
    CREATE INDEX photos_by_date ON photos (COALESCE(taken_at, uploaded_at), id);
    CREATE INDEX photos_by_license ON photos (license);
    CREATE INDEX photos_with_caption ON photos (id) WHERE COALESCE(caption, '') != '';
    CREATE INDEX image_labels_by_name ON image_labels (class_name, rank);
    CREATE INDEX image_categories_by_name ON image_categories (category);
    CREATE INDEX curation_by_duplicate_of ON curation (duplicate_of);
    CREATE INDEX curation_bots ON curation (photo_id) WHERE bot = 1;
    CREATE INDEX curation_excluded ON curation (photo_id) WHERE exclusion IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def split_sql(script: str) -> list[str]:
    """Split a migration script into statements: comments first, then on ';' (no literal holds one)."""
    code = "\n".join(line.split("--", 1)[0].rstrip() for line in script.splitlines())
    return [stmt.strip() for stmt in code.split(";") if stmt.strip()]
