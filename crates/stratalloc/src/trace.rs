//! The trace format: every allocator event of a process, compact, written
//! by the trace wrapper (`STRATALLOC_TRACE=path`) without allocating and read
//! back by `stratalloc replay` / `stratalloc viz`.
//!
//! # File layout
//!
//! A trace file is a sequence of **chunks**. Each writer (one per stripe of
//! threads, see `wrappers::trace`) fills a buffer and appends it as one
//! chunk with one `write(2)` to a file opened with `O_APPEND`, so chunks of
//! several processes (a program and the children it forks) interleave whole.
//!
//! ```text
//!   chunk  = header (32 bytes, little endian) + payload (payload_len bytes)
//!   header = "SATR" | version u8 (=1) | flags u8 (=0) | reserved u16
//!          | pid u32 | payload_len u32 | first_seq u64 | first_time_ns u64
//!   payload = event*
//!   event  = op u8 | dseq zz | dtime zz | thread uv | fields of the op
//!     op 1 malloc   : size uv | ptr uv
//!     op 2 calloc   : size uv | ptr uv
//!     op 3 memalign : size uv | log2(align) u8 | ptr uv
//!     op 4 realloc  : size uv | old uv | new uv | back uv
//!     op 5 free     : ptr uv
//!   uv = unsigned LEB128 varint; zz = zig-zag signed varint
//! ```
//!
//! - `seq` is a process-wide event number (`dseq` is the difference from
//!   the previous event of the chunk, the first event's from `first_seq`);
//!   chunks are written out of order, so a reader sorts events by `seq`.
//!   A free takes its number *before* the block is handed back and an
//!   allocation *after* it is obtained, so an address is always freed
//!   before it is handed out again in `seq` order.
//! - `time` is nanoseconds since tracing started (monotonic clock);
//!   `thread` a small per-thread number (1, 2, …).
//! - A failed request has `ptr` (or `new`) 0.
//! - `realloc`'s `back` is `seq - free_seq`, where `free_seq` was taken
//!   before the call: from then on the old address may be reused by others.
//!
//! # Pointer ids
//!
//! The file holds addresses (what the writer can know without a lookup on
//! every free); [`Trace::from_bytes`] turns them into dense **ids** (0, 1,
//! 2, … in allocation order) by following the events in `seq` order. A
//! replay works on ids only, so it is deterministic whatever addresses the
//! traced run had. A free of an address the trace never saw allocated
//! (memory obtained before tracing started) is counted and skipped.
//!
//! A typical event is 10–16 bytes.

use std::collections::HashMap;
use std::fmt;

/// First four bytes of every chunk.
pub const MAGIC: [u8; 4] = *b"SATR";
/// Format version.
pub const VERSION: u8 = 1;
/// Bytes of a chunk header.
pub const HEADER_LEN: usize = 32;
/// Largest encoded event.
pub const MAX_EVENT: usize = 1 + 10 * 7 + 1;

/// Operation codes.
pub mod op {
    /// `malloc`.
    pub const MALLOC: u8 = 1;
    /// `calloc` (zeroed).
    pub const CALLOC: u8 = 2;
    /// Aligned allocation (`posix_memalign`, `aligned_alloc`, …).
    pub const MEMALIGN: u8 = 3;
    /// `realloc`.
    pub const REALLOC: u8 = 4;
    /// `free`.
    pub const FREE: u8 = 5;
}

/// One event as written (addresses, not ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// One of [`op`].
    pub op: u8,
    /// Process-wide event number.
    pub seq: u64,
    /// Nanoseconds since tracing started.
    pub time: u64,
    /// Small thread number.
    pub thread: u32,
    /// Requested size (not for free).
    pub size: u64,
    /// Requested alignment (memalign; otherwise 16).
    pub align: u64,
    /// The block: the result of an allocation, the argument of free, the
    /// new block of realloc (0 on failure).
    pub ptr: u64,
    /// realloc's old block.
    pub old: u64,
    /// realloc: the event number taken before the call.
    pub free_seq: u64,
}

fn put_uv(buf: &mut [u8], pos: &mut usize, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[*pos] = b;
            *pos += 1;
            return;
        }
        buf[*pos] = b | 0x80;
        *pos += 1;
    }
}

