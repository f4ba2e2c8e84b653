//! Durability proven from a receiver's system calls: reads the log of
//! `strace -f -qq -yy -xx -s 1048576 -o LOG` ([`STRACE_ARGS`]) and checks, for every
//! C-STORE-RSP with a success status the receiver wrote to a socket, that when the response's
//! first byte was written
//!
//! - the instance's data set (the bytes the sender sent) was in the *durable* content of some
//!   file — content as of the start of an `fsync`/`fdatasync` of that file that had completed —
//!   whose name, and every directory above it created during the trace, was durable too (an
//!   `fsync` of the parent directory had completed after the name was made), and
//! - its SOP Instance UID was in the durable content of a catalog file (a path the caller
//!   names, e.g. the SQLite database and its WAL), under the same rule for names.
//!
//! The model is the one a power cut follows: what a completed `fsync` covered survives, the
//! rest may not. The check knows nothing of how the receiver lays its data out (a file per
//! instance, a journal, a database), only what reached which file and what was synced; so it
//! holds any design to "C-STORE success ⇒ durable".
//!
//! Order: strace prints a call on one line when nothing else happened in between, else as an
//! `<unfinished ...>` line (its entry) and a `<... resumed>` line (its exit). The lines are in
//! the order the tracer saw the events, so "completed before" is "exit line before entry
//! line". A write counts from its exit, a sync covers what was written before its entry.
//!
//! Linux native AIO: a `IOCB_CMD_PWRITE` submitted with `io_submit` (its file, offset and
//! bytes are in the log: `aio_fildes`, `aio_offset`, `aio_buf`) counts as written from the exit
//! of the `io_getevents` that reaps its completion (matched by context and `aio_data`, which
//! must tell the writes in flight apart), with as many bytes as the event's `res` says. Any
//! other operation submitted on a file is not modelled, nor two writes in flight with the
//! same `aio_data`.
//!
//! `syncfs` is taken to sync every file and name of the trace (tests write to one file
//! system). Not modelled (the check fails rather than guesses when the receiver uses them on a
//! file it writes): `O_APPEND`, `O_TMPFILE`, `linkat`, memory-mapped writes,
//! `sync_file_range`, `sync`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// The strace arguments the log must be written with (then `-o LOG --` and the command).
pub const STRACE_ARGS: &[&str] = &[
    "-f",
    "-qq",
    "-yy",
    "-xx",
    "-s",
    "1048576",
    "-e",
    "signal=none",
    "-e",
    "trace=openat,open,creat,write,pwrite64,writev,pwritev,pwritev2,sendto,sendmsg,\
     fsync,fdatasync,sync_file_range,syncfs,sync,rename,renameat,renameat2,mkdir,mkdirat,\
     unlink,unlinkat,ftruncate,lseek,linkat,mmap,io_submit,io_getevents",
];

/// One system call of the log, with the lines of its entry and exit.
#[derive(Clone, Debug)]
struct Call {
    name: String,
    args: Vec<String>,
    /// The return value's text (`3<…>`, `-1 ENOENT (…)`).
    ret: String,
    entry: usize,
    exit: usize,
}

