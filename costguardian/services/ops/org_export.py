"""An owner's export of the whole organization, built in the background.

The owner asks (`request_export`, audit-logged as `org.export_requested`); a
Huey task (`build`) writes a zip into CG_EXPORT_DIR (default
<instance>/exports): one JSON-lines file per table (services/team/data_export.py
names the tables and leaves secrets out) and `manifest.json` with the row
count of each file, the schema version and the time. Tables are read in keyset
chunks and written into the zip as they come, so memory stays bounded however
many usage events there are; each table is read as it stands when its turn
comes (ingest goes on meanwhile), and the manifest counts what was written.

One export runs at a time per organization (OrgExport.running_slot). When it
is done the requester hears about it in the app and by email (`notify`), with
a link to the download page, which only the organization's owners can open;
each download is audit-logged (`org.export_downloaded`). Archives are kept
EXPIRY (7 days); the periodic `cleanup` deletes older ones, fails jobs whose
builder stopped (a worker restarted mid-way) and removes orphan files (the
archives of deleted organizations). A newer archive replaces the older one.
"""
from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from datetime import timedelta, timezone
from pathlib import Path

from flask import current_app
from peewee import IntegrityError

from costguardian import clock, permissions, timefmt
from costguardian.extensions import db
from costguardian.models import Membership, Organization, OrgExport
from costguardian.models.exports import BUILDING, EXPIRED, FAILED, QUEUED, READY, RUNNING
from costguardian.services import queue
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted
from costguardian.services.team import audit, data_export

log = logging.getLogger(__name__)

FORMAT = "costguardian.org-export"
FORMAT_VERSION = 2  # 1 was the gzip JSON-lines stream served inside the request
EXPIRY = timedelta(days=7)
STALLED_AFTER = timedelta(minutes=30)  # a running job whose builder wrote nothing for this long is failed
CHUNK = 1000
PROGRESS_EVERY = 1.0  # seconds between two progress writes
_NAME = re.compile(r"^cg-export-(\d+)-[a-z0-9-]*-\d{8}T\d{6}Z\.zip(\.part)?$")


def directory(config=None) -> Path:
    """CG_EXPORT_DIR (relative paths against the project, like CG_BACKUP_DIR), else <instance>/exports."""
    from costguardian.config import PROJECT_ROOT

    config = config if config is not None else current_app.config
    return PROJECT_ROOT / (config.get("CG_EXPORT_DIR") or Path(current_app.instance_path) / "exports")


def _require_owner(org: Organization, actor: Actor) -> None:
    data_export.refuse_impersonation(actor)
    membership = Membership.of(actor.user, org) if actor.user is not None else None
    if membership is None or membership.role != permissions.OWNER:
        raise NotPermitted("Only an owner can export the whole organization.")


def running(org: Organization) -> OrgExport | None:
    return OrgExport.in_org(org).where(OrgExport.status.in_(RUNNING)).order_by(OrgExport.id.desc()).first()


def latest(org: Organization) -> OrgExport | None:
    return _current(OrgExport.latest(org))


def request_export(org: Organization, actor: Actor) -> tuple[OrgExport, bool]:
    """Start an export, or hand back the one already running: (job, started)."""
    _require_owner(org, actor)
    current = running(org)
    if current is not None and _stalled(current):
        _fail(current, "The export stopped before it finished (the worker restarted). Request a new one.")
        current = None
    if current is not None:
        return current, False
    try:
        with db.atomic():
            job = OrgExport.create(organization=org, requested_by=actor.user, running_slot=org.id)
            audit.record(actor, "org.export_requested", org=org, target=org, export_id=job.id)
    except IntegrityError:  # a second click that raced the first: show the first
        current = running(org)
        if current is None:
            raise
        return current, False
    try:
        queue.enqueue("build_org_export", job.id)
    except Exception as exc:  # no task will ever build it: free the organization's one slot
        log.exception("could not enqueue organization export %s", job.id)
        _fail(job, f"The export could not be queued ({_reason(exc)}). Request a new one.")
        raise
    return OrgExport.get_by_id(job.id), True


def for_owner(org: Organization, actor: Actor, export_id) -> OrgExport | None:
    """The organization's export with this id, for one of its owners (None: not this organization's)."""
    _require_owner(org, actor)
    return _current(OrgExport.get_in_org(org, export_id))