fn put_zz(buf: &mut [u8], pos: &mut usize, v: i64) {
    put_uv(buf, pos, ((v << 1) ^ (v >> 63)) as u64);
}

/// Encoder state of one chunk being filled in a caller's buffer. Never
/// allocates: safe inside `malloc`.
#[derive(Clone, Copy, Debug)]
pub struct ChunkState {
    len: usize,
    first_seq: u64,
    first_time: u64,
    prev_seq: u64,
    prev_time: u64,
    events: u32,
}

impl ChunkState {
    /// An empty chunk (room for the header is kept at the front).
    pub const fn new() -> Self {
        ChunkState {
            len: HEADER_LEN,
            first_seq: 0,
            first_time: 0,
            prev_seq: 0,
            prev_time: 0,
            events: 0,
        }
    }

    /// Events in the chunk.
    pub fn events(&self) -> u32 {
        self.events
    }

    /// Append `ev` to the chunk in `buf`; `false` (nothing written) when
    /// fewer than [`MAX_EVENT`] bytes are left.
    pub fn push(&mut self, buf: &mut [u8], ev: &RawEvent) -> bool {
        if buf.len() < self.len + MAX_EVENT {
            return false;
        }
        if self.events == 0 {
            self.first_seq = ev.seq;
            self.first_time = ev.time;
            self.prev_seq = ev.seq;
            self.prev_time = ev.time;
        }
        let mut p = self.len;
        buf[p] = ev.op;
        p += 1;
        put_zz(buf, &mut p, ev.seq.wrapping_sub(self.prev_seq) as i64);
        put_zz(buf, &mut p, ev.time.wrapping_sub(self.prev_time) as i64);
        put_uv(buf, &mut p, ev.thread as u64);
        match ev.op {
            op::MALLOC | op::CALLOC => {
                put_uv(buf, &mut p, ev.size);
                put_uv(buf, &mut p, ev.ptr);
            }
            op::MEMALIGN => {
                put_uv(buf, &mut p, ev.size);
                buf[p] = ev.align.max(1).trailing_zeros() as u8;
                p += 1;
                put_uv(buf, &mut p, ev.ptr);
            }
            op::REALLOC => {
                put_uv(buf, &mut p, ev.size);
                put_uv(buf, &mut p, ev.old);
                put_uv(buf, &mut p, ev.ptr);
                put_uv(buf, &mut p, ev.seq.wrapping_sub(ev.free_seq));
            }
            _ => put_uv(buf, &mut p, ev.ptr),
        }
        self.prev_seq = ev.seq;
        self.prev_time = ev.time;
        self.len = p;
        self.events += 1;
        true
    }

    /// Write the header for process `pid` and return the chunk's length
    /// (`buf[..len]` is the chunk; 0 if it holds no event). The state is
    /// reset for the next chunk.
    pub fn seal(&mut self, buf: &mut [u8], pid: u32) -> usize {
        if self.events == 0 {
            return 0;
        }
        let len = self.len;
        let h = &mut buf[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[5] = 0;
        h[6..8].copy_from_slice(&0u16.to_le_bytes());
        h[8..12].copy_from_slice(&pid.to_le_bytes());
        h[12..16].copy_from_slice(&((len - HEADER_LEN) as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_time.to_le_bytes());
        *self = ChunkState::new();
        len
    }
}

impl Default for ChunkState {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a trace could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// Byte offset in the file.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad trace at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for TraceError {}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    base: usize,
}

impl Cursor<'_> {
    fn err(&self, what: &'static str) -> TraceError {
        TraceError {
            offset: self.base + self.pos,
            what,
        }
    }
    fn u8(&mut self) -> Result<u8, TraceError> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or_else(|| self.err("event cut short"))?;
        self.pos += 1;
        Ok(v)
    }
    fn uv(&mut self) -> Result<u64, TraceError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }
    fn zz(&mut self) -> Result<i64, TraceError> {
        let u = self.uv()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }
}

