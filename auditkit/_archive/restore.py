"""restore(): archived entries back into a stream, same IDs and fields, checked and resumable.

In order:

1. The archive is checked before anything is written: the manifest's hash chain, and every
   file it lists present with its SHA-256 and size (`check_offline`, the checks trim runs).
   Each file is hashed again as it is read, so the bytes restored are the bytes checked.
2. The target's entries inside the archived range are compared with the archive: an entry
   with the same ID and fields is kept, one with other fields, or one the archive lacks,
   refuses the restore before anything is written (never overwrite, never interleave).
3. Archived entries above the target's last ID are appended with XADD, in ID order. Killed
   half-way, the target holds a prefix of the archive, and a rerun goes on after it.
4. Archived entries at or below the target's last ID cannot be appended (Redis adds only
   after a stream's last ID). That happens when refilling the archived stream itself after
   a trim. The archive is then written to a scratch key in the same cluster slot (resumable
   like 3), the stream's live entries are copied after it, and one Lua script, atomic like
   any script, copies the entries added since, the consumer groups (last-delivered-id,
   entries-read, consumers, pending entries with their idle time and delivery count), the
   stream's counters (XSETID) and its TTL, and RENAMEs the scratch key over the stream.
   A producer's XADD lands before the script (and is copied) or after it (on the refilled
   stream, with a later ID): none is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import hiredis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
from redis.crc import key_slot

from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import ManifestEntry
from auditkit._archive.verify import check_offline
from auditkit._exceptions import ArchiveError, StreamNotFound, TargetExists
from auditkit._logging import logger
from auditkit._progress import progress_bar
from auditkit._redis.connection import Client, node_for, redis_errors, translate
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.text import key_bytes
from auditkit._redis.xinfo import StreamInfo, stream_info

__all__ = ["SCRATCH_SUFFIX", "restore_stream", "scratch_key"]

_log = logger(__name__)

SCRATCH_SUFFIX = ":auditkit-restore"
"""Ends the name of the key a refill builds the stream in before it replaces the stream."""

BATCH = 5_000
"""XADDs sent before their replies are read: enough to keep Redis busy, little to buffer."""

# Findings of check_offline that do not concern what the manifest lists: a Parquet file
# the manifest should list and does not is damage verify reports, but it does not make
# the listed files, each checked, wrong; restore writes only what the manifest lists.
_NOT_LISTED = {"file-unlisted"}


def restore_stream(
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    target: str,
    *,
    progress: bool | None = None,
) -> int:
    """`Archive.restore`: check the archive, then write what the target lacks; the count."""
    entries = layout.entries(stream)
    if not entries:
        raise ArchiveError(
            f"The archive in {layout.storage.url} holds no entry of `{stream}` (no manifest, "
            "or none that can be read). Check the stream's name and the archive's location; "
            "verify the archive if it should hold the stream.",
            stream=stream,
        )
    _check_archive(layout, stream)
    total = sum(e.rows for e in entries)
    with progress_bar(total=total, desc=f"restore {stream}", enabled=progress) as bar:
        info = _info_or_none(client, target)
        plan = _Plan(layout, client, stream, target, entries, info, bar)
        if plan.append():
            _log.info("restored %d entries of %s into %s", plan.written, stream, target)
            return plan.written
        if target != stream:
            assert info is not None and plan.first_missing is not None
            raise TargetExists(
                f"`{target}` already exists and ends at {info.last_generated_id}, past "
                f"archived entries it lacks (the first {plan.first_missing}); Redis adds "
                "entries only after a stream's last ID. Nothing was written. Restore into a "
                f"new key, or into `{stream}` itself to refill it.",
                stream=target,
            )
        _refill(layout, client, stream, entries, bar)
    # What the stream lacked, whatever part of it an earlier, killed run had put in place.
    written = total - plan.present
    _log.info("refilled %s with %d archived entries", stream, written)
    return written


def scratch_key(stream: str) -> str:
    """The key a refill of `stream` builds in: same cluster slot, named after the stream."""
    hashed = _hashed_part(stream)
    if hashed != stream:  # the stream has a hash tag; appending keeps it the first one
        return stream + SCRATCH_SUFFIX
    if "}" not in stream:
        return "{" + stream + "}" + SCRATCH_SUFFIX
    # A `}` would end the tag early: a tag of the same slot, found by trying.
    slot = key_slot(key_bytes(stream))
    n = 0
    while key_slot(f"r{n}".encode()) != slot:
        n += 1
    return "{r" + str(n) + "}" + SCRATCH_SUFFIX + ":" + stream


# ---- the archive, checked --------------------------------------------------------------


def _check_archive(layout: ArchiveLayout, stream: str) -> None:
    chain, files = layout.snapshot(stream)
    findings = check_offline(layout, stream, chain, files)
    findings = findings[~findings["check"].isin(_NOT_LISTED)]
    if not findings.empty:
        first = findings.iloc[0]
        raise ArchiveError(
            f"Refusing to restore `{stream}`: the archive in {layout.storage.url} does not "
            f"match its manifest ({first['check']}: {first['detail']}; {len(findings)} "
            "finding(s)). Nothing was written. Verify the archive for every finding, and put "
            "back the file from a copy of the archive.",
            stream=stream,
        )


def _archived_tables(layout: ArchiveLayout, entries: list[ManifestEntry]) -> Iterator[pa.Table]:
    """Each listed file's `id` and `fields`, from bytes hashed as they were read."""
    storage = layout.storage
    for entry in entries:
        data = storage.read_bytes(entry.file)
        if data is None:
            raise ArchiveError(
                f"{entry.file} disappeared from {storage.url} during the restore. Put it "
                "back and run the restore again: it goes on where it stopped.",
                stream=entry.stream,
            )
        # Checked again here: a file replaced since the check must not be restored.
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ArchiveError(
                f"{entry.file} changed during the restore: it no longer matches its SHA-256 "
                "in the manifest. Put back the file from a copy of the archive and run the "
                "restore again: it goes on where it stopped.",
                stream=entry.stream,
            )
        table = pq.read_table(pa.BufferReader(data), columns=["id", "fields"])
        yield table.combine_chunks()


