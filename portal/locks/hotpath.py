"""The access check's reads and writes as SQL written once per process (issue 14: 1,000 checks a second).

Measured on the 2-core machine (bench/locks.py, and per query in-process): compiling an ORM
query cost 0.6–1.2 ms of CPU, the query itself about 0.05 ms. The check's statements have a fixed
shape, so their text is built here once, from the models' own metadata (every concrete column:
a field added to a model is read and written here too), and rows come back as model instances
through Model.from_db with the fields' converters applied, as the ORM's iterator does. What they
do is the ORM's meaning, stated where the ORM states it:

- lock_by_key: the lock whose device key hashes to `digest`, with its device and site, and
  whether `ip` is blocked (access.blocked) — Lock.objects.select_related("device", "site");
- live_pins: a batch's live PINs by (lock, digest), rows locked (access.check_batch's lookup;
  pincode_live_unique);
- settle: a batch's AccessLog rows and the use counts it decided, in one statement;
- failure_counts: access.counted_failures and access.address_failures of several locks and
  addresses, each up to a limit.
tests/locks/test_access.py holds them to the ORM's answers.
"""

from functools import cache

from django.db import connection

from portal.facilities.models import Site
from portal.locks.models import AccessLog, BlockedAddress, Lock, PinCode
from telemetry.models import Device


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


class Columns:
    """A model's concrete columns under a table alias, for a SELECT list, and a row's slice of
    them back as an instance (None when its primary key is NULL: an outer join found nothing)."""

    def __init__(self, model, alias: str):
        self.model, self.alias = model, alias
        self.fields = list(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        self.sql = ", ".join(f"{alias}.{qn(field.column)}" for field in self.fields)
        self.table = f"{qn(model._meta.db_table)} {alias}"
        self.converters = []
        for position, field in enumerate(self.fields):
            column = field.get_col(alias)
            found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if found:
                self.converters.append((position, found, column))
        self.pk_position = self.names.index(model._meta.pk.attname)

    def __len__(self) -> int:
        return len(self.fields)

    def instance(self, values):
        if values[self.pk_position] is None:
            return None
        values = list(values)
        for position, converters, column in self.converters:
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        return self.model.from_db(connection.alias, self.names, values)


@cache
def lock_columns() -> tuple[Columns, Columns, Columns, str]:
    lock, device, site = Columns(Lock, "l"), Columns(Device, "d"), Columns(Site, "s")
    blocked = qn(BlockedAddress._meta.db_table)
    sql = (
        f"SELECT {lock.sql}, {device.sql}, {site.sql}, "
        f"EXISTS (SELECT 1 FROM {blocked} b WHERE b.ip = %s::inet AND b.blocked_until > %s) "
        f"FROM {lock.table} JOIN {device.table} ON d.id = l.device_id LEFT JOIN {site.table} ON s.id = l.site_id "
        "WHERE d.token_hash = %s LIMIT 1"
    )
    return lock, device, site, sql


def lock_by_key(digest: str, ip: str | None, at) -> Lock | None:
    """The lock of a device key's digest, its device and site loaded, and lock.address_blocked."""
    lock_part, device_part, site_part, sql = lock_columns()
    with connection.cursor() as cursor:
        cursor.execute(sql, [ip, at, digest])
        row = cursor.fetchone()
    if row is None:
        return None
    first, second = len(lock_part), len(lock_part) + len(device_part)
    lock = lock_part.instance(row[:first])
    lock._state.fields_cache["device"] = device_part.instance(row[first:second])
    lock._state.fields_cache["site"] = site_part.instance(row[second : second + len(site_part)])
    lock.address_blocked = bool(row[-1])
    return lock


@cache
def pin_columns() -> tuple[Columns, str]:
    pin = Columns(PinCode, "p")
    sql = (
        f"SELECT {pin.sql} FROM {pin.table} WHERE p.lock_id = ANY(%s) AND p.digest = ANY(%s) AND p.active "
        "ORDER BY p.id FOR UPDATE OF p"
    )
    return pin, sql


def live_pins(locks: dict, digests: list[str]) -> dict[tuple[int, str], PinCode]:
    """The live PINs of `digests` among the locks `locks` ({pk: Lock}), by (lock pk, digest), their
    rows locked until the transaction ends (in id order, so two batches never wait on each other
    in a circle): a batch's uses are decided on counts no one else changes meanwhile. A digest is
    keyed by its lock's pk (codes.pin_digest), so it names a code of that lock only."""
    if not digests:
        return {}
    columns, sql = pin_columns()
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(locks), list(set(digests))])
        rows = cursor.fetchall()
    found = {}
    for row in rows:
        pin = columns.instance(row)
        pin._state.fields_cache["lock"] = locks[pin.lock_id]
        found[(pin.lock_id, pin.digest)] = pin
    return found


