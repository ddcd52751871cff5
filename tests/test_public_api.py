"""The public names of ``import photocorpus as pc`` (as httpx tests its exported members): exactly
these, each documented, listed by ``help(pc)``, and loaded lazily so that the import stays instant."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import photocorpus

PUBLIC_NAMES = [
    "USER_AGENT",
    "Corpus",
    "ParameterError",
    "PhotocorpusError",
    "Progress",
    "ProgressUpdate",
    "StopFlag",
    "__version__",
    "add_note",
    "confirm_group",
    "curate_photos",
    "decision_history",
    "embed_captions",
    "enrich_flickr",
    "evaluate",
    "exclude_photos",
    "explore_photos",
    "export_photos",
    "featurize",
    "fetch_photos",
    "fuse_features",
    "harvest_flickr",
    "harvest_instagram",
    "harvest_urls",
    "import_folder",
    "include_photos",
    "init",
    "mark_not_duplicate",
    "open",
    "search",
    "set_bot",
    "set_label",
    "set_quality",
    "split_group",
    "train_classifier",
    "train_semantic",
    "undo_decision",
]
STAGE_FUNCTIONS = [
    "curate_photos",
    "embed_captions",
    "enrich_flickr",
    "explore_photos",
    "featurize",
    "fetch_photos",
    "fuse_features",
    "harvest_flickr",
    "harvest_instagram",
    "harvest_urls",
    "import_folder",
    "train_classifier",
    "train_semantic",
]


def test_all_is_exactly_the_public_api_and_each_name_resolves_with_a_docstring() -> None:
    assert photocorpus.__all__ == PUBLIC_NAMES
    assert set(PUBLIC_NAMES) <= set(dir(photocorpus))
    for name in PUBLIC_NAMES:
        value = getattr(photocorpus, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert inspect.getdoc(value) and len(inspect.getdoc(value) or "") > 40, name
        else:  # data: named and explained in the package docstring
            assert f"``{name}``" in (photocorpus.__doc__ or "") or f":data:`{name}`" in (
                photocorpus.__doc__ or ""
            )


def test_every_stage_function_takes_the_corpus_first_and_progress_and_stop_by_keyword() -> None:
    for name in STAGE_FUNCTIONS:
        params = inspect.signature(getattr(photocorpus, name)).parameters
        assert next(iter(params)) == "corpus", name
        for keyword in ("progress", "stop"):
            assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY, (name, keyword)
        assert params["progress"].default is False and params["stop"].default is None, name


def test_no_public_name_is_shadowed_by_a_subpackage() -> None:
    # Python sets a package's attribute to a subpackage when it is imported: a function named like a
    # subpackage (pc.fetch and photocorpus.fetch) would turn into a module behind the user's back.
    submodules = {m.name for m in pkgutil.iter_modules(photocorpus.__path__)}
    assert not set(PUBLIC_NAMES) & submodules
    for name in ("photocorpus.fetch", "photocorpus.curate", "photocorpus.explore", "photocorpus.export"):
        importlib.import_module(name)
    for name in PUBLIC_NAMES:
        assert not inspect.ismodule(getattr(photocorpus, name)), name


def test_help_lists_the_api() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import photocorpus as pc; help(pc)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PAGER": "cat", "TERM": "dumb", **_env()},
    ).stdout
    functions = out.split("\nFUNCTIONS\n", 1)[1].split("\nDATA\n", 1)[0]
    for name in PUBLIC_NAMES:
        if inspect.isfunction(getattr(photocorpus, name)):
            assert f"\n    {name}(" in functions, name
    classes = out.split("\nCLASSES\n", 1)[1].split("\nFUNCTIONS\n", 1)[0]
    for name in ("Corpus", "StopFlag", "ProgressUpdate", "PhotocorpusError", "ParameterError"):
        assert f"class {name}(" in classes, name


def test_import_photocorpus_loads_nothing_but_the_package() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import photocorpus\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    loaded = eval(out.stdout)  # a printed list of module names
    # the package and its version constants (their own tiny module, so stages need not import the root)
    ours = [m for m in loaded if m.startswith("photocorpus")]
    assert ours == ["photocorpus", "photocorpus.version"], loaded
    third_party = {"numpy", "torch", "pandas", "PIL", "pydantic", "rich", "typer", "sqlite3"} & set(loaded)
    assert not third_party, loaded
    # and the first use of a name loads the API, still without a stage, numpy or torch
    code = (
        "import sys\n"
        "import photocorpus as pc\n"
        "pc.fetch_photos\n"
        "heavy = {'numpy', 'torch', 'pandas', 'onnxruntime', 'PIL'}\n"
        "stages = {m for m in sys.modules if m.split('.')[1:2] and m.split('.')[1] in\n"
        "          ('fetch', 'curate', 'features', 'explore', 'learn', 'export', 'sources', 'enrich')}\n"
        "print(sorted((heavy & set(sys.modules)) | stages))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert out.stdout.strip() == "[]", out.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