/// Every raw event of every chunk in `bytes`, with the pid of its chunk,
/// in file order.
pub fn parse_raw(bytes: &[u8]) -> Result<Vec<(u32, RawEvent)>, TraceError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let err = |what| TraceError { offset: at, what };
        if bytes.len() - at < HEADER_LEN {
            return Err(err("chunk header cut short"));
        }
        let h = &bytes[at..at + HEADER_LEN];
        if h[0..4] != MAGIC {
            return Err(err("not a stratalloc trace chunk (bad magic)"));
        }
        if h[4] != VERSION {
            return Err(err("unsupported trace version"));
        }
        let le32 = |r: core::ops::Range<usize>| u32::from_le_bytes(h[r].try_into().unwrap());
        let le64 = |r: core::ops::Range<usize>| u64::from_le_bytes(h[r].try_into().unwrap());
        let pid = le32(8..12);
        let len = le32(12..16) as usize;
        let (mut seq, mut time) = (le64(16..24), le64(24..32));
        let start = at + HEADER_LEN;
        if bytes.len() - start < len {
            return Err(err("chunk payload cut short"));
        }
        let mut c = Cursor {
            b: &bytes[start..start + len],
            pos: 0,
            base: start,
        };
        while c.pos < len {
            let mut ev = RawEvent {
                op: c.u8()?,
                align: 16,
                ..RawEvent::default()
            };
            seq = seq.wrapping_add(c.zz()? as u64);
            time = time.wrapping_add(c.zz()? as u64);
            ev.seq = seq;
            ev.time = time;
            ev.thread = c.uv()? as u32;
            match ev.op {
                op::MALLOC | op::CALLOC => {
                    ev.size = c.uv()?;
                    ev.ptr = c.uv()?;
                }
                op::MEMALIGN => {
                    ev.size = c.uv()?;
                    let l = c.u8()?;
                    if l >= 64 {
                        return Err(c.err("alignment out of range"));
                    }
                    ev.align = 1 << l;
                    ev.ptr = c.uv()?;
                }
                op::REALLOC => {
                    ev.size = c.uv()?;
                    ev.old = c.uv()?;
                    ev.ptr = c.uv()?;
                    ev.free_seq = seq.wrapping_sub(c.uv()?);
                }
                op::FREE => ev.ptr = c.uv()?,
                _ => return Err(c.err("unknown operation code")),
            }
            out.push((pid, ev));
        }
        at = start + len;
    }
    Ok(out)
}

/// An operation on ids, ready to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate block `id`.
    Alloc {
        /// The new block's id.
        id: u32,
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for (16 unless aligned).
        align: u64,
        /// `calloc`.
        zeroed: bool,
    },
    /// Free block `id`.
    Free {
        /// The block.
        id: u32,
    },
    /// Resize block `old` to `size` bytes; the result is block `new`.
    Realloc {
        /// The block before.
        old: u32,
        /// The block after.
        new: u32,
        /// Bytes asked for.
        size: u64,
    },
    /// A request the traced program saw fail.
    Failed {
        /// Bytes asked for.
        size: u64,
    },
}

/// One replayable event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub op: Op,
    /// Thread number.
    pub thread: u32,
    /// Nanoseconds since tracing started.
    pub time: u64,
}

/// A trace of one process, on ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// The traced process.
    pub pid: u32,
    /// Events in order.
    pub events: Vec<Event>,
    /// Number of ids (blocks ever allocated).
    pub ids: u32,
    /// Distinct threads.
    pub threads: u32,
    /// Frees and reallocs of addresses the trace never saw allocated.
    pub unmatched: u64,
    /// Other processes present in the file (not included).
    pub other_pids: Vec<u32>,
}