def _current(job: OrgExport | None) -> OrgExport | None:
    """The job as it stands now: a ready archive past its expiry (or whose file
    vanished) is expired at once, without waiting for the hourly cleanup."""
    if job is not None and job.status == READY and archive_path(job) is None:
        _expire(job)
        return OrgExport.get_by_id(job.id)
    return job


def archive_path(job: OrgExport) -> Path | None:
    """The ready archive's file, None once it expired or vanished."""
    if job.status != READY or not job.file_name:
        return None
    if job.expires_at is not None and job.expires_at <= clock.now():
        return None
    path = directory() / job.file_name
    return path if path.is_file() else None


def record_download(org: Organization, actor: Actor, job: OrgExport) -> None:
    audit.record(actor, "org.export_downloaded", org=org, target=org, export_id=job.id,
                 bytes=job.size_bytes or 0)


def download_name(org: Organization, job: OrgExport) -> str:
    return f"{org.slug}-export-{job.finished_at or job.created_at:%Y-%m-%d}.zip"


# --- the builder (a Huey task) ----------------------------------------------------------

def build(export_id: int) -> OrgExport | None:
    """Write the archive of a queued export; notify its requester either way."""
    job = OrgExport.get_or_none(OrgExport.id == export_id)
    if job is None or job.status != QUEUED:
        return job  # done already (a redelivered task), failed as stalled, or its organization deleted
    org = job.organization
    started = clock.now()
    name = f"cg-export-{job.id}-{org.slug}-{started:%Y%m%dT%H%M%SZ}.zip"
    claimed = (OrgExport.update(status=BUILDING, started_at=started, updated_at=started, file_name=name)
               .where(OrgExport.id == job.id, OrgExport.status == QUEUED).execute())
    if not claimed:
        return OrgExport.get_by_id(job.id)
    target = directory()
    part = target / (name + ".part")
    try:
        target.mkdir(parents=True, exist_ok=True)
        _write(job.id, org, part, started)
        os.replace(part, target / name)
    except Exception as exc:
        _remove(part)
        log.exception("organization export %s failed", job.id)
        job = _fail(OrgExport.get_by_id(job.id), _reason(exc))
        _tell(job, "org.export_failed")
        return job
    done = clock.now()
    finished = (OrgExport.update(status=READY, running_slot=None, finished_at=done, updated_at=done,
                                 expires_at=done + EXPIRY, size_bytes=(target / name).stat().st_size, current_table="")
                .where(OrgExport.id == job.id, OrgExport.status == BUILDING).execute())
    if not finished:  # declared stalled meanwhile (and maybe superseded by a new request): not ours to revive
        _remove(target / name)
        return OrgExport.get_by_id(job.id)
    _supersede(org, job.id)
    job = OrgExport.get_by_id(job.id)
    _tell(job, "org.export_ready")
    return job


def _write(export_id: int, org: Organization, part: Path, started) -> None:
    counts: dict[str, int] = {}
    rows_done, last_note = 0, clock.monotonic()
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for table in data_export.org_tables(org):
            count, lines = 0, []
            with archive.open(f"{table.name}.jsonl", "w", force_zip64=True) as member:
                for row in table.rows(CHUNK):
                    lines.append(data_export.plain_row(row))
                    if len(lines) >= CHUNK:
                        member.write(("\n".join(lines) + "\n").encode())
                        count, rows_done, lines = count + len(lines), rows_done + len(lines), []
                        if clock.monotonic() - last_note >= PROGRESS_EVERY:
                            _progress(export_id, table.name, rows_done)
                            last_note = clock.monotonic()
                if lines:
                    member.write(("\n".join(lines) + "\n").encode())
                    count, rows_done = count + len(lines), rows_done + len(lines)
            counts[table.name] = count
            _progress(export_id, table.name, rows_done)
        archive.writestr("manifest.json", json.dumps(_manifest(org, started, counts), indent=2) + "\n")


def _manifest(org: Organization, started, counts: dict[str, int]) -> dict:
    from costguardian.services.platform import health

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": started.isoformat(timespec="seconds") + "Z",
        "finished_at": clock.now().isoformat(timespec="seconds") + "Z",
        "app_version": health.version(),
        "schema_version": _schema_version(),
        "organization": {"id": org.id, "slug": org.slug, "name": org.name},
        "tables": {name: {"file": f"{name}.jsonl", "rows": rows} for name, rows in counts.items()},
        "not_exported": sorted(data_export.NOT_EXPORTED.values()),
        "secrets": "never included: API key hashes, encrypted provider and admin keys, webhook signing secrets "
                   "and URL paths, invitation and domain-verification tokens",
    }


