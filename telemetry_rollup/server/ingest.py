"""Pure policy: a validated rollup and the config -> the rows to store and the refusal count.

No I/O and no clock: the app calls :func:`plan` and hands the result to the store.
"""

from __future__ import annotations

from telemetry_rollup.server.config import Config
from telemetry_rollup.server.models import AnyRollup
from telemetry_rollup.server.store import OTHER_APP, Environment, Ingest, ReportRows


def plan(body: AnyRollup, config: Config) -> tuple[Ingest, int]:
    """Split each report's counters into stored and refused; return (ingest, refused).

    * App outside the allowlist: nothing of the request is stored but a one-way tag per
      report (under :data:`OTHER_APP`, so a resend is not counted twice) and
      ``app_not_allowed`` counts. The client's app name and machine id are never written.
    * App version below the minimum (or unknown when a minimum is set): tags and
      ``app_version_too_old`` counts only, under the app; no machine id, no environment.
    * Otherwise counters outside the app's list are dropped and counted as
      ``counter_not_allowed``; the rest are stored with the machine id and environment.

    ``refused`` counts counter entries (one per name per report), the number the client
    shows its user; it is the same for a first send and for a resend.
    """
    rule = config.rule_for(body.app)
    if rule is None or not rule.version_ok(body.app_version):
        reason = "app_not_allowed" if rule is None else "app_version_too_old"
        reports = [ReportRows(id=r.id, day=r.day, counts={}, refused={reason: len(r.counts)}) for r in body.reports]
        app = OTHER_APP if rule is None else body.app
        refused = sum(len(r.counts) for r in body.reports)
        return Ingest(app=app, machine_id=body.machine_id, env=None, reports=reports), refused
    refused = 0
    reports = []
    for report in body.reports:
        kept = {name: n for name, n in report.counts.items() if rule.allows_counter(name)}
        dropped = len(report.counts) - len(kept)
        refused += dropped
        reports.append(
            ReportRows(
                id=report.id,
                day=report.day,
                counts=kept,
                refused={"counter_not_allowed": dropped} if dropped else {},
            )
        )
    env = Environment(
        app_version=body.app_version,
        lib_version=body.lib_version,
        os=body.os,
        arch=body.arch,
        python=body.python,
        ci=body.ci,
    )
    return Ingest(app=body.app, machine_id=body.machine_id, env=env, reports=reports), refused