# ---- appending ------------------------------------------------------------------------


class _Plan:
    """One pass over the archive: compare what the target holds, append what follows it."""

    def __init__(
        self,
        layout: ArchiveLayout,
        client: Client,
        stream: str,
        target: str,
        entries: list[ManifestEntry],
        info: StreamInfo | None,
        bar: Any,
    ) -> None:
        self.layout = layout
        self.client = client
        self.stream = stream
        self.target = target
        self.entries = entries
        self.last = info.last_generated_id if info is not None else None
        self.bar = bar
        self.written = 0
        self.present = 0
        """Archived entries the target held already, with the same fields."""
        self.first_missing: StreamID | None = None
        """The first archived entry the target lacks below its last ID (needs a refill)."""
        self._held: Iterator[list[Any]] = iter(())
        self._head: list[Any] | None = None
        """The target's next entry not yet compared, `[id, [field, value, ...]]` (bytes)."""

    def append(self) -> bool:
        """Compare, then append; False when entries are missing below the target's end."""
        self._held = self._target_entries()
        self._head = next(self._held, None)
        writer: _Writer | None = None
        try:
            for entry, table in zip(
                self.entries, _archived_tables(self.layout, self.entries), strict=True
            ):
                ids = table.column("id").to_pylist()
                split = self._split(entry, ids)
                if split:
                    self._compare(ids[:split], table.column("fields").slice(0, split))
                    self.bar.update(split)
                if split == len(ids):
                    continue
                # Past the target's last ID: every entry it holds was compared.
                self._refuse_foreign()
                if self.first_missing is not None:
                    return False
                writer = writer or _Writer(self.client, self.target, self.stream)
                for start in range(split, len(ids), BATCH):
                    batch = table.slice(start, min(BATCH, len(ids) - start))
                    writer.xadd(batch)
                    self.written += batch.num_rows
                    self.bar.update(batch.num_rows)
            self._refuse_foreign()
            return self.first_missing is None
        finally:
            if writer is not None:
                writer.close()

    def _target_entries(self) -> Iterator[list[Any]]:
        """The target's entries up to the archive's last ID, in ID order, as XRANGE has them."""
        if self.last is None or not self.entries:
            return iter(())
        end = min(self.last, StreamID.parse(self.entries[-1].last_id))
        return (entry for page in iter_pages(self.client, self.target, end=end) for entry in page)

    def _split(self, entry: ManifestEntry, ids: list[str]) -> int:
        """How many of a file's entries are at or below the target's last ID."""
        if self.last is None or StreamID.parse(entry.first_id) > self.last:
            return 0
        if StreamID.parse(entry.last_id) <= self.last:
            return len(ids)
        low, high = 0, len(ids)
        while low < high:
            middle = (low + high) // 2
            if StreamID.parse(ids[middle]) <= self.last:
                low = middle + 1
            else:
                high = middle
        return low

    def _compare(self, ids: list[str], fields: pa.ChunkedArray) -> None:
        """Walk archived entries and the target's side by side (both in ID order)."""
        if self._head is None:  # the target holds nothing more: all of these are missing
            if ids and self.first_missing is None:
                self.first_missing = StreamID.parse(ids[0])
            return
        for entry_id, archived in zip(ids, fields.to_pylist(), strict=True):
            if self._head is None:
                self.first_missing = self.first_missing or StreamID.parse(entry_id)
                return
            # IDs as Redis writes them (no leading zeros): equal text is the same ID.
            if self._head[0] == entry_id.encode():
                if self._head[1] != archived:
                    raise TargetExists(
                        f"`{self.target}` already holds entry {entry_id} with other fields "
                        f"than the archive of `{self.stream}` has for it; restore never "
                        "overwrites an entry. Nothing was written. Restore into a new key, "
                        "or find out which of the two is right first.",
                        stream=self.target,
                    )
                self.present += 1
                self._head = next(self._held, None)
            elif StreamID.parse(self._head[0]) < StreamID.parse(entry_id):
                self._refuse_foreign()
            elif self.first_missing is None:
                self.first_missing = StreamID.parse(entry_id)

    def _refuse_foreign(self) -> None:
        """Refuse when the target holds an entry the archive lacks, inside its range."""
        if self._head is None:
            return
        raise TargetExists(
            f"`{self.target}` holds entry {self._head[0].decode()}, which the archive of "
            f"`{self.stream}` lacks though it lies inside the archived range (up to "
            f"{self.entries[-1].last_id}); restore never mixes other entries into the "
            "archive's. Nothing was written. Restore into a new key.",
            stream=self.target,
        )