impl Trace {
    /// Read the trace of process `pid` (if `None`, the process with the
    /// most events in the file).
    pub fn from_bytes(bytes: &[u8], pid: Option<u32>) -> Result<Trace, TraceError> {
        let raw = parse_raw(bytes)?;
        let busiest = || {
            let mut count: HashMap<u32, usize> = HashMap::new();
            for r in &raw {
                *count.entry(r.0).or_default() += 1;
            }
            count
                .into_iter()
                .max_by_key(|&(p, n)| (n, std::cmp::Reverse(p)))
                .map(|c| c.0)
        };
        let pid = match pid.or_else(busiest) {
            Some(p) => p,
            None => return Ok(Trace::default()),
        };
        let mut other: Vec<u32> = raw.iter().map(|r| r.0).filter(|&p| p != pid).collect();
        other.sort_unstable();
        other.dedup();
        let mut evs: Vec<RawEvent> = raw
            .into_iter()
            .filter(|r| r.0 == pid)
            .map(|r| r.1)
            .collect();
        // Keys: (seq, 0 = release of a realloc's old address, 1 = the event).
        let mut keys: Vec<(u64, u8, usize)> = Vec::with_capacity(evs.len() * 2);
        evs.sort_by_key(|e| e.seq);
        for (i, e) in evs.iter().enumerate() {
            keys.push((e.seq, 1, i));
            if e.op == op::REALLOC {
                keys.push((e.free_seq, 0, i));
            }
        }
        keys.sort_unstable();
        let mut t = Trace {
            pid,
            other_pids: other,
            ..Trace::default()
        };
        let mut live: HashMap<u64, u32> = HashMap::new();
        let mut pending: HashMap<usize, Option<u32>> = HashMap::new();
        let mut threads = std::collections::HashSet::new();
        for (_, kind, i) in keys {
            let e = &evs[i];
            if kind == 0 {
                pending.insert(i, live.remove(&e.old));
                continue;
            }
            threads.insert(e.thread);
            let op = match e.op {
                op::MALLOC | op::CALLOC | op::MEMALIGN => {
                    if e.ptr == 0 {
                        Some(Op::Failed { size: e.size })
                    } else {
                        let id = t.ids;
                        t.ids += 1;
                        live.insert(e.ptr, id);
                        Some(Op::Alloc {
                            id,
                            size: e.size,
                            align: e.align,
                            zeroed: e.op == op::CALLOC,
                        })
                    }
                }
                op::FREE => match live.remove(&e.ptr) {
                    Some(id) => Some(Op::Free { id }),
                    None => {
                        t.unmatched += 1;
                        None
                    }
                },
                _ => {
                    let old = pending.remove(&i).flatten();
                    match (old, e.ptr) {
                        (Some(old), 0) => {
                            live.insert(e.old, old);
                            Some(Op::Failed { size: e.size })
                        }
                        (None, 0) => Some(Op::Failed { size: e.size }),
                        (old, ptr) => {
                            let new = t.ids;
                            t.ids += 1;
                            live.insert(ptr, new);
                            match old {
                                Some(old) => Some(Op::Realloc {
                                    old,
                                    new,
                                    size: e.size,
                                }),
                                None => {
                                    t.unmatched += 1;
                                    Some(Op::Alloc {
                                        id: new,
                                        size: e.size,
                                        align: 16,
                                        zeroed: false,
                                    })
                                }
                            }
                        }
                    }
                }
            };
            if let Some(op) = op {
                t.events.push(Event {
                    op,
                    thread: e.thread,
                    time: e.time,
                });
            }
        }
        t.threads = threads.len() as u32;
        Ok(t)
    }