/// Decodes strace's `-xx` escapes (and the few others it prints) into bytes.
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 + 1);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'x' if i + 3 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap_or("");
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                    out.push(b'\\');
                    i += 1;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                b'"' | b'\\' => {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
                _ => {
                    out.push(b'\\');
                    i += 1;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Splits a call's argument text at its top-level commas.
fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if quoted {
            current.push(c);
            if c == '\\' && i + 1 < chars.len() {
                current.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                quoted = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' | '[' | '{' | '<' => depth += 1,
            // `->` inside a socket's description is not a closing bracket.
            '>' if i > 0 && chars[i - 1] == '-' => {}
            ')' | ']' | '}' | '>' => depth -= 1,
            ',' if depth == 0 => {
                args.push(current.trim().to_string());
                current.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_string());
    }
    args
}

/// Splits `name(args) = ret` into its parts (the text after the last top-level `) = `).
fn split_call(text: &str) -> Option<(String, String, String)> {
    let open = text.find('(')?;
    let name = text[..open].to_string();
    let rest = &text[open + 1..];
    // The arguments end at the `)` that closes the call: find it by depth, outside quotes.
    let mut depth = 0i32;
    let mut quoted = false;
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        if quoted {
            if c == '\\' {
                k += 2;
                continue;
            }
            if c == '"' {
                quoted = false;
            }
            k += 1;
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' | '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ')' if depth == 0 => {
                let args = rest[..pos].to_string();
                let ret = rest[pos + 1..]
                    .trim_start()
                    .strip_prefix('=')
                    .unwrap_or("")
                    .trim()
                    .to_string();
                return Some((name, args, ret));
            }
            ')' => depth -= 1,
            _ => {}
        }
        k += 1;
    }
    None
}

/// The calls of a log, each with its entry and exit line.
fn parse_calls(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // An unfinished call per thread: (entry line, text so far).
    let mut pending: HashMap<String, (usize, String)> = HashMap::new();
    for (line_no, line) in log.lines().enumerate() {
        let Some((pid, text)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let text = text.trim_start();
        if text.starts_with("+++") || text.starts_with("---") {
            continue;
        }
        let (entry, full) = if let Some(rest) = text.strip_prefix("<... ") {
            // `<... name resumed>rest`
            let Some(at) = rest.find(" resumed>") else {
                continue;
            };
            let Some((entry, start)) = pending.remove(pid) else {
                continue;
            };
            (entry, format!("{start}{}", &rest[at + " resumed>".len()..]))
        } else if let Some(start) = text.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), (line_no, start.to_string()));
            continue;
        } else {
            (line_no, text.to_string())
        };
        if let Some((name, args, ret)) = split_call(&full) {
            calls.push(Call {
                name,
                args: split_args(&args),
                ret,
                entry,
                exit: line_no,
            });
        }
    }
    calls
}

/// `N<description>` → (N, decoded description).
fn fd_arg(arg: &str) -> Option<(i64, String)> {
    let open = arg.find('<')?;
    let fd = arg[..open].parse().ok()?;
    let inner = arg[open + 1..].strip_suffix('>')?;
    // A device's `<char 1:3>` after the path.
    let path = match inner.find("<char ").or_else(|| inner.find("<block ")) {
        Some(at) => &inner[..at],
        None => inner,
    };
    Some((fd, String::from_utf8_lossy(&unescape(path)).into_owned()))
}

/// `"…"` → its bytes.
fn string_arg(arg: &str) -> Option<Vec<u8>> {
    let inner = arg.strip_prefix('"')?;
    // A string cut by `-s` ends in `"...`: refuse it rather than check a part.
    let inner = inner.strip_suffix('"')?;
    Some(unescape(inner))
}

/// The buffers of `writev`/`pwritev`/`sendmsg`: every `iov_base="…"` in order.
fn iov_bytes(arg: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(at) = rest.find("iov_base=\"") {
        let from = at + "iov_base=".len();
        let tail = &rest[from..];
        // The string ends at the first unescaped quote after its opening one.
        let bytes = tail.as_bytes();
        let mut end = 1;
        while end < bytes.len() {
            match bytes[end] {
                b'\\' => end += 2,
                b'"' => break,
                _ => end += 1,
            }
        }
        out.extend(string_arg(&tail[..=end.min(bytes.len() - 1)])?);
        rest = &tail[end.min(bytes.len())..];
    }
    Some(out)
}

/// The `{…}` items of a `[{…}, {…}]` argument, each split into `(field, value)` pairs.
fn struct_items(arg: &str) -> Vec<Vec<(String, String)>> {
    let Some(inner) = arg
        .trim()
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
    else {
        return Vec::new();
    };
    split_args(inner)
        .iter()
        .filter_map(|item| {
            let fields = item.strip_prefix('{')?.strip_suffix('}')?;
            Some(
                split_args(fields)
                    .into_iter()
                    .filter_map(|field| {
                        let (name, value) = field.split_once('=')?;
                        Some((name.trim().to_string(), value.to_string()))
                    })
                    .collect(),
            )
        })
        .collect()
}

/// A field of a [`struct_items`] item.
fn field<'a>(item: &'a [(String, String)], name: &str) -> Option<&'a str> {
    item.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An AIO write submitted and not yet reaped.
struct AioWrite {
    path: String,
    offset: usize,
    data: Vec<u8>,
}

fn return_value(ret: &str) -> Option<i64> {
    ret.split_whitespace()
        .next()?
        .split('<')
        .next()?
        .parse()
        .ok()
}

/// The path an `*at` call names: relative ones against the directory fd's path.
fn at_path(dir_arg: &str, path_arg: &str) -> Option<String> {
    let path = String::from_utf8_lossy(&string_arg(path_arg)?).into_owned();
    if path.starts_with('/') {
        return Some(path);
    }
    let (_, dir) = fd_arg(dir_arg)?;
    Some(format!("{}/{path}", dir.trim_end_matches('/')))
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
        None => ".".to_string(),
    }
}

fn is_socket(description: &str) -> bool {
    description.starts_with("TCP") || description.starts_with("UNIX")
}

/// What a successful C-STORE-RSP acknowledged, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// Affected SOP Instance UID.
    pub sop_instance_uid: String,
    /// The log line of the system call that wrote the response's first byte.
    pub line: usize,
}

/// A success acknowledged before what it acknowledges was durable.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The acknowledgement.
    pub acknowledged: Acknowledged,
    /// What was not durable yet.
    pub missing: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "C-STORE-RSP success for {} (log line {}) before {}",
            self.acknowledged.sop_instance_uid,
            self.acknowledged.line + 1,
            self.missing
        )
    }
}

/// The outcome of [`check`].
#[derive(Debug, Default)]
pub struct Report {
    /// Every success response found, in order.
    pub acknowledged: Vec<Acknowledged>,
    /// The ones that came too early (empty: durability held).
    pub violations: Vec<Violation>,
    /// Calls the model does not cover, on files the receiver wrote (the check is then not a
    /// proof: callers should fail on any).
    pub unmodelled: Vec<String>,
    /// Synced calls seen (`fsync`/`fdatasync`), for the caller's figures.
    pub syncs: usize,
}

/// A file's content as the calls made it, and as of its last completed sync.
#[derive(Default, Clone)]
struct FileState {
    content: Vec<u8>,
    durable: Vec<u8>,
    /// The line of the entry of the sync whose snapshot `durable` is: a sync that entered
    /// earlier but completes later covers less, and leaves it as it is.
    durable_as_of: usize,
}

impl FileState {
    /// A sync that entered at `entry` with `snapshot` has completed.
    fn synced(&mut self, snapshot: Vec<u8>, entry: usize) {
        if entry >= self.durable_as_of {
            self.durable = snapshot;
            self.durable_as_of = entry;
        }
    }
}

