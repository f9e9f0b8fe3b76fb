//! Every tuning constant of the process allocators in one place: how long
//! memory waits before it goes back to the OS, how much is cached, how
//! much the checking and reporting wrappers keep. Each says what it trades.
//! (Constants that define a format or a layout, such as the slice and
//! segment sizes or the size classes, stay with the code they shape.)

// ---------------------------------------------------------------- engine

/// How long a free slice, an empty page or a cached huge mapping waits
/// before it goes back to the OS (ms). Shorter returns memory sooner and
/// costs more `madvise` calls and page faults when it is wanted again.
pub const PURGE_DELAY_MS: u64 = 10;

/// How long a free slice of a segment stays resident (dirty) before it is
/// purged (ms). Longer than [`PURGE_DELAY_MS`]: a program that frees and
/// reallocates spans (buffers grown by `realloc` move through them) finds
/// them still resident instead of faulting them in again; the price is
/// freed slices kept that much longer.
pub const SLICE_PURGE_DELAY_MS: u64 = 100;

/// Empty segments (4 MiB) kept for reuse, their dirty slices purged after
/// [`SEGMENT_CACHE_PURGE_MS`]; beyond this many they are unmapped. A
/// program that frees most of its memory between phases (a batch of
/// buffers grown, freed, grown again) finds it mapped and resident in the
/// next phase instead of faulting it in again (realloc growth to 1 MiB:
/// 94 000 page faults with 8 cached and the slice delay, 29 000 with 32
/// and this delay); the price is address space, and memory resident that
/// long after a phase ends.
pub const SEGMENT_CACHE: usize = 32;
/// How long the dirty slices of a cached empty segment stay resident
/// (ms, from the oldest one's free).
pub const SEGMENT_CACHE_PURGE_MS: u64 = 500;

/// Freed huge mappings kept for a request of about the same size, at most
/// this many...
pub const HUGE_CACHE_MAX: usize = 8;
/// ...holding at most this many bytes...
pub const HUGE_CACHE_BYTES: usize = 64 << 20;
/// ...each unmapped this many ms after it was freed, unless a huge
/// request took it. Longer than [`PURGE_DELAY_MS`]: a program that fills
/// or computes on a huge block for a while before it frees it and asks
/// for the next still finds the mapping (its pages resident); the price
/// is up to [`HUGE_CACHE_BYTES`] kept that long after the last huge free.
pub const HUGE_CACHE_DELAY_MS: u64 = 100;

/// Slow paths within which a class that lost an empty page to another
/// class's new span, and asks for a fresh page, counts as still in use
/// (a "regret": too many of them stop such stealing).
pub const STEAL_REGRET: u32 = 128;

/// Pages of a class's queue the allocation slow path looks at before it
/// extends a page that has blocks left to carve (the first it saw): a
/// queue of many pages with nothing free (adopted ones, say) costs this
/// much per slow path, not its length. Full pages it finds are floated
/// (unlinked) on the way: each is visited once per filling.
pub const PAGE_VISITS: u32 = 8;

/// Abandoned segments a slow path adopts at most, looking for a page of
/// the class it needs, before it sets up a fresh page: more reuses the
/// memory of exited threads sooner, and makes that slow path longer.
pub const ADOPT_VISITS: usize = 8;

/// Remote frees (of blocks another thread's page holds) are batched per
/// page in a per-thread buffer of this many slots (at most 64)...
pub const REMOTE_SLOTS: usize = 64;
/// ...and a page's chain is pushed with one CAS once it holds this many
/// blocks...
pub const REMOTE_BATCH: u32 = 32;
/// ...or this many bytes (blocks this large or larger are pushed alone).
/// Larger batches mean fewer CAS on the owner's page and more freed memory
/// waiting with a thread that only frees (up to slots x bytes).
pub const REMOTE_BATCH_BYTES: usize = 16 << 10;

/// Bytes mapped at a time for thread heaps (about 4.8 KB each).
pub const HEAP_CHUNK: usize = 64 * 1024;

// ------------------------------------------------------- process heaps

/// Requests of at least this many bytes get a mapping of their own (not
/// the strategy's region): less fragmentation of the regions, one `mmap`
/// per such block.
pub const PROCESS_HUGE_THRESHOLD: usize = 1 << 20;
/// Length of the first region mapped for a process heap; each next one
/// doubles...
pub const PROCESS_FIRST_REGION: usize = 4 << 20;
/// ...up to this length (so a heap has few regions: lookups walk them).
pub const PROCESS_MAX_REGION: usize = 1 << 30;

// -------------------------------------------------------------- wrappers

/// Check mode: freed blocks held back (poisoned) before they are really
/// freed, at most this many...
pub const QUARANTINE_BLOCKS: usize = 4096;
/// ...and at most this many bytes: more catches later writes after free,
/// at the price of memory.
pub const QUARANTINE_BYTES: usize = 16 << 20;
/// Check mode: bytes of a freed block poisoned (and verified when it
/// leaves the quarantine); the rest of a larger block is not.
pub const POISON_MAX: usize = 64 * 1024;

/// Leak reports: frames kept per allocation stack.
pub const LEAK_STACK_DEPTH: usize = 24;
/// Leak reports: distinct call sites per stripe (16 stripes).
pub const LEAK_SITES_PER_STRIPE: usize = 4096;

/// Profile: points kept on the memory-over-time chart; when full, pairs
/// are merged (their maxima kept) and sampling slows by half.
pub const PROFILE_SAMPLES: usize = 1024;

/// Statistics: operations a thread batches before it flushes them to the
/// shared counters (at most 127: deltas are bytes).
pub const STATS_BATCH_OPS: u32 = 64;

/// Check and leak wrappers' block tables: first capacity of each shard.
pub const TABLE_FIRST_CAP: usize = 512;

/// Trace: bytes of one stripe buffer (one chunk written at a time).
pub const TRACE_BUF: usize = 64 * 1024;