    /// Read a trace file.
    pub fn read(path: &std::path::Path, pid: Option<u32>) -> std::io::Result<Trace> {
        let bytes = std::fs::read(path)?;
        Trace::from_bytes(&bytes, pid)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Encode raw events as a trace file (one chunk per 64 KiB), as the
    /// wrapper would write them. For tests and synthetic workloads.
    pub fn encode(pid: u32, events: &[RawEvent]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut st = ChunkState::new();
        for e in events {
            if !st.push(&mut buf, e) {
                let n = st.seal(&mut buf, pid);
                out.extend_from_slice(&buf[..n]);
                assert!(st.push(&mut buf, e));
            }
        }
        let n = st.seal(&mut buf, pid);
        out.extend_from_slice(&buf[..n]);
        out
    }

    /// Bytes live after each event's prefix, at most: the peak of the sum
    /// of requested sizes.
    pub fn peak_requested(&self) -> u64 {
        self.peak().0
    }

    /// The peak of live requested bytes and the index of the event after
    /// which it is first reached (0 for an empty trace).
    pub fn peak(&self) -> (u64, usize) {
        let mut sizes: Vec<u64> = vec![0; self.ids as usize];
        let (mut cur, mut peak, mut at) = (0u64, 0u64, 0usize);
        for (i, e) in self.events.iter().enumerate() {
            match e.op {
                Op::Alloc { id, size, .. } => {
                    sizes[id as usize] = size;
                    cur += size;
                }
                Op::Free { id } => cur -= sizes[id as usize],
                Op::Realloc { old, new, size } => {
                    cur = cur - sizes[old as usize] + size;
                    sizes[new as usize] = size;
                }
                Op::Failed { .. } => {}
            }
            if cur > peak {
                (peak, at) = (cur, i);
            }
        }
        (peak, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: u8, seq: u64, size: u64, ptr: u64) -> RawEvent {
        RawEvent {
            op,
            seq,
            time: seq * 100,
            thread: 1 + (seq % 2) as u32,
            size,
            align: 16,
            ptr,
            ..RawEvent::default()
        }
    }

    #[test]
    fn raw_events_round_trip() {
        let mut evs = vec![
            ev(op::MALLOC, 1, 100, 0x7f00_0000_1000),
            ev(op::CALLOC, 2, 0, 0x7f00_0000_2000),
            RawEvent {
                align: 4096,
                ..ev(op::MEMALIGN, 3, 5000, 0x7f00_0001_0000)
            },
            RawEvent {
                old: 0x7f00_0000_1000,
                free_seq: 2,
                ..ev(op::REALLOC, 5, 1 << 40, 0x7f00_0002_0000)
            },
            ev(op::FREE, 4, 0, 0x7f00_0000_2000),
            ev(op::MALLOC, 6, u64::MAX, 0),
        ];
        for i in 0..20_000 {
            evs.push(ev(op::MALLOC, 10 + i, i, 0x1000 + i * 16));
        }
        let bytes = Trace::encode(42, &evs);
        assert!(bytes.len() > 2 * 64 * 1024, "several chunks");
        let back = parse_raw(&bytes).unwrap();
        assert_eq!(back.len(), evs.len());
        for ((pid, b), a) in back.iter().zip(&evs) {
            assert_eq!(*pid, 42);
            assert_eq!(b, a);
        }
        assert!(
            bytes.len() < evs.len() * 16,
            "compact: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn ids_follow_sequence_order_and_address_reuse() {
        // Written out of order (as stripes would): sorted by seq on read.
        let a = 0x5000;
        let evs = [
            ev(op::FREE, 3, 0, a),      // free id0
            ev(op::MALLOC, 1, 10, a),   // id0
            ev(op::MALLOC, 4, 20, a),   // id1 reuses the address
            ev(op::FREE, 2, 0, 0xdead), // never allocated: unmatched
            RawEvent {
                old: a,
                free_seq: 5,
                ..ev(op::REALLOC, 7, 30, 0x9000)
            }, // id1 -> id3
            ev(op::MALLOC, 6, 40, a),   // id2: got the address realloc released
            ev(op::FREE, 8, 0, 0x9000),
        ];
        let t = Trace::from_bytes(&Trace::encode(7, &evs), None).unwrap();
        let ops: Vec<Op> = t.events.iter().map(|e| e.op).collect();
        assert_eq!(
            ops,
            vec![
                Op::Alloc {
                    id: 0,
                    size: 10,
                    align: 16,
                    zeroed: false
                },
                Op::Free { id: 0 },
                Op::Alloc {
                    id: 1,
                    size: 20,
                    align: 16,
                    zeroed: false
                },
                Op::Alloc {
                    id: 2,
                    size: 40,
                    align: 16,
                    zeroed: false
                },
                Op::Realloc {
                    old: 1,
                    new: 3,
                    size: 30
                },
                Op::Free { id: 3 },
            ]
        );
        assert_eq!(t.unmatched, 1);
        assert_eq!(t.ids, 4);
        assert_eq!(t.peak_requested(), 70);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_raw(b"nonsense that is long enough to be a header....").is_err());
        let mut bytes = Trace::encode(1, &[ev(op::MALLOC, 1, 10, 0x100)]);
        bytes.truncate(bytes.len() - 1);
        assert!(parse_raw(&bytes).is_err());
        let mut bytes = Trace::encode(1, &[ev(op::MALLOC, 1, 10, 0x100)]);
        bytes[HEADER_LEN] = 99;
        assert!(parse_raw(&bytes).is_err());
        assert_eq!(parse_raw(&[]).unwrap(), vec![]);
    }
}
