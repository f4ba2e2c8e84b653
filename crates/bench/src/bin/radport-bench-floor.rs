//! The floor of durable ingest on this machine, without DICOM: how fast can *any* receiver
//! answer 0.5 MB messages over loopback TCP when it answers each only once it is on disk,
//! against one that answers once it is in the page cache (what storescp does)?
//!
//! Senders are threads that send a message (a 4-byte length, then the bytes in 128 KiB
//! writes, as dcmsend writes its PDUs), wait for a 1-byte answer and send the next. The
//! receiver is a thread per connection that reads the message and, by mode:
//!
//! - `cache`: writes it to a file of its own and closes it (storescp's way: no sync);
//! - `direct`: copies it into an aligned buffer, writes it with one `O_DIRECT` write at a
//!   reserved offset of a shared growing file, then waits for a group `fdatasync` that began
//!   after its write (one sync for every writer waiting: group commit);
//! - `stream`: the same, but writes each 128 KiB of the message as soon as it has arrived, so
//!   that the disk works while the rest arrives; only the tail and the sync follow the end.
//!
//! The shared file of `direct` and `stream` grows as messages go in, unless `FLOOR_SPACE`
//! says otherwise (`FLOOR_SPACE_MB` of it, default 2 048):
//!
//! - `grow` (the default): an empty file, every write appends;
//! - `written`: zeros written and synced before the senders start (every write overwrites);
//! - `allocated`: `fallocate`d (unwritten extents, the size set) before they start;
//! - `allocated-keep-size`: `fallocate`d without changing the size;
//! - `ahead`: a thread writes zeros ahead of the messages while they arrive, in 8 MiB pieces
//!   each synced, keeping `FLOOR_SPACE_MB` written ahead (a receiver that pre-writes while
//!   it takes instances).
//!
//! `FLOOR_SERIAL=1` makes `direct` write one message at a time (a lock around the write: one
//! writer, as radport's pack writer); `FLOOR_SERIAL=sync` holds the lock over its own
//! `fdatasync` too (no group commit).
//!
//! `FLOOR_TURN_US` and `FLOOR_CHUNK_US` make the senders pause before each message and after
//! each 128 KiB (microseconds; sleeps, so at least that), as slow as dcmsend is between
//! instances and while it reads and encodes one; with `FLOOR_BUSY=1` they spin instead,
//! using a processor meanwhile as dcmsend does.
//!
//! It prints messages per second, p50/p99 latency and the receiver threads' CPU per message.
//! Not part of the product; bench/floor.sh runs it in every mode.
//!
//! Usage: radport-bench-floor MODE SENDERS MESSAGES_PER_SENDER DIR [BYTES]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The alignment of direct writes (offsets, lengths and addresses).
const ALIGN: usize = 4096;
/// How much of a message `stream` writes at a time, and the size of each sender write.
const CHUNK: usize = 128 << 10;
/// The largest message taken.
const MAX_MESSAGE: usize = 8 << 20;

/// What the shared file's space is before a message's write lands in it (`FLOOR_SPACE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Space {
    Grow,
    Written,
    Allocated,
    AllocatedKeepSize,
    Ahead,
}

impl Space {
    fn from_env() -> anyhow::Result<(Space, u64)> {
        let space = match std::env::var("FLOOR_SPACE").as_deref() {
            Err(_) | Ok("grow") => Space::Grow,
            Ok("written") => Space::Written,
            Ok("allocated") => Space::Allocated,
            Ok("allocated-keep-size") => Space::AllocatedKeepSize,
            Ok("ahead") => Space::Ahead,
            Ok(other) => {
                bail!("FLOOR_SPACE={other}: grow, written, allocated, allocated-keep-size or ahead")
            }
        };
        let mb = match std::env::var("FLOOR_SPACE_MB") {
            Ok(v) => v.parse::<u64>().context("FLOOR_SPACE_MB")?,
            Err(_) => 2048,
        };
        Ok((space, mb << 20))
    }
}

/// How `direct` writes (`FLOOR_SERIAL`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Serial {
    /// Every connection writes when its message is in, then waits for a group sync.
    No,
    /// One write at a time, then the group sync.
    Writes,
    /// One write and its own sync at a time.
    WritesAndSyncs,
}

/// The pieces `Space::Written` and `Space::Ahead` write zeros in.
const ZEROS: usize = 8 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Cache,
    Direct,
    Stream,
}

/// A zeroed buffer whose address is a multiple of [`ALIGN`].
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> anyhow::Result<Self> {
        let layout = Layout::from_size_align(len.max(ALIGN), ALIGN)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            bail!("out of memory");
        }
        Ok(Self { ptr, layout })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: ptr points at layout.size() initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Group `fdatasync`: a caller returns once a sync that *began* after its call has ended.
struct GroupSync {
    file: File,
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    started: u64,
    completed: u64,
    running: bool,
}