@cache
def log_fields() -> list:
    return [field for field in AccessLog._meta.concrete_fields if not field.primary_key]


def settle(logs: list[AccessLog], used: list) -> None:
    """INSERT the `logs` rows (one multi-row statement, their ids back into log.pk, in order) and,
    in the same statement, write the use counts of the codes `used` (PinCodes and QrCodes whose
    uses and last_used_at the batch set; their rows were locked by live_pins or the QR lookup)."""
    if not logs and not used:
        return
    fields = log_fields()
    columns = ", ".join(qn(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params, parts = [], []
    for model in {type(code) for code in used}:
        codes = [code for code in used if type(code) is model]
        parts.append(
            f"{qn('u_' + model._meta.model_name)} AS (UPDATE {qn(model._meta.db_table)} t SET uses = v.uses, "
            "last_used_at = v.at FROM (SELECT unnest(%s::bigint[]) id, unnest(%s::int[]) uses, "
            "unnest(%s::timestamptz[]) at) v WHERE t.id = v.id RETURNING t.id)"
        )
        params += [[c.pk for c in codes], [c.uses for c in codes], [c.last_used_at for c in codes]]
    for log in logs:
        params += [field.get_db_prep_save(field.pre_save(log, True), connection) for field in fields]
    insert = (
        f"INSERT INTO {qn(AccessLog._meta.db_table)} ({columns}) VALUES {', '.join([row] * len(logs))} RETURNING id"
        if logs
        else "SELECT NULL::bigint WHERE false"
    )
    sql = (f"WITH {', '.join(parts)} " if parts else "") + insert
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [found[0] for found in cursor.fetchall()]
    for log, pk in zip(logs, ids, strict=True):
        log.pk = pk
        log._state.adding = False


def failure_counts(lock_sinces: dict[int, object], ips: list[str], ip_since, counted_methods, not_counted, limits):
    """Each lock's failures (methods `counted_methods`) since its own `lock_sinces[pk]` and each
    address's since `ip_since`, none of reasons `not_counted`, each counted up to its limit, in one
    query: ({lock pk: count}, {ip: count})."""
    table = qn(AccessLog._meta.db_table)
    lock_limit, ip_limit = limits
    sql = (
        "SELECT 'l', l.id::text, (SELECT count(*) FROM (SELECT 1 FROM "
        f"{table} a WHERE a.lock_id = l.id AND NOT a.success AND a.method = ANY(%s) AND a.at >= l.since "
        "AND NOT a.reason = ANY(%s) LIMIT %s) f) FROM unnest(%s::bigint[], %s::timestamptz[]) l(id, since) "
        "UNION ALL SELECT 'i', i.n::text, (SELECT count(*) FROM (SELECT 1 FROM "
        f"{table} a WHERE a.ip = i.ip AND NOT a.success AND a.at >= %s AND NOT a.reason = ANY(%s) LIMIT %s) g) "
        "FROM unnest(%s::inet[]) WITH ORDINALITY i(ip, n)"
    )
    params = [list(counted_methods), list(not_counted), lock_limit, list(lock_sinces), list(lock_sinces.values())]
    params += [ip_since, list(not_counted), ip_limit, list(ips)]
    on_lock, from_address = {}, {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, key, count in cursor.fetchall():
            if kind == "l":
                on_lock[int(key)] = count
            else:
                from_address[ips[int(key) - 1]] = count
    return on_lock, from_address
