"""Every model of a folder, by the name its card gives it: the service serves them all and
routes a request without `model=` by the image's modality (docs/models.md); `nuclei-batch
--model NAME` finds a model by the same name (`resolve`), and without it routes each image by
the same rule (`Routes`: the registry's decisions as files, for processes that load models
themselves, e.g. Dask workers).

`stale()` stats each `*.onnx` and its card (tens of µs: the service asks before every request
that segments); `refresh()` (re)loads only the files whose inode, mtime or size changed.
A file that fails (card, sha256, half-written, ONNX, warm-up) is refused with one log line and
kept as an entry with its reason; the version that served from it before keeps serving. Each
refresh swaps one immutable `Serving` in: a request keeps the Segmenter it was given, so
requests in flight finish on the model they started with.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from nuclei import card as cards
from nuclei.card import CardError, ModelCard
from nuclei.modality import claimed_modality
from nuclei.segmenter import Segmenter

log = logging.getLogger("nuclei.registry")

INT8, FLOAT32 = "int8", "float32"
REQUESTED, DEFAULT = "requested", "default"  # routes (X-Model-Route) besides "modality: KIND"
Stat = tuple[int, int, int] | None  # (inode, mtime_ns, size) of a file; None: not there
Signature = tuple[Stat, Stat]  # of the ONNX file and of its card


class UnknownModel(LookupError):
    """A name no model serves under; names those that do, and why this one does not."""

    def __init__(self, name: str, available: Collection[str], why: str | None = None) -> None:
        self.name, self.available = name, sorted(available)
        what = f"model {name!r} is refused ({why})" if why else f"unknown model {name!r}"
        super().__init__(f"{what}; available: {', '.join(self.available) or 'none'}")


class _Clash(CardError):
    """Another file serves under the name this file's card claims."""


class Choice(NamedTuple):
    segmenter: Segmenter
    reason: str  # why this model: "requested", "modality: colour tissue", "default"


Model = TypeVar("Model")


def pick(image: np.ndarray, claims: Mapping[str, Sequence[Model]], default: Model) -> tuple[Model, str]:
    """The routing rule, for an image sent without `model=`: the preferred model whose card
    claims the image's modality (nuclei.modality, computed only when some card claims one),
    else the default; and why. Models are Segmenters (the service) or files (`Routes`)."""
    kind = claimed_modality(image, claims) if claims else None
    if kind is None:
        return default, DEFAULT
    return claims[kind][0], f"modality: {kind}"


@dataclass(frozen=True)
class Routes:
    """A registry's routing as files (`Registry.routes`), small and picklable: a process that
    loads models itself (a Dask worker) routes by it as the service does and loads only the
    models its images go to. `requested`: `default` answers every image (`--model`)."""

    default: Path
    claims: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # modality → files, preferred first
    requested: bool = False

    @property
    def by_image(self) -> bool:
        """Whether the route depends on the image: without, `pick(None)` answers."""
        return not self.requested and bool(self.claims)

    def pick(self, image: np.ndarray | None) -> tuple[Path, str]:
        """(the model file for `image`, the route: as X-Model-Route says it)."""
        return (self.default, REQUESTED) if self.requested else pick(image, self.claims, self.default)

    @property
    def files(self) -> list[Path]:
        """Every file an image may go to: the default first."""
        return list(dict.fromkeys([self.default, *(f for files in self.claims.values() for f in files)]))


def precision(card: ModelCard) -> str:
    """INT8 when the name says so (`.int8`) or the card says it was quantised."""
    quantised = "quantiz" in str((card.derived or {}).get("how", ""))
    return INT8 if card.name.endswith(".int8") or quantised else FLOAT32