def _schema_version() -> str | None:
    row = db.execute_sql("SELECT name FROM schema_migration ORDER BY name DESC LIMIT 1").fetchone()
    return row[0] if row else None


def _progress(export_id: int, table: str, rows: int) -> None:
    (OrgExport.update(current_table=table, rows_done=rows, updated_at=clock.now())
     .where(OrgExport.id == export_id).execute())


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"The archive could not be written: {exc.strerror or exc}."
    return f"An unexpected error stopped the export ({type(exc).__name__}); the server's log has the details."


def _fail(job: OrgExport, reason: str) -> OrgExport:
    now = clock.now()
    (OrgExport.update(status=FAILED, running_slot=None, error=reason[:1000], finished_at=now, updated_at=now)
     .where(OrgExport.id == job.id).execute())
    if job.file_name:
        _remove(directory() / (job.file_name + ".part"))
    return OrgExport.get_by_id(job.id)


def _remove(path: Path) -> None:
    """Delete a file if it is there; a directory that is not there (or not one) is no error."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        log.warning("could not delete %s", path, exc_info=True)


def _stalled(job: OrgExport) -> bool:
    """A build with no progress for STALLED_AFTER, or a queued job no worker
    took in that time (its task was lost): either holds the slot for nothing."""
    return job.status in (BUILDING, QUEUED) and job.updated_at < clock.now() - STALLED_AFTER


def _supersede(org: Organization, newest_id: int) -> None:
    """Older ready archives go once a newer one is ready: one archive per organization on disk."""
    for older in OrgExport.in_org(org).where(OrgExport.status == READY, OrgExport.id < newest_id):
        _expire(older)


def _expire(job: OrgExport) -> None:
    if job.file_name:
        _remove(directory() / job.file_name)
    OrgExport.update(status=EXPIRED, updated_at=clock.now()).where(OrgExport.id == job.id).execute()


def _tell(job: OrgExport, event_type: str) -> None:
    """The requester (if still a member) in the app and by email; never webhooks (the link is private)."""
    from costguardian.services.notifications import notify

    if job.requested_by_id is None:
        return
    org = job.organization
    payload = {"export_id": job.id, "rows": f"{job.rows_done:,}", "size": _size(job.size_bytes or 0),
               "expires": timefmt.format_time(job.expires_at, org),
               "reason": job.error}
    try:
        notify.notify(org, event_type, payload, recipients=[job.requested_by_id], webhooks=False,
                      link=f"/settings/exports/{job.id}?org={org.slug}")
    except Exception:  # the archive is there either way; the settings page shows it
        log.exception("could not notify about organization export %s", job.id)


def _size(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


# --- the periodic cleanup -------------------------------------------------------------

def cleanup() -> dict[str, int]:
    """Expire archives past their 7 days, fail stalled jobs, delete orphan files."""
    now = clock.now()
    done = {"expired": 0, "stalled": 0, "orphans": 0}
    for job in OrgExport.select().where(OrgExport.status == READY, OrgExport.expires_at <= now):
        _expire(job)
        done["expired"] += 1
    for job in OrgExport.select().where(OrgExport.status.in_((BUILDING, QUEUED)),
                                        OrgExport.updated_at < now - STALLED_AFTER):
        _fail(job, "The export stopped before it finished (the worker restarted). Request a new one.")
        done["stalled"] += 1
    target = directory()
    if target.is_dir():
        kept = {(j.id, j.file_name) for j in OrgExport.select(OrgExport.id, OrgExport.file_name)
                .where(OrgExport.status.in_((READY, BUILDING)))}
        for path in target.iterdir():
            match = _NAME.match(path.name)
            if match is None or not path.is_file():
                continue  # not ours: never touched
            recent = path.stat().st_mtime > (now - STALLED_AFTER).replace(tzinfo=timezone.utc).timestamp()
            if (int(match.group(1)), path.name.removesuffix(".part")) not in kept and not recent:
                _remove(path)  # a file written lately may belong to a job claimed after `kept` was read
                done["orphans"] += 1
    return done