/// The success C-STORE-RSPs the receiver wrote, by the index of the call that wrote each
/// one's first byte: every connection's outgoing bytes, in order, cut into PDUs.
fn responses_by_call(calls: &[Call]) -> HashMap<usize, Vec<String>> {
    // Per connection: its bytes, and (offset, call) of each write.
    type Stream = (Vec<u8>, Vec<(usize, usize)>);
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    let mut by_entry: Vec<usize> = (0..calls.len()).collect();
    by_entry.sort_by_key(|&i| calls[i].entry);
    for i in by_entry {
        let call = &calls[i];
        let Some(data) = written_bytes(call) else {
            continue;
        };
        let Some((_, path)) = call.args.first().and_then(|a| fd_arg(a)) else {
            continue;
        };
        let Some(written) = return_value(&call.ret).filter(|n| *n > 0) else {
            continue;
        };
        if !is_socket(&path) {
            continue;
        }
        let (bytes, writes) = streams.entry(path).or_default();
        writes.push((bytes.len(), i));
        bytes.extend_from_slice(&data[..(written as usize).min(data.len())]);
    }
    let mut found: HashMap<usize, Vec<String>> = HashMap::new();
    for (bytes, writes) in streams.values() {
        let mut at = 0usize;
        while at + 6 <= bytes.len() {
            let length =
                u32::from_be_bytes([bytes[at + 2], bytes[at + 3], bytes[at + 4], bytes[at + 5]])
                    as usize;
            let Some(end) = at
                .checked_add(6)
                .and_then(|x| x.checked_add(length))
                .filter(|e| *e <= bytes.len())
            else {
                break;
            };
            if bytes[at] == 0x04 {
                if let Some(uid) = success_store_response(&bytes[at + 6..end]) {
                    let call = writes
                        .iter()
                        .rev()
                        .find(|(offset, _)| *offset <= at)
                        .map_or(0, |(_, call)| *call);
                    found.entry(call).or_default().push(uid);
                }
            }
            at = end;
        }
    }
    found
}

/// The bytes a write-like call passes (`None` for other calls, or a buffer cut short).
fn written_bytes(call: &Call) -> Option<Vec<u8>> {
    let buffer = call.args.get(1)?;
    match call.name.as_str() {
        "write" | "pwrite64" | "sendto" => string_arg(buffer),
        "writev" | "pwritev" | "pwritev2" | "sendmsg" => iov_bytes(buffer),
        _ => None,
    }
}

/// The Affected SOP Instance UID of a P-DATA-TF's command set if it is a C-STORE-RSP with
/// status success (0x0000).
fn success_store_response(pdvs: &[u8]) -> Option<String> {
    let mut command = Vec::new();
    let mut i = 0;
    while i + 6 <= pdvs.len() {
        let length = u32::from_be_bytes([pdvs[i], pdvs[i + 1], pdvs[i + 2], pdvs[i + 3]]) as usize;
        let end = i.checked_add(4)?.checked_add(length)?;
        if length < 2 || end > pdvs.len() {
            return None;
        }
        let header = pdvs[i + 5];
        if header & 1 == 1 {
            command.extend_from_slice(&pdvs[i + 6..end]);
        }
        i = end;
    }
    let mut field = None;
    let mut status = None;
    let mut uid = None;
    let mut k = 0;
    while k + 8 <= command.len() {
        let group = u16::from_le_bytes([command[k], command[k + 1]]);
        let element = u16::from_le_bytes([command[k + 2], command[k + 3]]);
        let length = u32::from_le_bytes([
            command[k + 4],
            command[k + 5],
            command[k + 6],
            command[k + 7],
        ]) as usize;
        let value = command.get(k + 8..k + 8 + length)?;
        match (group, element) {
            (0x0000, 0x0100) if length == 2 => {
                field = Some(u16::from_le_bytes([value[0], value[1]]))
            }
            (0x0000, 0x0900) if length == 2 => {
                status = Some(u16::from_le_bytes([value[0], value[1]]))
            }
            (0x0000, 0x1000) => {
                uid = Some(
                    String::from_utf8_lossy(value)
                        .trim_end_matches(['\0', ' '])
                        .to_string(),
                )
            }
            _ => {}
        }
        k += 8 + length;
    }
    (field == Some(0x8001) && status == Some(0x0000))
        .then_some(uid)
        .flatten()
}

fn write_at(content: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset..end].copy_from_slice(data);
}