def model_files(folder: Path) -> list[Path]:
    """The `*.onnx` files of `folder`, hidden ones (editors' and copies' temporaries) left out."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".onnx") and e.is_file())
    except FileNotFoundError:
        return []
    return [Path(folder) / n for n in names if not n.startswith(".")]


def resolve(model: str | Path, folder: Path) -> Path:
    """`--model`: a path to an ONNX file, or the name on the card of one in `folder` (the
    service's names). A name no card has: UnknownModel with the names there are."""
    path = Path(model)
    if path.suffix == ".onnx" or path.is_file() or len(path.parts) > 1:
        return path
    named: dict[str, Path] = {}
    for file in model_files(folder):
        try:
            named.setdefault(cards.parse(cards.card_path(file)).name, file)
        except CardError:
            continue
    if str(model) not in named:
        raise UnknownModel(str(model), named)
    return named[str(model)]


def rss_bytes() -> int | None:
    """This process's resident memory, from /proc/self/statm (Linux); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _stat(path: Path) -> Stat:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size  # an atomic replace is a new inode, whatever its time


@dataclass(frozen=True)
class Entry:
    """One ONNX file: what serves from it, and why the file now on disk does not, if so."""

    file: Path
    signature: Signature
    card: ModelCard | None = None  # the card on disk, when it parses
    segmenter: Segmenter | None = None  # the file's model, or the previous good version of it
    error: str | None = None  # why the file on disk is refused
    memory: int | None = None  # RSS growth (bytes) while `segmenter` was loaded and warmed up
    waits_for: str | None = None  # refused: another file serves under the name its card claims

    @property
    def name(self) -> str:
        card = self.segmenter.card if self.segmenter is not None else self.card
        return card.name if card is not None else self.file.stem


@dataclass(frozen=True)
class Serving:
    """What requests see, swapped whole by a refresh."""

    models: dict[str, Segmenter] = field(default_factory=dict)
    default: Segmenter | None = None
    claims: dict[str, list[Segmenter]] = field(default_factory=dict)  # modality → claimants, preferred first


class Registry:
    """The models of `folder` plus the `default` file (which may lie elsewhere). `load` makes
    a Segmenter of a path (the service passes its thread settings); `preloaded`: the
    default's, already loaded by the caller, used instead of loading it again."""

    def __init__(self, folder: Path, default: Path, load: Callable[[Path], Segmenter] = Segmenter,
                 preloaded: Segmenter | None = None) -> None:
        self.folder = Path(os.path.abspath(folder))
        self.default_file = Path(os.path.abspath(default))
        self._load_model = load
        self._preloaded = (preloaded, None) if preloaded is not None else None
        self._lock = threading.Lock()
        self._entries: dict[Path, Entry] = {}
        self._signatures: dict[Path, Signature] = {}
        self.serving = Serving()

    # ------------------------------------------------------------------ what requests use

    @property
    def default(self) -> Segmenter:
        """The default model; CardError with the reason when it never loaded."""
        if self.serving.default is None:
            entry = self._entries.get(self.default_file)
            raise CardError(entry.error if entry and entry.error else f"model not loaded: {self.default_file}")
        return self.serving.default

    def get(self, name: str) -> Segmenter:
        serving = self.serving
        if name in serving.models:
            return serving.models[name]
        why = next((e.error for e in self._entries.values() if e.name == name and e.error), None)
        raise UnknownModel(name, serving.models, why)

    def route(self, image: np.ndarray) -> Choice:
        """The model for an image sent without `model=` (`pick`)."""
        serving = self.serving
        return Choice(*pick(image, serving.claims, serving.default or self.default))

    def routes(self) -> Routes:
        """What `route` decides now, as files; CardError when the default never loaded."""
        serving = self.serving
        return Routes((serving.default or self.default).model_path,
                      {kind: tuple(s.model_path for s in claimants) for kind, claimants in serving.claims.items()})

    # ------------------------------------------------------------------ keeping up with the folder

    def _scan(self) -> dict[Path, Signature]:
        files = {*model_files(self.folder), self.default_file}
        return {f: (_stat(f), _stat(cards.card_path(f))) for f in files}

    def stale(self) -> bool:
        """Whether a file changed since the last refresh: stats only, cheap enough per request."""
        return self._scan() != self._signatures

    def refresh(self) -> bool:
        """(Re)load what changed, drop what vanished (the default's last good version stays);
        whether anything changed. Thread-safe: a second caller waits and finds nothing to do."""
        with self._lock:
            seen = self._scan()
            if seen == self._signatures:
                return False
            for gone in sorted(self._entries.keys() - seen.keys()):
                log.info("model %s: %s removed, no longer served", self._entries[gone].name, gone)
            entries = {f: e for f, e in self._entries.items() if f in seen}
            order = sorted(seen, key=lambda f: (f != self.default_file, f.name))  # the default first
            for f in order:
                if f not in entries or entries[f].signature != seen[f]:
                    entries[f] = self._load(f, seen[f], entries.get(f), entries)
            for f in order:  # refused for a name clash, and that name is free now
                waits = entries[f].waits_for
                if waits and not any(e.segmenter and e.segmenter.card.name == waits for e in entries.values()):
                    entries[f] = self._load(f, seen[f], entries[f], entries)
            self._entries, self._signatures = entries, seen
            self.serving = self._serving(entries)
            return True

    def _load(self, file: Path, signature: Signature, before: Entry | None, entries: dict[Path, Entry]) -> Entry:
        previous = before.segmenter if before is not None else None
        card = None
        try:
            card = cards.parse(cards.card_path(file))  # the name first: no session for a clash
            holder = next((e.file for e in entries.values() if e.file != file and e.segmenter is not None
                           and e.segmenter.card.name == card.name), None)
            if holder is not None:
                raise _Clash(f"name {card.name!r} is already served from {holder.name}")
            segmenter, memory = self._fresh(file)
        except Exception as exc:  # CardError, onnxruntime's own errors, a warm-up that fails: never a crash
            reason = str(exc) if isinstance(exc, CardError) else f"cannot load {file}: {type(exc).__name__}: {exc}"
            if previous is not None:
                reason += f"; {previous.card.name} {previous.card.version} keeps serving"
            log.warning("model file %s refused: %s", file, reason)
            return Entry(file, signature, card, previous, reason, before.memory if before is not None else None,
                         waits_for=card.name if isinstance(exc, _Clash) and card is not None else None)
        log.info("model %s %s loaded from %s (%s)", segmenter.card.name, segmenter.card.version, file,
                 f"RSS +{memory / 2**20:.1f} MiB" if memory is not None else "RSS not measured")
        return Entry(file, signature, card, segmenter, memory=memory)

    def load_default(self) -> None:
        """Load the default now, raising what refuses it: start-up fails fast, in one line."""
        self._preloaded = self._fresh(self.default_file)

    def _fresh(self, file: Path) -> tuple[Segmenter, int | None]:
        """A new Segmenter of `file`, warmed up, and the RSS it added (None: not measured)."""
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is not None and preloaded[0].model_path.resolve() == file.resolve():
            preloaded[0].warm_up()
            return preloaded
        before = rss_bytes()
        segmenter = self._load_model(file)
        segmenter.warm_up()
        after = rss_bytes()
        return segmenter, (after - before if before is not None and after is not None else None)

    def _serving(self, entries: dict[Path, Entry]) -> Serving:
        default_entry = entries.get(self.default_file)
        default = default_entry.segmenter if default_entry is not None else None
        models = {e.segmenter.card.name: e.segmenter for e in entries.values() if e.segmenter is not None}
        same = precision(default.card) if default is not None else INT8

        def preference(segmenter: Segmenter) -> tuple[bool, str]:
            return precision(segmenter.card) != same, segmenter.card.name

        claims: dict[str, list[Segmenter]] = {}
        for segmenter in sorted(models.values(), key=preference):
            for kind in segmenter.card.modalities or ():
                claims.setdefault(kind, []).append(segmenter)
        return Serving(models, default, claims)

    # ------------------------------------------------------------------ GET /models

    def entries(self) -> list[dict[str, Any]]:
        """Every file, loaded or refused, by name: what GET /models lists."""
        listed = sorted(self._entries.values(), key=lambda e: (e.name, e.file.name))
        return [describe(e, e.file == self.default_file) for e in listed]


def describe(entry: Entry, default: bool) -> dict[str, Any]:
    """One entry of GET /models: the model serving from the file (else the card on disk)."""
    served = entry.segmenter
    card = served.card if served is not None else entry.card
    onnx = entry.signature[0]
    out: dict[str, Any] = {
        "name": entry.name, "file": entry.file.name, "default": default,
        "status": "refused" if entry.error else "loaded", "reason": entry.error, "serving": served is not None,
        "bytes": onnx[2] if onnx else None, "memory_bytes": entry.memory if served is not None else None,
    }
    if card is not None:
        out |= {"version": card.version, "sha256": card.sha256, "precision": precision(card),
                "modalities": card.modalities or [], "metrics": headline(card.metrics)}
    return out


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """A card's validation scores: DSB2018 score and AP@0.5, overall and per modality."""
    scores = metrics.get("model") or {}
    out = {"split": metrics.get("split"), "images": metrics.get("images"),
           "dsb_score": scores.get("dsb_score"), "ap_50": scores.get("ap_50")}
    by = {kind: {k: row.get(k) for k in ("images", "dsb_score", "ap_50")}
          for kind, row in (metrics.get("by_modality") or {}).items() if kind != "all"}
    return out | ({"by_modality": by} if by else {})
