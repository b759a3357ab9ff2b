"""The model bundle: the files a registered model version holds, and their sha256 manifest.

Layout of a bundle directory (an MLflow LightGBM-flavour model folder plus our JSON):

- ``model.lgb``: the churn booster in LightGBM's native text format;
- ``bundle.json``: feature list and categories, CLV parameters (``clv.kind``: a BG/NBD-family
  model or ``sbg``, the contractual model), risk-band thresholds,
  training window and metrics;
- ``clv_learned.json`` and ``clv_learned.<part>.lgb`` (only when the learned ranking CLV
  serves, :mod:`models.clv_learned`): its settings and total factors as JSON, and its three
  boosters (``buy``, ``purchases``, ``spend_if_buy``) in LightGBM's native text format;
- ``manifest.json``: sha256 of every other file in the folder, and of no other: a file in
  the folder that the manifest does not list makes the bundle invalid.

Reading verifies the manifest (against a digest recorded in the registry, when given) and
every file's sha256 *before* parsing anything; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from models.churn import ChurnModel
from models.clv import CLVModel
from models.clv_learned import KIND as LEARNED_KIND
from models.clv_learned import LearnedCLV
from models.contractual import KIND as CONTRACTUAL_KIND
from models.contractual import ContractualCLV

MODEL_FILE = "model.lgb"
META_FILE = "bundle.json"
MANIFEST_FILE = "manifest.json"
#: The learned ranking CLV's files: JSON meta, and one LightGBM text file per part.
LEARNED_PREFIX = "clv_learned"
LEARNED_META_FILE = f"{LEARNED_PREFIX}.json"
FORMAT_VERSION = 1
#: A bundle's CLV model: purchase counts and spend (BG/NBD family), or contractual (sBG).
AnyCLV = CLVModel | ContractualCLV


class BundleError(ValueError):
    """A bundle is incomplete, tampered with, or of an unknown format."""


@dataclass
class Bundle:
    """A churn model, an optional CLV model and what is needed to use them.

    ``meta`` holds ``horizon_days``, ``risk_thresholds`` (``{"medium": p, "high": p}``),
    ``training`` (window and cutoffs), ``metrics``, ``drivers`` (observed churn by the
    research-backed bands at the validation cutoff, :func:`training.drivers.churn_drivers`,
    plain JSON so the server shows it without pandas) and anything else worth keeping with
    the model; it must be JSON-serialisable.

    ``clv_learned``: the learned ranking CLV when training chose it over the BTYD model
    (docs/clv.md, "Which CLV model serves"); it needs ``clv``, the BTYD model, for its
    features, P(alive) and time profile.
    """

    churn: ChurnModel
    clv: AnyCLV | None
    meta: dict[str, Any] = field(default_factory=dict)
    clv_learned: LearnedCLV | None = None

    @property
    def clv_model(self) -> str | None:
        """Which CLV model serves ``clv``: ``"learned"``, the BTYD model's name
        (``"bgnbd"``, ``"nbd"``, ...), ``"sbg"`` (contractual), or ``None``."""
        if self.clv is None:
            return None
        if self.clv_learned is not None:
            return LEARNED_KIND
        return str(self.clv.model_)


def learned_file(part: str) -> str:
    """The bundle file of one part of the learned CLV (``clv_learned.<part>.lgb``)."""
    return f"{LEARNED_PREFIX}.{part}.lgb"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(directory: str | Path, bundle: Bundle) -> str:
    """Write the bundle files into ``directory`` (which may already hold MLflow's files) and a
    manifest covering every file there; returns the manifest's own sha256."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MODEL_FILE).write_text(bundle.churn.model_text(), encoding="utf-8")
    meta = {
        "format_version": FORMAT_VERSION,
        "churn": bundle.churn.to_dict(),
        "clv": bundle.clv.to_dict() if bundle.clv is not None else None,
        **bundle.meta,
    }
    (d / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    learned = bundle.clv_learned
    if learned is not None:
        learned_meta = json.dumps(learned.meta(), indent=2, sort_keys=True)
        (d / LEARNED_META_FILE).write_text(learned_meta, encoding="utf-8")
        for part, text in learned.booster_texts().items():
            (d / learned_file(part)).write_text(text, encoding="utf-8")
    manifest = {"files": {name: sha256_file(d / name) for name in bundle_files(d)}}
    (d / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return sha256_file(d / MANIFEST_FILE)


def _safe_name(name: object) -> str:
    """A manifest entry must be a plain relative path inside the bundle folder."""
    if not isinstance(name, str) or not name:
        raise BundleError("manifest lists a file with no name")
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
        raise BundleError(f"manifest lists an unsafe path {name!r}")
    return name


def verify_bundle(directory: str | Path, expected_manifest_sha256: str) -> dict[str, bytes]:
    """Check the manifest against the registered digest and every listed file against the
    manifest; returns the verified bytes of each file, so what was hashed is what is parsed."""
    d = Path(directory)
    manifest_path = d / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: no manifest; the bundle is incomplete")
    raw = manifest_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected_manifest_sha256:
        raise BundleError(f"{manifest_path}: sha256 differs from the registered one")
    try:
        files = json.loads(raw)["files"]
        entries = {_safe_name(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{manifest_path}: malformed manifest") from exc
    for required in (MODEL_FILE, META_FILE):
        if required not in entries:
            raise BundleError(f"{d}: manifest does not list {required}")
    verified: dict[str, bytes] = {}
    # the files this module parses: hashed from the bytes that are then parsed
    parsed = [MODEL_FILE, META_FILE, *(n for n in entries if n.startswith(LEARNED_PREFIX))]
    for name in parsed:
        path = d / name
        data = path.read_bytes() if path.is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != entries[name]:
            raise BundleError(f"{path}: missing or sha256 differs from the manifest")
        verified[name] = data
    for name, digest in entries.items():
        path = d / name
        if name not in verified and (not path.is_file() or sha256_file(path) != digest):
            raise BundleError(f"{path}: missing or sha256 differs from the manifest")
    # Exactly the listed files: a file slipped into the folder is refused, not ignored.
    extra = sorted(set(bundle_files(d)) - set(entries))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise BundleError(f"{d / extra[0]}{more}: not listed in the manifest; refusing the bundle")
    return verified


def bundle_files(directory: Path) -> list[str]:
    """The files of a bundle folder the manifest must list: every file but the manifest,
    as POSIX paths relative to the folder, sorted."""
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(directory).as_posix() != MANIFEST_FILE
    )


def _clv_from_dict(data: dict[str, Any]) -> AnyCLV:
    """The CLV model of ``bundle.json``, by its ``kind``."""
    if data.get("kind") == CONTRACTUAL_KIND:
        return ContractualCLV.from_dict(data)
    return CLVModel.from_dict(data)


def read_bundle(directory: str | Path, *, expected_manifest_sha256: str) -> Bundle:
    """Verify, then parse a bundle directory written by :func:`write_bundle`.

    ``expected_manifest_sha256`` is the digest recorded in the registry when the version was
    registered; without it a tampered folder could carry its own matching manifest.
    """
    d = Path(directory)
    verified = verify_bundle(d, expected_manifest_sha256)
    try:
        meta = json.loads(verified[META_FILE])
        if meta.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{d / META_FILE}: unknown format_version {meta.get('format_version')}"
            )
        churn = ChurnModel.from_text(verified[MODEL_FILE].decode("utf-8"), meta.pop("churn"))
        clv_meta = meta.pop("clv")
        clv = _clv_from_dict(clv_meta) if clv_meta is not None else None
        learned = _learned(d, verified)
    except BundleError:
        raise
    except Exception as exc:  # a verified but unparseable bundle: refuse it as a whole
        raise BundleError(f"{d}: bundle files do not parse ({type(exc).__name__})") from exc
    meta.pop("format_version")
    return Bundle(churn=churn, clv=clv, meta=meta, clv_learned=learned)


def _learned(d: Path, verified: dict[str, bytes]) -> LearnedCLV | None:
    """The learned CLV from its verified files, ``None`` when the bundle has none."""
    if LEARNED_META_FILE not in verified:
        return None
    meta = json.loads(verified[LEARNED_META_FILE])
    if meta.get("kind") != LEARNED_KIND:
        raise BundleError(f"{d / LEARNED_META_FILE}: unknown kind {meta.get('kind')!r}")
    texts = {}
    for part in meta.get("parts", []):
        name = learned_file(str(part))
        if name not in verified:
            raise BundleError(f"{d / name}: missing from the manifest")
        texts[str(part)] = verified[name].decode("utf-8")
    return LearnedCLV.from_parts(meta, texts)