class _Writer:
    """XADD of archived rows on a connection of its own, a batch at a time.

    A batch's commands are encoded with Arrow compute (the fields never become Python
    objects) and its replies parsed by hiredis straight from the socket: per entry, only
    Redis's own XADD work is left. Writes are never retried: a rerun of the restore goes
    on after the last entry Redis has.
    """

    def __init__(self, client: Client, key: str, stream: str) -> None:
        self.client = client
        self.key = key
        self.stream = stream
        node = node_for(client, key)
        options = dict(node.connection_pool.connection_kwargs)
        options["decode_responses"] = False
        self.connection = node.connection_pool.connection_class(**options)
        raw = key_bytes(key)
        self.prefix = b"\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$" % (len(raw), raw)

    def xadd(self, table: pa.Table) -> None:
        """XADD of the rows of a table with columns `id` and `fields`."""
        ids = table.column("id")
        refused = self._send(_xadd_commands(self.prefix, table), table.num_rows)
        if refused is not None:
            self._refused(ids[refused[0]].as_py(), refused[1])

    def xadd_raw(self, page: list[Any]) -> None:
        """XADD of entries as XRANGE returned them."""
        commands = [("XADD", self.key, entry_id, *flat) for entry_id, flat in page]
        refused = self._send(b"".join(self.connection.pack_commands(commands)), len(page))
        if refused is not None:
            self._refused(page[refused[0]][0].decode(), refused[1])

    def _send(self, data: bytes, count: int) -> tuple[int, Exception] | None:
        """Send `count` commands; the first refused one (its position and error), if any."""
        refused: tuple[int, Exception] | None = None
        try:
            self.connection.send_packed_command([data])  # connects (AUTH, SELECT) first
            sock = self.connection._sock
            assert sock is not None
            reader = hiredis.Reader()
            got = 0
            while got < count:
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    raise redis.ConnectionError("Connection closed by server.")
                reader.feed(chunk)
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError) and refused is None:
                        refused = (got, reply)
                    got += 1
        except (OSError, redis.RedisError) as exc:
            self.connection.disconnect()
            error = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(str(exc))
            raise translate(error, self.client, stream=self.key, command="XADD") from exc
        return refused

    def _refused(self, entry_id: str, error: Exception) -> None:
        if "equal or smaller" in str(error):
            raise ArchiveError(
                f"`{self.key}` refused archived entry {entry_id}: it received an entry "
                "with a later ID while the restore ran. Run the restore again to see what "
                "it holds now.",
                stream=self.stream,
            ) from error
        refusal = redis.ResponseError(str(error))
        raise translate(refusal, self.client, stream=self.key, command="XADD") from error

    def close(self) -> None:
        self.connection.disconnect()