impl GroupSync {
    fn sync(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let needed = state.started + 1;
        loop {
            if state.completed >= needed {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                state.started += 1;
                let generation = state.started;
                drop(state);
                let result = self.file.sync_data();
                state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.running = false;
                state.completed = generation;
                self.done.notify_all();
                result?;
            } else {
                state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

struct Receiver {
    mode: Mode,
    dir: PathBuf,
    pack: Option<Arc<GroupSync>>,
    next_offset: AtomicU64,
    cpu_nanos: AtomicU64,
    serial: Serial,
    one_writer: Mutex<()>,
}

fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Receiver {
    fn serve(&self, mut socket: TcpStream, connection: usize) -> anyhow::Result<()> {
        socket.set_nodelay(true)?;
        let mut buffer = Aligned::new(MAX_MESSAGE + ALIGN)?;
        let mut message = 0usize;
        let result = (|| -> anyhow::Result<()> {
            loop {
                let mut length = [0u8; 4];
                match socket.read_exact(&mut length) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                let length = u32::from_be_bytes(length) as usize;
                if length == 0 || length > MAX_MESSAGE {
                    bail!("message length {length} outside 1..={MAX_MESSAGE}");
                }
                let padded = length.next_multiple_of(ALIGN);
                let offset = match self.mode {
                    Mode::Cache => 0,
                    _ => self.next_offset.fetch_add(padded as u64, Ordering::Relaxed),
                };
                let bytes = buffer.bytes();
                let mut got = 0;
                let mut written = 0;
                while got < length {
                    let n = socket.read(&mut bytes[got..length])?;
                    if n == 0 {
                        bail!("connection ended inside a message");
                    }
                    got += n;
                    if self.mode == Mode::Stream {
                        let whole = (got / CHUNK) * CHUNK;
                        if whole > written {
                            let pack = self.pack.as_ref().context("no pack")?;
                            pack.file
                                .write_all_at(&bytes[written..whole], offset + written as u64)?;
                            written = whole;
                        }
                    }
                }
                match self.mode {
                    Mode::Cache => {
                        let path = self.dir.join(format!("c{connection}-{message}"));
                        let mut file = File::create(&path)?;
                        file.write_all(&bytes[..length])?;
                    }
                    Mode::Direct | Mode::Stream => {
                        bytes[length..padded].fill(0);
                        let pack = self.pack.as_ref().context("no pack")?;
                        let one = match self.serial {
                            Serial::No => None,
                            _ => Some(self.one_writer.lock().unwrap_or_else(|e| e.into_inner())),
                        };
                        pack.file
                            .write_all_at(&bytes[written..padded], offset + written as u64)?;
                        if self.serial == Serial::WritesAndSyncs {
                            pack.file.sync_data()?;
                        } else {
                            drop(one);
                            pack.sync()?;
                        }
                    }
                }
                socket.write_all(&[1])?;
                message += 1;
            }
        })();
        self.cpu_nanos
            .fetch_add(thread_cpu_nanos(), Ordering::Relaxed);
        result
    }
}

fn send(port: u16, messages: usize, payload: Arc<Vec<u8>>) -> anyhow::Result<Vec<Duration>> {
    let mut socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(messages);
    let length = u32::try_from(payload.len())?.to_be_bytes();
    let mut answer = [0u8; 1];
    // A sender as slow as dcmsend: a pause before each message (its turn) and after each
    // chunk (its reading and encoding).
    let pause = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_micros)
    };
    let (turn, per_chunk) = (pause("FLOOR_TURN_US"), pause("FLOOR_CHUNK_US"));
    // `FLOOR_BUSY=1`: the pauses spin instead of sleeping — a sender that uses the processor
    // meanwhile, as dcmsend reading and encoding its files does (0.2 ms of user time per
    // 0.5 MB instance here, besides the sending's system time).
    let busy = std::env::var("FLOOR_BUSY").is_ok_and(|v| v == "1");
    let wait = |pause: Duration| {
        if busy {
            let until = Instant::now() + pause;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(pause);
        }
    };
    for _ in 0..messages {
        let start = Instant::now();
        if let Some(turn) = turn {
            wait(turn);
        }
        socket.write_all(&length)?;
        for chunk in payload.chunks(CHUNK) {
            socket.write_all(chunk)?;
            if let Some(per_chunk) = per_chunk {
                wait(per_chunk);
            }
        }
        socket.read_exact(&mut answer)?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// Makes the file's space what `space` says before the senders start.
fn prepare_space(file: &File, space: Space, bytes: u64) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    match space {
        Space::Grow | Space::Ahead => {}
        Space::Written => {
            let mut zeros = Aligned::new(ZEROS)?;
            let zeros = &zeros.bytes()[..ZEROS];
            for at in (0..bytes).step_by(ZEROS) {
                file.write_all_at(zeros, at)?;
            }
            file.sync_all()?;
        }
        Space::Allocated | Space::AllocatedKeepSize => {
            let keep = if space == Space::AllocatedKeepSize {
                libc::FALLOC_FL_KEEP_SIZE
            } else {
                0
            };
            let len = libc::off_t::try_from(bytes)?;
            // SAFETY: a system call on a descriptor open for its duration.
            if unsafe { libc::fallocate(file.as_raw_fd(), keep, 0, len) } != 0 {
                bail!("fallocate: {}", std::io::Error::last_os_error());
            }
            file.sync_all()?;
        }
    }
    Ok(())
}

/// `Space::Ahead`: writes zeros ahead of the messages' offsets (from 4 MiB past the last
/// reserved, in pieces each synced) until `stop`, keeping `ahead` bytes written ahead; the
/// bytes it wrote.
fn write_ahead(receiver: &Receiver, ahead: u64, stop: &AtomicBool) -> anyhow::Result<u64> {
    let chunk = ZEROS as u64;
    let mut zeros = Aligned::new(ZEROS)?;
    let zeros = &zeros.bytes()[..ZEROS];
    let pack = receiver.pack.as_ref().context("no pack")?;
    let (mut filled, mut bytes) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let reserved = receiver.next_offset.load(Ordering::Relaxed) + (4 << 20);
        filled = filled.max(reserved.next_multiple_of(chunk));
        if filled >= reserved + ahead {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        pack.file.write_all_at(zeros, filled)?;
        pack.file.sync_data()?;
        filled += chunk;
        bytes += chunk;
    }
    Ok(bytes)
}

fn open_pack(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("floor.pack");
    let _ = std::fs::remove_file(&path);
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    match direct {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?),
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        bail!("usage: radport-bench-floor cache|direct|stream SENDERS MESSAGES_PER_SENDER DIR [BYTES]");
    }
    let mode = match args[1].as_str() {
        "cache" => Mode::Cache,
        "direct" => Mode::Direct,
        "stream" => Mode::Stream,
        other => bail!("unknown mode {other}"),
    };
    let senders: usize = args[2].parse()?;
    let messages: usize = args[3].parse()?;
    let dir = PathBuf::from(&args[4]).join(format!("floor-{}", std::process::id()));
    let bytes: usize = args.get(5).map_or(Ok(525_000), |b| b.parse())?;
    if bytes == 0 || bytes > MAX_MESSAGE {
        bail!("BYTES must be in 1..={MAX_MESSAGE}");
    }
    let (space, space_bytes) = Space::from_env()?;
    let serial = match std::env::var("FLOOR_SERIAL").as_deref() {
        Err(_) | Ok("0") => Serial::No,
        Ok("1") => Serial::Writes,
        Ok("sync") => Serial::WritesAndSyncs,
        Ok(other) => bail!("FLOOR_SERIAL={other}: 0, 1 or sync"),
    };
    std::fs::create_dir_all(&dir)?;
    let pack = match mode {
        Mode::Cache => None,
        _ => Some(Arc::new(GroupSync {
            file: {
                let file = open_pack(&dir)?;
                prepare_space(&file, space, space_bytes)?;
                file
            },
            state: Mutex::new(SyncState::default()),
            done: Condvar::new(),
        })),
    };
    let receiver = Arc::new(Receiver {
        mode,
        dir: dir.clone(),
        pack,
        next_offset: AtomicU64::new(0),
        cpu_nanos: AtomicU64::new(0),
        serial,
        one_writer: Mutex::new(()),
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let accepting = {
        let receiver = receiver.clone();
        std::thread::spawn(move || {
            let mut workers = Vec::new();
            for connection in 0..senders {
                let (socket, _) = listener.accept()?;
                let receiver = receiver.clone();
                workers.push(std::thread::spawn(move || {
                    receiver.serve(socket, connection)
                }));
            }
            for worker in workers {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a receiver panicked"))??;
            }
            anyhow::Ok(())
        })
    };
    // Incompressible, like pixel data; the same for every sender.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let payload: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let payload = Arc::new(payload);
    let stop = Arc::new(AtomicBool::new(false));
    let ahead = (space == Space::Ahead && mode != Mode::Cache).then(|| {
        let (receiver, stop) = (receiver.clone(), stop.clone());
        std::thread::spawn(move || write_ahead(&receiver, space_bytes, &stop))
    });
    let start = Instant::now();
    let clients: Vec<_> = (0..senders)
        .map(|_| {
            let payload = payload.clone();
            std::thread::spawn(move || send(port, messages, payload))
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(
            client
                .join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??,
        );
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let ahead_bytes = match ahead {
        Some(ahead) => ahead
            .join()
            .map_err(|_| anyhow::anyhow!("the zero writer panicked"))??,
        None => 0,
    };
    accepting
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
    latencies.sort();
    let total = latencies.len();
    let at = |q: f64| latencies[((total as f64 * q) as usize).min(total - 1)].as_secs_f64() * 1e3;
    println!(
        "{:6} senders {:2}  {:6} messages  {:7.0} msg/s  {:6.1} MB/s  p50 {:.3} ms  p99 {:.3} ms  receiver CPU {:.3} ms/msg",
        args[1],
        senders,
        total,
        total as f64 / elapsed.as_secs_f64(),
        (total * bytes) as f64 / elapsed.as_secs_f64() / 1e6,
        at(0.5),
        at(0.99),
        receiver.cpu_nanos.load(Ordering::Relaxed) as f64 / total as f64 / 1e6,
    );
    if ahead_bytes > 0 {
        eprintln!("zeros written ahead: {} MiB", ahead_bytes >> 20);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