/// Checks a log (see the module doc). `datasets` maps each SOP Instance UID the test sent to
/// its data-set bytes; `is_catalog` says which paths hold the catalog.
pub fn check(
    log: &str,
    datasets: &BTreeMap<String, Vec<u8>>,
    is_catalog: &dyn Fn(&str) -> bool,
) -> Report {
    let calls = parse_calls(log);
    // Points in line order: (line, is_exit, call index). Entries before exits on one line.
    let mut points: Vec<(usize, bool, usize)> = Vec::with_capacity(calls.len() * 2);
    for (i, call) in calls.iter().enumerate() {
        points.push((call.entry, false, i));
        points.push((call.exit, true, i));
    }
    points.sort();

    let mut report = Report::default();
    let mut files: BTreeMap<String, FileState> = BTreeMap::new();
    // Positions of open descriptors, by (fd, path).
    let mut positions: HashMap<(i64, String), usize> = HashMap::new();
    // Names made during the trace and not yet made durable by a sync of their directory.
    let mut volatile_names: BTreeSet<String> = BTreeSet::new();
    // A directory sync's snapshot of the names it covers, taken at its entry.
    let mut dir_sync_covers: HashMap<usize, Vec<String>> = HashMap::new();
    let mut file_sync_snapshot: HashMap<usize, (String, Vec<u8>, usize)> = HashMap::new();
    // A `syncfs`'s snapshot, taken at its entry: every file's content and every volatile name.
    #[allow(clippy::type_complexity)]
    let mut syncfs_snapshots: HashMap<usize, (Vec<(String, Vec<u8>)>, Vec<String>, usize)> =
        HashMap::new();
    let responses = responses_by_call(&calls);
    // AIO writes in flight, by (context, `aio_data`).
    let mut aio_in_flight: HashMap<(String, String), AioWrite> = HashMap::new();

    let name_durable = |path: &str, volatile: &BTreeSet<String>| -> Option<String> {
        let mut p = path.to_string();
        loop {
            if volatile.contains(&p) {
                return Some(p);
            }
            let up = parent(&p);
            if up == p || up == "/" || up == "." {
                return None;
            }
            p = up;
        }
    };

    for (line, is_exit, index) in points {
        let call = &calls[index];
        let ok = return_value(&call.ret).is_some_and(|r| r >= 0);
        let arg = |n: usize| call.args.get(n).map(String::as_str).unwrap_or("");
        match (call.name.as_str(), is_exit) {
            ("fsync" | "fdatasync", false) => {
                if let Some((_, path)) = fd_arg(arg(0)) {
                    // Whether the descriptor is a directory or a file: a directory's sync
                    // covers the names made in it, a file's its content.
                    let covered: Vec<String> = volatile_names
                        .iter()
                        .filter(|n| parent(n) == path)
                        .cloned()
                        .collect();
                    dir_sync_covers.insert(index, covered);
                    if let Some(state) = files.get(&path) {
                        file_sync_snapshot
                            .insert(index, (path.clone(), state.content.clone(), line));
                    }
                }
            }
            ("fsync" | "fdatasync", true) if ok => {
                report.syncs += 1;
                if let Some(covered) = dir_sync_covers.remove(&index) {
                    for name in covered {
                        volatile_names.remove(&name);
                    }
                }
                if let Some((path, snapshot, entry)) = file_sync_snapshot.remove(&index) {
                    if let Some(state) = files.get_mut(&path) {
                        state.synced(snapshot, entry);
                    }
                }
            }
            ("openat" | "open" | "creat", true) if ok => {
                let flags = if call.name == "openat" {
                    arg(2)
                } else {
                    arg(1)
                };
                let Some(opened) = call.ret.split_once('<').and_then(|_| fd_arg(&call.ret)) else {
                    continue;
                };
                let (fd, real) = opened;
                let creates = call.name == "creat" || flags.contains("O_CREAT");
                let writes = flags.contains("O_WRONLY") || flags.contains("O_RDWR");
                if writes && (flags.contains("O_TMPFILE") || flags.contains("O_APPEND")) {
                    report
                        .unmodelled
                        .push(format!("line {}: {} of {real}", line + 1, call.name));
                }
                let existed = files.contains_key(&real);
                if creates && !existed {
                    // Whether it existed before the trace is unknown for a path never seen:
                    // a create of a file the trace never saw counts as made now (strict).
                    volatile_names.insert(real.clone());
                }
                if creates || writes {
                    let state = files.entry(real.clone()).or_default();
                    if flags.contains("O_TRUNC") {
                        state.content.clear();
                    }
                }
                positions.insert((fd, real), 0);
            }
            (
                "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "sendto" | "sendmsg",
                _,
            ) => {
                let Some((fd, path)) = fd_arg(arg(0)) else {
                    continue;
                };
                let Some(data) = written_bytes(call) else {
                    if is_exit && ok {
                        report.unmodelled.push(format!(
                            "line {}: {} with an unreadable buffer",
                            line + 1,
                            call.name
                        ));
                    }
                    continue;
                };
                let written = return_value(&call.ret).unwrap_or(-1);
                if is_socket(&path) {
                    // A response counts from the entry of the write of its first byte.
                    if is_exit {
                        continue;
                    }
                    for uid in responses.get(&index).into_iter().flatten() {
                        let acknowledged = Acknowledged {
                            sop_instance_uid: uid.clone(),
                            line,
                        };
                        let missing = missing_for(
                            &acknowledged,
                            datasets,
                            &files,
                            &volatile_names,
                            is_catalog,
                            &name_durable,
                        );
                        if let Some(missing) = missing {
                            report.violations.push(Violation {
                                acknowledged: acknowledged.clone(),
                                missing,
                            });
                        }
                        report.acknowledged.push(acknowledged);
                    }
                    continue;
                }
                if !is_exit || written < 0 {
                    continue;
                }
                let n = (written as usize).min(data.len());
                let explicit_offset = match call.name.as_str() {
                    "pwrite64" => arg(3).parse::<usize>().ok(),
                    "pwritev" | "pwritev2" => arg(3).parse::<usize>().ok(),
                    _ => None,
                };
                let key = (fd, path.clone());
                let offset = match explicit_offset {
                    Some(o) => o,
                    None => positions.get(&key).copied().unwrap_or(0),
                };
                let state = files.entry(path.clone()).or_default();
                write_at(&mut state.content, offset, &data[..n]);
                if explicit_offset.is_none() {
                    positions.insert(key, offset + n);
                }
            }
            ("io_submit", true) if ok => {
                let submitted = return_value(&call.ret).unwrap_or(0).max(0) as usize;
                for iocb in struct_items(arg(2)).into_iter().take(submitted) {
                    let Some((_, path)) = field(&iocb, "aio_fildes").and_then(fd_arg) else {
                        continue;
                    };
                    if is_socket(&path) {
                        continue;
                    }
                    let opcode = field(&iocb, "aio_lio_opcode").unwrap_or("");
                    if opcode == "IOCB_CMD_PREAD" || opcode == "IOCB_CMD_PREADV" {
                        continue;
                    }
                    let data = field(&iocb, "aio_buf").and_then(string_arg);
                    let offset = field(&iocb, "aio_offset").and_then(|o| o.parse::<usize>().ok());
                    let key = (
                        arg(0).to_string(),
                        field(&iocb, "aio_data").unwrap_or("").to_string(),
                    );
                    match (opcode, data, offset) {
                        ("IOCB_CMD_PWRITE", Some(data), Some(offset))
                            if !aio_in_flight.contains_key(&key) =>
                        {
                            aio_in_flight.insert(key, AioWrite { path, offset, data });
                        }
                        _ => report.unmodelled.push(format!(
                            "line {}: io_submit of {opcode} on {path} (or a write its log does not show, or an aio_data already in flight)",
                            line + 1
                        )),
                    }
                }
            }
            ("io_getevents", true) if ok => {
                for event in struct_items(arg(3)) {
                    let key = (
                        arg(0).to_string(),
                        field(&event, "data").unwrap_or("").to_string(),
                    );
                    let Some(write) = aio_in_flight.remove(&key) else {
                        continue;
                    };
                    let done = field(&event, "res").and_then(|r| r.parse::<i64>().ok());
                    if let Some(done) = done.filter(|d| *d >= 0) {
                        let n = (done as usize).min(write.data.len());
                        let state = files.entry(write.path).or_default();
                        write_at(&mut state.content, write.offset, &write.data[..n]);
                    }
                }
            }
            ("lseek", true) if ok => {
                if let (Some((fd, path)), Some(to)) = (fd_arg(arg(0)), return_value(&call.ret)) {
                    positions.insert((fd, path), to as usize);
                }
            }
            ("ftruncate", true) if ok => {
                if let (Some((_, path)), Ok(len)) = (fd_arg(arg(0)), arg(1).parse::<usize>()) {
                    files.entry(path).or_default().content.resize(len, 0);
                }
            }
            ("rename" | "renameat" | "renameat2", true) if ok => {
                let (from, to) = if call.name == "rename" {
                    (
                        string_arg(arg(0)).map(|p| String::from_utf8_lossy(&p).into_owned()),
                        string_arg(arg(1)).map(|p| String::from_utf8_lossy(&p).into_owned()),
                    )
                } else {
                    (at_path(arg(0), arg(1)), at_path(arg(2), arg(3)))
                };
                if let (Some(from), Some(to)) = (from, to) {
                    let state = files.remove(&from).unwrap_or_default();
                    files.insert(to.clone(), state);
                    volatile_names.remove(&from);
                    volatile_names.insert(to);
                }
            }
            ("mkdir" | "mkdirat", true) if ok => {
                let path = if call.name == "mkdir" {
                    string_arg(arg(0)).map(|p| String::from_utf8_lossy(&p).into_owned())
                } else {
                    at_path(arg(0), arg(1))
                };
                if let Some(path) = path {
                    volatile_names.insert(path);
                }
            }
            ("unlink" | "unlinkat", true) if ok => {
                let path = if call.name == "unlink" {
                    string_arg(arg(0)).map(|p| String::from_utf8_lossy(&p).into_owned())
                } else {
                    at_path(arg(0), arg(1))
                };
                if let Some(path) = path {
                    files.remove(&path);
                    volatile_names.remove(&path);
                }
            }
            // `syncfs` (the one file system a test writes to): everything written before its
            // entry, and every name made before it, is durable once it returns.
            ("syncfs", false) => {
                let contents: Vec<(String, Vec<u8>)> = files
                    .iter()
                    .map(|(path, state)| (path.clone(), state.content.clone()))
                    .collect();
                let names: Vec<String> = volatile_names.iter().cloned().collect();
                syncfs_snapshots.insert(index, (contents, names, line));
            }
            ("syncfs", true) => {
                if let Some((contents, names, entry)) = syncfs_snapshots.remove(&index) {
                    if ok {
                        report.syncs += 1;
                        for (path, content) in contents {
                            if let Some(state) = files.get_mut(&path) {
                                state.synced(content, entry);
                            }
                        }
                        for name in names {
                            volatile_names.remove(&name);
                        }
                    }
                }
            }
            ("linkat" | "sync_file_range" | "sync", true) if ok => {
                report
                    .unmodelled
                    .push(format!("line {}: {}", line + 1, call.name));
            }
            // A shared, writable mapping of a file (SQLite's WAL index is one: `-shm`, which
            // needs no durability) would write what the log does not show.
            ("mmap", true)
                if ok && arg(2).contains("PROT_WRITE") && arg(3).contains("MAP_SHARED") =>
            {
                if let Some((_, path)) = fd_arg(arg(4)).filter(|(_, p)| !p.ends_with("-shm")) {
                    report
                        .unmodelled
                        .push(format!("line {}: shared mapping of {path}", line + 1));
                }
            }
            _ => {}
        }
    }
    report
}