_READ_SIZE = 1 << 16


def _xadd_commands(prefix: bytes, table: pa.Table) -> bytes:
    """The RESP encoding of `XADD <key> <id> <field> <value> ...` for every row."""
    ids = pc.cast(table.column("id"), pa.binary()).combine_chunks()
    fields = table.column("fields").combine_chunks()
    values = fields.flatten()
    items = pc.binary_join_element_wise(
        b"$", _digits(pc.binary_length(values)), b"\r\n", values, b"\r\n", b""
    )
    offsets = pc.subtract(fields.offsets, fields.offsets[0])
    bodies = pc.binary_join(pa.ListArray.from_arrays(offsets, items), b"")
    argc = _digits(pc.add(pc.list_value_length(fields), 3))
    commands = pc.binary_join_element_wise(
        b"*", argc, prefix, _digits(pc.binary_length(ids)), b"\r\n", ids, b"\r\n", bodies, b""
    )
    return _joined(commands)


def _digits(numbers: pa.Array) -> pa.Array:
    """Integers as their decimal digits, binary."""
    return pc.cast(pc.cast(numbers, pa.string()), pa.binary())


def _joined(array: pa.Array) -> bytes:
    """The values of a binary array without nulls, one after another."""
    _, offsets, values = array.buffers()
    bounds = pa.Array.from_buffers(pa.int32(), len(array) + 1, [None, offsets], offset=array.offset)
    start, end = bounds[0].as_py(), bounds[len(array)].as_py()
    data: bytes = values.slice(start, end - start).to_pybytes()
    return data


# ---- refilling the stream itself ---------------------------------------------------------


