//! The node's side of `service logs`: keeps a log channel open to the leader
//! (`Dispatcher.LogSubscriptions`, trying the known managers until one leads) and, for each
//! subscription, reads the json-file logs of the matching local containers and publishes
//! their lines (`Dispatcher.PublishLogs`). With follow, it keeps reading what the containers
//! write and picks up tasks of the service that start later, until the subscription closes.

use crate::executor::Executor;
use crate::managers::Managers;
use crate::task_db::TaskDb;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use swarm_api::dispatcher::dispatcher_client::DispatcherClient;
use swarm_api::dispatcher::{
    LogLine, LogOptions, LogSubscription, LogSubscriptionsRequest, PublishLogsMessage,
};
use swarm_runtime::logs::{LogEntry, Stream};
use swarm_types::NodeId;
use tokio::sync::{mpsc, watch};

/// Lines per published message (a message stays far below the gRPC limit: lines are at most
/// 16 KiB).
const LINES_PER_MESSAGE: usize = 128;
/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a followed service is checked for new local tasks.
const TASKS_POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown`.
pub async fn run<E: Executor>(
    node: NodeId,
    db_dir: PathBuf,
    exec: Arc<E>,
    managers: Managers,
    mut shutdown: watch::Receiver<bool>,
) {
    let db = match TaskDb::open(db_dir) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the local task db; no logs will be served");
            return;
        }
    };
    let mut idx = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(addr) = managers.pick(idx) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Ok(ch) = managers.channel(&addr) else {
            idx += 1;
            continue;
        };
        let mut client = DispatcherClient::new(ch)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES);
        let open = client.log_subscriptions(LogSubscriptionsRequest {
            node_id: node.to_string(),
        });
        let mut subs = match tokio::time::timeout(Duration::from_secs(5), open).await {
            Ok(Ok(s)) => s.into_inner(),
            _ => {
                // Not the leader (or unreachable): the next manager.
                idx += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tracing::debug!(manager = %addr, "log channel open");
        // One publishing stream per log channel, to the same manager.
        let (pub_tx, pub_rx) = mpsc::channel::<PublishLogsMessage>(16);
        let mut publisher = client.clone();
        let publishing = tokio::spawn(async move {
            let _ = publisher
                .publish_logs(tokio_stream::wrappers::ReceiverStream::new(pub_rx))
                .await;
        });
        let mut readers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let m = tokio::select! {
                m = subs.message() => m,
                _ = shutdown.changed() => break,
            };
            let Ok(Some(sub)) = m else { break };
            readers.retain(|_, h| !h.is_finished());
            if sub.close {
                if let Some(h) = readers.remove(&sub.id) {
                    h.abort();
                }
                continue;
            }
            let reader = serve(
                node.clone(),
                sub.clone(),
                exec.clone(),
                db.clone(),
                pub_tx.clone(),
            );
            if let Some(old) = readers.insert(sub.id, tokio::spawn(reader)) {
                old.abort();
            }
        }
        for (_, h) in readers {
            h.abort();
        }
        drop(pub_tx);
        publishing.abort();
        idx += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads and publishes the lines of one subscription.
async fn serve<E: Executor>(
    node: NodeId,
    sub: LogSubscription,
    exec: Arc<E>,
    db: TaskDb,
    out: mpsc::Sender<PublishLogsMessage>,
) {
    let opts = sub.options.clone().unwrap_or_default();
    let local_tasks = || -> Vec<String> {
        let mut ids = sub.task_ids.clone();
        if !sub.service_id.is_empty() {
            ids.extend(
                db.load_all()
                    .into_iter()
                    .filter(|t| t.service_id.as_str() == sub.service_id)
                    .map(|t| t.id.to_string()),
            );
        }
        ids.sort();
        ids.dedup();
        ids
    };
    let publish = |lines: Vec<LogLine>, close: bool, error: String| PublishLogsMessage {
        node_id: node.to_string(),
        subscription_id: sub.id.clone(),
        lines,
        close,
        error,
    };
    // What is there now, each task's tail, oldest task first by its first line.
    let (mut open, first, errors) = read_tails(&*exec, local_tasks(), &opts);
    tracing::debug!(sub = %sub.id, tasks = open.len(), lines = first.len(), errors = errors.len(), "log subscription served");
    for chunk in chunks(first) {
        if out
            .send(publish(chunk, false, String::new()))
            .await
            .is_err()
        {
            return;
        }
    }
    for e in errors {
        if out.send(publish(Vec::new(), false, e)).await.is_err() {
            return;
        }
    }
    if !opts.follow {
        let _ = out.send(publish(Vec::new(), true, String::new())).await;
        return;
    }
    let mut last_scan = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        if !sub.service_id.is_empty() && last_scan.elapsed() >= TASKS_POLL {
            last_scan = tokio::time::Instant::now();
            for id in local_tasks() {
                if open.contains_key(&id) {
                    continue;
                }
                if let Some(path) = exec.log_path(&id) {
                    // A task that started after the subscription: all its lines.
                    open.insert(id, LogFile::new(path));
                }
            }
        }
        let lines = read_followed(&mut open, &opts);
        for chunk in chunks(lines) {
            if out
                .send(publish(chunk, false, String::new()))
                .await
                .is_err()
            {
                return;
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

/// Each task's log as it is now (its selected tail), oldest line first; the files read stay
/// open for following; tasks whose log cannot be read are reported.
fn read_tails<E: Executor>(
    exec: &E,
    ids: Vec<String>,
    opts: &LogOptions,
) -> (HashMap<String, LogFile>, Vec<LogLine>, Vec<String>) {
    let mut open: HashMap<String, LogFile> = HashMap::new();
    let mut first = Vec::new();
    let mut errors = Vec::new();
    for id in ids {
        let Some(path) = exec.log_path(&id) else {
            continue;
        };
        let mut f = LogFile::new(path);
        match f.read_new() {
            Ok(Some(entries)) => {
                first.extend(
                    select(entries, opts, true)
                        .into_iter()
                        .map(|e| line(&id, e)),
                );
                open.insert(id, f);
            }
            Ok(None) => {} // no container (any more) for this task on this node
            Err(e) => errors.push(format!("cannot read the log of task {id}: {e}")),
        }
    }
    first.sort_by(|a, b| a.time.cmp(&b.time));
    (open, first, errors)
}

/// The lines written since the last read, oldest first; logs whose container is gone (or
/// that can no longer be read) are closed.
fn read_followed(open: &mut HashMap<String, LogFile>, opts: &LogOptions) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut gone = Vec::new();
    for (id, f) in open.iter_mut() {
        match f.read_new() {
            Ok(Some(entries)) => lines.extend(
                select(entries, opts, false)
                    .into_iter()
                    .map(|e| line(id, e)),
            ),
            // The container was removed: nothing more will come.
            Ok(None) if f.seen => gone.push(id.clone()),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(task = %id, error = %e, "log read failed");
                gone.push(id.clone());
            }
        }
    }
    for id in gone {
        open.remove(&id);
    }
    lines.sort_by(|a, b| a.time.cmp(&b.time));
    lines
}

pub(crate) fn line(task: &str, e: LogEntry) -> LogLine {
    LogLine {
        task_id: task.to_string(),
        time: e.time,
        stream: match e.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
        .to_string(),
        data: e.log.into_bytes(),
    }
}

fn chunks(mut v: Vec<LogLine>) -> Vec<Vec<LogLine>> {
    let mut out = Vec::new();
    while v.len() > LINES_PER_MESSAGE {
        let rest = v.split_off(LINES_PER_MESSAGE);
        out.push(std::mem::replace(&mut v, rest));
    }
    if !v.is_empty() {
        out.push(v);
    }
    out
}

/// The entries a reader asked for: within since/until, and (for what was there when it
/// subscribed) the last `tail`.
pub(crate) fn select(mut v: Vec<LogEntry>, o: &LogOptions, initial: bool) -> Vec<LogEntry> {
    v.retain(|e| {
        (o.since.is_empty() || e.time >= o.since) && (o.until.is_empty() || e.time <= o.until)
    });
    if initial && o.tail >= 0 {
        let skip = v.len().saturating_sub(o.tail as usize);
        v.drain(..skip);
    }
    v
}

/// A container's json-file log read incrementally: complete lines only, from where the last
/// read stopped. The first read also takes the rotated files (oldest first); when the file is
/// rotated (`container.log` renamed to `.1`), the rest of the old one is read before the new.
pub(crate) struct LogFile {
    path: PathBuf,
    offset: u64,
    /// Whether the file existed at some read (its disappearance then means removal).
    seen: bool,
    /// Inode of the file `offset` is in.
    ino: Option<u64>,
}

impl LogFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        LogFile {
            path,
            offset: 0,
            seen: false,
            ino: None,
        }
    }

    /// Complete entries of `p` from `offset`; the new offset.
    fn read_from(p: &std::path::Path, offset: u64) -> std::io::Result<(Vec<LogEntry>, u64)> {
        Self::read_file(std::fs::File::open(p)?, offset)
    }

    fn read_file(mut f: std::fs::File, offset: u64) -> std::io::Result<(Vec<LogEntry>, u64)> {
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return Ok((Vec::new(), offset));
        };
        Ok((parse(&buf[..=end]), offset + end as u64 + 1))
    }

    /// New complete entries; None when the file does not exist.
    pub(crate) fn read_new(&mut self) -> std::io::Result<Option<Vec<LogEntry>>> {
        use std::os::unix::fs::MetadataExt;
        let rotated_one = PathBuf::from(format!("{}.1", self.path.display()));
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Between the init's rename to `.1` and its new file, the name is missing
                // for a moment: that is a rotation, not a removed container.
                if !rotated_one.exists() {
                    return Ok(None);
                }
                let mut out = Vec::new();
                if !self.seen {
                    for old in swarm_runtime::logs::rotated(&self.path) {
                        if let Ok((v, _)) = Self::read_from(&old, 0) {
                            out.extend(v);
                        }
                    }
                } else if std::fs::metadata(&rotated_one).is_ok_and(|m| Some(m.ino()) == self.ino) {
                    if let Ok((v, _)) = Self::read_from(&rotated_one, self.offset) {
                        out.extend(v);
                    }
                }
                self.seen = true;
                self.ino = None;
                self.offset = 0;
                return Ok(Some(out));
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        if !self.seen {
            return self.first_read();
        } else if self.ino.is_some_and(|i| i != meta.ino()) {
            // Rotated since the last read: the rest of the old file is now `.1`.
            let same = std::fs::metadata(&rotated_one).is_ok_and(|m| Some(m.ino()) == self.ino);
            if same {
                if let Ok((v, _)) = Self::read_from(&rotated_one, self.offset) {
                    out.extend(v);
                }
            }
            self.offset = 0;
        } else if self.ino.is_none() && self.seen {
            // Read last in the middle of a rotation: this is the new file, from its start.
            self.offset = 0;
        } else if meta.len() < self.offset {
            // Emptied in place (one file kept).
            self.offset = 0;
        }
        self.seen = true;
        self.ino = Some(meta.ino());
        let (v, off) = match Self::read_from(&self.path, self.offset) {
            Ok(r) => r,
            // Rotated away between the two calls: the next read takes it from `.1`.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(out)),
            Err(e) => return Err(e),
        };
        self.offset = off;
        out.extend(v);
        Ok(Some(out))
    }
}

impl LogFile {
    /// The first read: every rotated file, oldest first, then the current one. All are
    /// opened before anything is read, oldest first, and the set is taken only if no
    /// rotation happened meanwhile (every rotation renames the current file to `.1`, so `.1`
    /// still being the file opened as `.1` proves it); otherwise it is opened again. A log
    /// that rotates faster than that falls back to reading what the names show.
    fn first_read(&mut self) -> std::io::Result<Option<Vec<LogEntry>>> {
        use std::os::unix::fs::MetadataExt;
        let one = PathBuf::from(format!("{}.1", self.path.display()));
        let ino_of = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.ino());
        for _ in 0..100 {
            let mut files = Vec::new();
            let mut complete = true;
            for old in swarm_runtime::logs::rotated(&self.path) {
                match std::fs::File::open(&old) {
                    Ok(f) => files.push(f),
                    Err(_) => complete = false,
                }
            }
            let one_ino = files
                .last()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            let cur = match std::fs::File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !complete || ino_of(&one) != one_ino {
                continue;
            }
            let cur_ino = cur.metadata()?.ino();
            let mut out = Vec::new();
            for f in files {
                if let Ok((v, _)) = Self::read_file(f, 0) {
                    out.extend(v);
                }
            }
            let (v, off) = Self::read_file(cur, 0)?;
            out.extend(v);
            self.seen = true;
            self.ino = Some(cur_ino);
            self.offset = off;
            return Ok(Some(out));
        }
        // Rotating too fast to catch still: what the names show now.
        let mut out = Vec::new();
        for old in swarm_runtime::logs::rotated(&self.path) {
            if let Ok((v, _)) = Self::read_from(&old, 0) {
                out.extend(v);
            }
        }
        self.seen = true;
        self.ino = ino_of(&self.path);
        match Self::read_from(&self.path, 0) {
            Ok((v, off)) => {
                out.extend(v);
                self.offset = off;
            }
            Err(_) => self.offset = 0,
        }
        Ok(Some(out))
    }
}

fn parse(b: &[u8]) -> Vec<LogEntry> {
    b.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// `Agent.ContainerLogs`: one local container's lines (following until it stops, or until the
/// reader goes).
pub fn container_logs(
    runtime: Arc<swarm_runtime::Runtime>,
    id: String,
    opts: LogOptions,
) -> mpsc::Receiver<Result<LogLine, tonic::Status>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let Ok(path) = runtime.log_path(&id) else {
            return;
        };
        let mut f = LogFile::new(path);
        let mut initial = true;
        loop {
            let running = runtime
                .inspect(&id)
                .map(|c| c.status == swarm_runtime::ContainerStatus::Running)
                .unwrap_or(false);
            let entries = match f.read_new() {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => {
                    let _ = tx
                        .send(Err(tonic::Status::internal(format!(
                            "cannot read the log of {id}: {e}"
                        ))))
                        .await;
                    return;
                }
            };
            for e in select(entries, &opts, initial) {
                if tx.send(Ok(line(&id, e))).await.is_err() {
                    return;
                }
            }
            initial = false;
            // Without follow, or once the container stopped and its log is drained: done.
            if !opts.follow || !running {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests;