/// What an acknowledgement lacked, if anything.
fn missing_for(
    acknowledged: &Acknowledged,
    datasets: &BTreeMap<String, Vec<u8>>,
    files: &BTreeMap<String, FileState>,
    volatile_names: &BTreeSet<String>,
    is_catalog: &dyn Fn(&str) -> bool,
    name_durable: &dyn Fn(&str, &BTreeSet<String>) -> Option<String>,
) -> Option<String> {
    let uid = &acknowledged.sop_instance_uid;
    let Some(dataset) = datasets.get(uid) else {
        return Some("anything: the test did not send this instance".to_string());
    };
    let contains = |haystack: &[u8], needle: &[u8]| {
        !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
    };
    let mut data_problem = Some("its data set was written to no file".to_string());
    // Any file will do, a catalog file too (a journal holds both the data and the record).
    for (path, state) in files {
        if !contains(&state.content, dataset) {
            continue;
        }
        if !contains(&state.durable, dataset) {
            data_problem = Some(format!("a sync of {path}, which holds its data set"));
            continue;
        }
        match name_durable(path, volatile_names) {
            Some(name) => data_problem = Some(format!("a sync of the directory above {name}")),
            None => {
                data_problem = None;
                break;
            }
        }
    }
    if let Some(problem) = data_problem {
        return Some(problem);
    }
    let mut catalog_problem = Some("its catalog record was written to no catalog file".to_string());
    for (path, state) in files {
        if !is_catalog(path) || !contains(&state.content, uid.as_bytes()) {
            continue;
        }
        if !contains(&state.durable, uid.as_bytes()) {
            catalog_problem = Some(format!("a sync of {path}, which holds its record"));
            continue;
        }
        match name_durable(path, volatile_names) {
            Some(name) => catalog_problem = Some(format!("a sync of the directory above {name}")),
            None => {
                catalog_problem = None;
                break;
            }
        }
    }
    catalog_problem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
    }

    fn fd(n: i64, path: &str) -> String {
        format!("{n}<{}>", hex(path.as_bytes()))
    }

    /// A C-STORE-RSP P-DATA-TF for `uid` with `status`.
    fn response(uid: &str, status: u16) -> Vec<u8> {
        let mut uid_bytes = uid.as_bytes().to_vec();
        if uid_bytes.len() % 2 == 1 {
            uid_bytes.push(0);
        }
        let mut command = Vec::new();
        let mut element = |element: u16, value: &[u8]| {
            command.extend_from_slice(&0u16.to_le_bytes());
            command.extend_from_slice(&element.to_le_bytes());
            command.extend_from_slice(&(value.len() as u32).to_le_bytes());
            command.extend_from_slice(value);
        };
        element(0x0100, &0x8001u16.to_le_bytes());
        element(0x0900, &status.to_le_bytes());
        element(0x1000, &uid_bytes);
        let mut pdv = Vec::new();
        pdv.extend_from_slice(&((command.len() + 2) as u32).to_be_bytes());
        pdv.push(1);
        pdv.push(0x03);
        pdv.extend_from_slice(&command);
        let mut pdu = vec![0x04, 0];
        pdu.extend_from_slice(&(pdv.len() as u32).to_be_bytes());
        pdu.extend_from_slice(&pdv);
        pdu
    }

    const DATA: &[u8] = b"\x08\x00\x18\x00UI\x06\x001.2.3\0pixels";
    const UID: &str = "1.2.3";

    fn datasets() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(UID.to_string(), DATA.to_vec())])
    }

    fn catalog(path: &str) -> bool {
        path.ends_with("catalog.db")
    }

    /// The lines of a correct store, by step name, in order.
    fn steps() -> Vec<(&'static str, String)> {
        let socket = "7<TCP:[127.0.0.1:11112->127.0.0.1:40000]>";
        let rsp = response(UID, 0);
        vec![
            (
                "create",
                format!(
                    "10 openat(AT_FDCWD<{}>, \"{}\", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0666) = {}",
                    hex(b"/d"),
                    hex(b"/d/a/x#1"),
                    fd(9, "/d/a/x#1")
                ),
            ),
            (
                "write",
                format!(
                    "10 write({}, \"{}\", {}) = {}",
                    fd(9, "/d/a/x#1"),
                    hex(DATA),
                    DATA.len(),
                    DATA.len()
                ),
            ),
            ("sync", format!("10 fsync({}) = 0", fd(9, "/d/a/x#1"))),
            (
                "rename",
                format!(
                    "10 rename(\"{}\", \"{}\") = 0",
                    hex(b"/d/a/x#1"),
                    hex(b"/d/a/x")
                ),
            ),
            ("dir", format!("10 fsync({}) = 0", fd(11, "/d/a"))),
            (
                "catalog",
                format!(
                    "11 pwrite64({}, \"{}\", 5, 4096) = 5",
                    fd(12, "/d/catalog.db"),
                    hex(UID.as_bytes())
                ),
            ),
            (
                "commit",
                format!("11 fdatasync({}) = 0", fd(12, "/d/catalog.db")),
            ),
            (
                "respond",
                format!(
                    "12 sendto({socket}, \"{}\", {}, MSG_NOSIGNAL, NULL, 0) = {}",
                    hex(&rsp),
                    rsp.len(),
                    rsp.len()
                ),
            ),
        ]
    }

    fn log(steps: &[(&str, String)]) -> String {
        steps
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_store_synced_before_its_response_holds() {
        let report = check(&log(&steps()), &datasets(), &catalog);
        assert_eq!(report.acknowledged.len(), 1);
        assert_eq!(report.acknowledged[0].sop_instance_uid, UID);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.unmodelled.is_empty());
        assert_eq!(report.syncs, 3);
    }

    #[test]
    fn each_missing_sync_is_a_violation() {
        for (left_out, expected) in [
            ("sync", "a sync of /d/a/x"),
            ("dir", "the directory above /d/a/x"),
            ("commit", "a sync of /d/catalog.db"),
            ("catalog", "written to no catalog file"),
            ("write", "written to no file"),
        ] {
            let steps: Vec<_> = steps()
                .into_iter()
                .filter(|(n, _)| *n != left_out)
                .collect();
            let report = check(&log(&steps), &datasets(), &catalog);
            assert_eq!(report.violations.len(), 1, "without {left_out}");
            let text = report.violations[0].to_string();
            assert!(text.contains(expected), "without {left_out}: {text}");
        }
    }

    #[test]
    fn a_sync_counts_once_completed_and_covers_what_was_written_before_it() {
        // The data sync is still running when the response is written.
        let mut steps = steps();
        let sync = steps.iter().position(|(n, _)| *n == "sync").expect("sync");
        let line = steps[sync].1.replace(") = 0", " <unfinished ...>");
        steps[sync].1 = line;
        steps.push(("resumed", "10 <... fsync resumed>) = 0".to_string()));
        let report = check(&log(&steps), &datasets(), &catalog);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);

        // The data is written after the sync started: not covered.
        let mut steps = self::steps();
        let write = steps
            .iter()
            .position(|(n, _)| *n == "write")
            .expect("write");
        let sync = steps.remove(sync);
        steps.insert(write, sync);
        let report = check(&log(&steps), &datasets(), &catalog);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    }

    /// Two syncs of one file overlap: one entered before the write and completes after the
    /// other, which entered after it. The later-entered one made the write durable; the
    /// earlier one's completion does not undo that (as a pack writer's sync overlapping the
    /// sync of the zeros written ahead in the same pack did).
    #[test]
    fn an_earlier_sync_completing_last_does_not_undo_a_later_one() {
        let mut steps = steps();
        let write = steps
            .iter()
            .position(|(n, _)| *n == "write")
            .expect("write");
        steps.insert(
            write,
            (
                "early",
                format!("13 fsync({} <unfinished ...>", fd(9, "/d/a/x#1")),
            ),
        );
        let sync = steps.iter().position(|(n, _)| *n == "sync").expect("sync");
        steps.insert(
            sync + 1,
            ("early-resumed", "13 <... fsync resumed>) = 0".to_string()),
        );
        let report = check(&log(&steps), &datasets(), &catalog);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert_eq!(report.syncs, 4);
    }

    #[test]
    fn a_completed_syncfs_covers_every_file_and_name_written_before_it() {
        let syncfs = |tail: &str| format!("13 syncfs({}){tail}", fd(14, "/d"));
        let mut steps: Vec<_> = steps()
            .into_iter()
            .filter(|(n, _)| !matches!(*n, "sync" | "dir" | "commit"))
            .collect();
        let respond = steps.len() - 1;
        steps.insert(respond, ("syncfs", syncfs(" = 0")));
        let report = check(&log(&steps), &datasets(), &catalog);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.unmodelled.is_empty(), "{:?}", report.unmodelled);
        assert_eq!(report.syncs, 1);

        // Still running when the response is written: nothing is durable yet.
        steps[respond].1 = syncfs(" <unfinished ...>");
        steps.push(("resumed", "13 <... syncfs resumed>) = 0".to_string()));
        let report = check(&log(&steps), &datasets(), &catalog);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);

        // A failed one covers nothing.
        let mut failed = steps.clone();
        failed.pop();
        failed[respond].1 = syncfs(" = -1 EIO (Input/output error)");
        let report = check(&log(&failed), &datasets(), &catalog);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    }

    #[test]
    fn failures_and_other_responses_are_not_acknowledgements() {
        let mut steps = steps();
        let rsp = response(UID, 0xA700);
        steps.last_mut().expect("respond").1 = format!(
            "12 write(7<TCP:[127.0.0.1:11112->127.0.0.1:40000]>, \"{}\", {}) = {}",
            hex(&rsp),
            rsp.len(),
            rsp.len()
        );
        steps.retain(|(n, _)| *n != "commit");
        let report = check(&log(&steps), &datasets(), &catalog);
        assert!(report.acknowledged.is_empty());
        assert!(report.violations.is_empty());
    }

    #[test]
    fn a_response_split_over_writes_counts_from_its_first() {
        let mut steps = steps();
        let rsp = response(UID, 0);
        let socket = "7<TCP:[127.0.0.1:11112->127.0.0.1:40000]>";
        let (head, tail) = rsp.split_at(4);
        steps.pop();
        let commit = steps
            .iter()
            .position(|(n, _)| *n == "commit")
            .expect("commit");
        let commit_line = steps.remove(commit);
        steps.push((
            "head",
            format!("12 write({socket}, \"{}\", 4) = 4", hex(head)),
        ));
        steps.push(commit_line);
        steps.push((
            "tail",
            format!(
                "12 write({socket}, \"{}\", {}) = {}",
                hex(tail),
                tail.len(),
                tail.len()
            ),
        ));
        let report = check(&log(&steps), &datasets(), &catalog);
        assert_eq!(report.acknowledged.len(), 1);
        assert_eq!(
            report.violations.len(),
            1,
            "the commit came after the first byte"
        );
    }

    /// The store's data written through native AIO in two pieces instead of `write`: each
    /// piece's `io_submit`, then `reaped` (its `io_getevents` lines) in place of the write.
    fn aio_steps(reaped: &[String]) -> Vec<(&'static str, String)> {
        let file = fd(9, "/d/a/x#1");
        let (first, second) = DATA.split_at(6);
        let iocb = |data: &str, bytes: &[u8], offset: usize| {
            format!(
                "{{aio_data={data}, aio_lio_opcode=IOCB_CMD_PWRITE, aio_fildes={file}, aio_buf=\"{}\", aio_nbytes={}, aio_offset={offset}}}",
                hex(bytes),
                bytes.len()
            )
        };
        let mut out = Vec::new();
        for (name, line) in steps() {
            if name != "write" {
                out.push((name, line));
                continue;
            }
            out.push((
                "submit",
                format!(
                    "10 io_submit(0x7f00, 2, [{}, {}]) = 2",
                    iocb("0x1", first, 0),
                    iocb("0x2", second, 6)
                ),
            ));
            for line in reaped {
                out.push(("reap", line.clone()));
            }
        }
        out
    }

    /// Bytes of the second piece.
    const REST: i64 = DATA.len() as i64 - 6;

    fn event(data: &str, res: i64) -> String {
        format!("{{data={data}, obj=0x7f10, res={res}, res2=0}}")
    }

    #[test]
    fn an_aio_write_counts_once_its_completion_is_reaped() {
        let both = format!(
            "10 io_getevents(0x7f00, 2, 2, [{}, {}], NULL) = 2",
            event("0x2", REST),
            event("0x1", 6)
        );
        let report = check(&log(&aio_steps(&[both])), &datasets(), &catalog);
        assert_eq!(report.acknowledged.len(), 1);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.unmodelled.is_empty(), "{:?}", report.unmodelled);

        // One piece reaped in a second call that ends after the sync began: not covered.
        let mut steps = aio_steps(&[format!(
            "10 io_getevents(0x7f00, 1, 2, [{}], NULL) = 1",
            event("0x1", 6)
        )]);
        let sync = steps.iter().position(|(n, _)| *n == "sync").expect("sync");
        steps.insert(
            sync + 1,
            (
                "late",
                format!(
                    "13 io_getevents(0x7f00, 1, 1, [{}], NULL) = 1",
                    event("0x2", REST)
                ),
            ),
        );
        let report = check(&log(&steps), &datasets(), &catalog);
        assert_eq!(report.violations.len(), 1, "reaped after the sync's entry");

        // Never reaped, failed, or short: the data set is not all there.
        for reaped in [
            vec![format!(
                "10 io_getevents(0x7f00, 1, 2, [{}], NULL) = 1",
                event("0x1", 6)
            )],
            vec![format!(
                "10 io_getevents(0x7f00, 2, 2, [{}, {}], NULL) = 2",
                event("0x1", 6),
                event("0x2", -5)
            )],
            vec![format!(
                "10 io_getevents(0x7f00, 2, 2, [{}, {}], NULL) = 2",
                event("0x1", 6),
                event("0x2", REST - 1)
            )],
            // Another context's event with the same data.
            vec![format!(
                "10 io_getevents(0x7f01, 2, 2, [{}, {}], NULL) = 2",
                event("0x1", 6),
                event("0x2", REST)
            )],
        ] {
            let report = check(&log(&aio_steps(&reaped)), &datasets(), &catalog);
            assert_eq!(report.violations.len(), 1, "{reaped:?}");
            assert!(
                report.violations[0]
                    .to_string()
                    .contains("written to no file"),
                "{}",
                report.violations[0]
            );
        }
    }

    #[test]
    fn aio_the_model_does_not_cover_is_reported() {
        let file = fd(9, "/d/a/x#1");
        for submit in [
            format!("10 io_submit(0x7f00, 1, [{{aio_data=0x1, aio_lio_opcode=IOCB_CMD_FDSYNC, aio_fildes={file}}}]) = 1"),
            // A buffer cut short by `-s`.
            format!("10 io_submit(0x7f00, 1, [{{aio_data=0x1, aio_lio_opcode=IOCB_CMD_PWRITE, aio_fildes={file}, aio_buf=\"\\x01\"..., aio_nbytes=9, aio_offset=0}}]) = 1"),
            // Two writes in flight that the events could not tell apart.
            format!(
                "10 io_submit(0x7f00, 2, [{{aio_data=0x1, aio_lio_opcode=IOCB_CMD_PWRITE, aio_fildes={file}, aio_buf=\"\\x01\", aio_nbytes=1, aio_offset=0}}, {{aio_data=0x1, aio_lio_opcode=IOCB_CMD_PWRITE, aio_fildes={file}, aio_buf=\"\\x02\", aio_nbytes=1, aio_offset=1}}]) = 2"
            ),
        ] {
            let report = check(&submit, &datasets(), &catalog);
            assert_eq!(report.unmodelled.len(), 1, "{submit}");
        }
        // Reads are not writes, and an iocb the kernel did not take is not in flight.
        let read = format!("10 io_submit(0x7f00, 2, [{{aio_data=0x1, aio_lio_opcode=IOCB_CMD_PREAD, aio_fildes={file}, aio_buf=0x7f20, aio_nbytes=1, aio_offset=0}}, {{aio_data=0x1, aio_lio_opcode=IOCB_CMD_FSYNC, aio_fildes={file}}}]) = 1");
        assert!(check(&read, &datasets(), &catalog).unmodelled.is_empty());
    }
}