def _refill(
    layout: ArchiveLayout,
    client: Client,
    stream: str,
    entries: list[ManifestEntry],
    bar: Any,
) -> None:
    """Build archive + live entries in the scratch key, then swap it in atomically."""
    scratch = scratch_key(stream)
    bar.reset(total=sum(e.rows for e in entries))
    plan = _Plan(layout, client, stream, scratch, entries, _info_or_none(client, scratch), bar)
    if not plan.append():
        raise TargetExists(
            f"`{scratch}`, the key an earlier refill of `{stream}` built in, lacks archived "
            f"entry {plan.first_missing}: it is not a refill's. Delete it (or rename it) "
            "and run the restore again.",
            stream=scratch,
        )
    horizon = StreamID.parse(entries[-1].last_id)
    copied = _info_or_none(client, scratch)
    after = max(horizon, copied.last_generated_id) if copied is not None else horizon
    # The live entries above the archive are copied outside the script, page by page, so
    # that the script, which blocks the server, copies only what producers add meanwhile.
    writer = _Writer(client, scratch, stream)
    try:
        for page in iter_pages(client, stream, start=after.next()):
            writer.xadd_raw(page)
            after = StreamID.parse(page[-1][0])
    finally:
        writer.close()
    with redis_errors(client, stream=stream, command="EVAL (restore swap)"):
        reply = client.eval(_SWAP, 2, stream, scratch, str(after))
    late, lost = int(reply[0]), int(reply[1])
    if lost:
        _log.warning(
            "%s: %d pending entries of its consumer groups name entries neither live nor "
            "archived; Redis dropped them from the groups' pending lists",
            stream,
            lost,
        )
    _log.info("%s: %d entries added during the refill were copied", stream, late)


def _info_or_none(client: Client, key: str) -> StreamInfo | None:
    try:
        return stream_info(client, key)
    except StreamNotFound:
        return None


def _hashed_part(key: str) -> str:
    """The part of `key` Redis Cluster hashes: its hash tag, or all of it."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


# KEYS[1] the stream, KEYS[2] the scratch key (archive + live entries up to ARGV[1]).
# Returns {entries copied here, pending entries that named no entry and were dropped}.
_SWAP = """
local stream, scratch = KEYS[1], KEYS[2]
local function map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if #ams ~= #bms then return #ams < #bms end
  if ams ~= bms then return ams < bms end
  if #aseq ~= #bseq then return #aseq < #bseq end
  return aseq < bseq
end
if redis.call('EXISTS', stream) == 0 then
  redis.call('RENAME', scratch, stream)
  return {0, 0}
end
local copied, lost = 0, 0
local start = '(' .. ARGV[1]
while true do
  local page = redis.call('XRANGE', stream, start, '+', 'COUNT', 1000)
  if #page == 0 then break end
  for _, e in ipairs(page) do
    redis.call('XADD', scratch, e[1], unpack(e[2]))
  end
  copied = copied + #page
  start = '(' .. page[#page][1]
end
local info = map(redis.call('XINFO', 'STREAM', stream))
local mine = map(redis.call('XINFO', 'STREAM', scratch))
for _, raw in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local g = map(raw)
  local name = g['name']
  if g['entries-read'] then
    redis.call('XGROUP', 'CREATE', scratch, name, g['last-delivered-id'],
      'ENTRIESREAD', string.format('%d', g['entries-read']))
  else
    redis.call('XGROUP', 'CREATE', scratch, name, g['last-delivered-id'])
  end
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, name)) do
    redis.call('XGROUP', 'CREATECONSUMER', scratch, name, map(c)['name'])
  end
  local from = '-'
  while true do
    local pending = redis.call('XPENDING', stream, name, from, '+', 1000)
    if #pending == 0 then break end
    for _, p in ipairs(pending) do
      local claimed = redis.call('XCLAIM', scratch, name, p[2], 0, p[1], 'IDLE', p[3],
        'RETRYCOUNT', p[4], 'FORCE', 'JUSTID')
      if #claimed == 0 then lost = lost + 1 end
    end
    from = '(' .. pending[#pending][1]
  end
end
local last = info['last-generated-id']
if before(last, mine['last-generated-id']) then last = mine['last-generated-id'] end
if info['entries-added'] then
  local added = math.max(info['entries-added'], mine['entries-added'])
  redis.call('XSETID', scratch, last, 'ENTRIESADDED', string.format('%d', added),
    'MAXDELETEDID', info['max-deleted-entry-id'])
else
  redis.call('XSETID', scratch, last)
end
local ttl = redis.call('PTTL', stream)
redis.call('RENAME', scratch, stream)
if ttl > 0 then redis.call('PEXPIRE', stream, ttl) end
return {copied, lost}
"""
