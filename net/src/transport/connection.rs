//! One framed connection, either side's: reader and writer tasks, request/response matching.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use super::{Handled, RequestHandler, TransportError};
use crate::codec::{decode_frame, RemotingCommand, FRAME_BYTES_MAX_DEFAULT};
use crate::signal::Flag;

/// Identifies a connection within one process.
pub type ConnId = u64;

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Largest frame accepted from the peer.
    pub frame_bytes_max: usize,
    /// Requests from the peer being handled at once; the reader waits for a slot, so a peer
    /// that floods is slowed down by TCP rather than buffered.
    pub in_flight_max: usize,
    /// Commands queued for writing; a full queue makes senders wait.
    pub send_queue_max: usize,
    /// Closes the connection after this long with nothing read or written (RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`); `None` keeps idle connections open.
    pub idle_timeout: Option<Duration>,
    /// A frame whose first byte has arrived must arrive whole within this, or the connection
    /// is closed: a peer trickling bytes cannot hold it open forever. `None`: no limit.
    pub frame_read_timeout: Option<Duration>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            in_flight_max: 256,
            send_queue_max: 1024,
            idle_timeout: None,
            frame_read_timeout: None,
        }
    }
}

/// The read buffer starts at the small size and doubles, up to the large one, while reads
/// keep filling it: an idle connection holds 4 KiB, a busy one reads 64 KiB at a time.
const READ_CHUNK_MIN: usize = 4 * 1024;
const READ_CHUNK_MAX: usize = 64 * 1024;
/// Responses are batched into one write of up to this much; larger bodies go straight out.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// A framed connection. Cheap to clone; all clones name the same socket.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    id: ConnId,
    peer: SocketAddr,
    outbound: mpsc::Sender<RemotingCommand>,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    closed: Flag,
    opened: Instant,
    /// When the writer last flushed, in milliseconds after `opened`: the idle check counts
    /// writes as activity, as RocketMQ's all-idle check does.
    last_write_ms: AtomicU64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection#{}({})", self.inner.id, self.inner.peer)
    }
}

impl Connection {
    /// Starts the reader and writer tasks on `stream`. Requests from the peer go to `handler`
    /// (a peer's request to a connection without one is answered "not supported").
    /// `on_closed` runs once, after the reader stops.
    pub fn spawn(
        id: ConnId,
        peer: SocketAddr,
        stream: TcpStream,
        config: ConnectionConfig,
        handler: Option<Arc<dyn RequestHandler>>,
        on_closed: impl FnOnce(&Connection) + Send + 'static,
    ) -> Connection {
        let (outbound, queue) = mpsc::channel(config.send_queue_max);
        let conn = Connection {
            inner: Arc::new(Inner {
                id,
                peer,
                outbound,
                pending: Mutex::new(HashMap::new()),
                next_opaque: AtomicI32::new(1),
                closed: Flag::new(),
                opened: Instant::now(),
                last_write_ms: AtomicU64::new(0),
            }),
        };
        // Owned halves need no lock between the reader and the writer; madsim's stream has
        // none, so the simulator splits it the generic way.
        #[cfg(not(madsim))]
        let (reader, writer) = stream.into_split();
        #[cfg(madsim)]
        let (reader, writer) = tokio::io::split(stream);
        tokio::spawn(write_loop(conn.clone(), writer, queue));
        let reading = conn.clone();
        tokio::spawn(async move {
            let why = read_loop(&reading, reader, &config, handler.as_ref()).await;
            tracing::debug!(conn = ?reading, %why, "connection closed");
            reading.close();
            if let Some(handler) = &handler {
                handler.connection_closed(&reading);
            }
            on_closed(&reading);
        });
        conn
    }

    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_set()
    }

    /// Closes the connection: both tasks stop, waiting requests fail with `Closed`.
    pub fn close(&self) {
        if self.inner.closed.set() {
            // Dropping the waiters' senders wakes each with `Closed`.
            self.pending().clear();
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<RemotingCommand>>> {
        // A panic while holding this lock leaves the map valid: recover it.
        self.inner.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed_error(&self) -> TransportError {
        TransportError::Closed { addr: self.inner.peer.to_string() }
    }

    /// Sends a request and waits up to `timeout` for its response.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, TransportError> {
        let opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        self.pending().insert(opaque, tx);
        if self.is_closed() {
            self.pending().remove(&opaque);
            return Err(self.closed_error());
        }
        let exchange = async {
            self.send(request).await?;
            rx.await.map_err(|_| self.closed_error())
        };
        let result = tokio::time::timeout(timeout, exchange).await;
        match result {
            Ok(outcome) => outcome,
            Err(_) => {
                self.pending().remove(&opaque);
                let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                Err(TransportError::Timeout { addr: self.inner.peer.to_string(), millis })
            }
        }
    }

    /// Sends a request that gets no response.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), TransportError> {
        request.opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.mark_oneway();
        self.send(request).await
    }

    /// Queues a command for the writer, waiting while the queue is full.
    pub async fn send(&self, command: RemotingCommand) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        self.inner.outbound.send(command).await.map_err(|_| self.closed_error())
    }

    fn complete(&self, response: RemotingCommand) {
        let waiter = self.pending().remove(&response.opaque);
        match waiter {
            Some(tx) => {
                // The requester may have timed out and gone; that is not an error here.
                let _ = tx.send(response);
            }
            None => {
                tracing::debug!(conn = ?self, opaque = response.opaque, "late or unknown response")
            }
        }
    }

    /// Resolves once the connection is closed.
    pub async fn closed(&self) {
        self.inner.closed.wait().await;
    }
}

/// Why a connection that is neither reading nor writing should close, if it should.
struct Watch {
    idle: Option<Duration>,
    frame: Option<Duration>,
    last_read: Instant,
    /// When the first byte of a frame not yet whole arrived.
    partial_since: Option<Instant>,
}

impl Watch {
    fn new(config: &ConnectionConfig) -> Watch {
        let now = Instant::now();
        Watch {
            idle: config.idle_timeout,
            frame: config.frame_read_timeout,
            last_read: now,
            partial_since: None,
        }
    }

    /// Every whole frame has been taken from the buffer (`took` of them this time); `partial`
    /// says whether bytes of the next are left. A frame left unfinished now is timed from now:
    /// the time this loop spent handing frames on (waiting for a free slot, a full send queue)
    /// is the server's, not the peer's. Returns when that frame is due.
    fn decoded(&mut self, took: usize, partial: bool, now: Instant) -> Option<Instant> {
        if !partial {
            self.partial_since = None;
        } else if took > 0 || self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        Some(self.partial_since? + self.frame?)
    }

    /// The next time to look, or why to close now. A connection with requests in flight
    /// (`busy`: a held pull, a flush being waited for) is not idle.
    fn check(&self, conn: &Connection, now: Instant, busy: bool) -> Result<Instant, String> {
        let far = now + Duration::from_secs(3600);
        let frame_due = match (self.frame, self.partial_since) {
            (Some(limit), Some(since)) if now >= since + limit => {
                return Err(format!("a frame did not arrive whole within {limit:?}"));
            }
            (Some(limit), Some(since)) => since + limit,
            _ => far,
        };
        let idle_due = match self.idle {
            Some(limit) => {
                let written = conn.inner.opened
                    + Duration::from_millis(conn.inner.last_write_ms.load(Ordering::Relaxed));
                let active = if busy { now } else { self.last_read.max(written) };
                if now >= active + limit {
                    return Err(format!("idle for {limit:?}"));
                }
                active + limit
            }
            None => far,
        };
        Ok(frame_due.min(idle_due))
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: &Connection,
    mut reader: R,
    config: &ConnectionConfig,
    handler: Option<&Arc<dyn RequestHandler>>,
) -> String {
    let slots = Arc::new(Semaphore::new(config.in_flight_max));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_MIN);
    let mut chunk = READ_CHUNK_MIN;
    let mut watch = Watch::new(config);
    let busy = |slots: &Semaphore| slots.available_permits() < config.in_flight_max;
    let timer = tokio::time::sleep_until(match watch.check(conn, Instant::now(), false) {
        Ok(due) => due,
        Err(why) => return why,
    });
    tokio::pin!(timer);
    loop {
        let mut took = 0;
        loop {
            let command = match decode_frame(&mut buf, config.frame_bytes_max) {
                Ok(Some(command)) => command,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn = ?conn, error = %e, "malformed frame, closing the connection");
                    return format!("malformed frame: {e}");
                }
            };
            took += 1;
            if command.is_response() {
                conn.complete(command);
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else { return "shut down".into() };
            dispatch(conn, handler, command, slot).await;
        }
        if let Some(due) = watch.decoded(took, !buf.is_empty(), Instant::now()) {
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
        }
        if buf.is_empty() && buf.capacity() > READ_CHUNK_MAX {
            // A large frame grew the buffer: give the memory back rather than keep it idle.
            buf = BytesMut::new();
        }
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        let room = buf.capacity() - buf.len();
        tokio::select! {
            biased;
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => return "peer closed".into(),
                Ok(n) => {
                    if n == room && chunk < READ_CHUNK_MAX {
                        chunk *= 2;
                    }
                    watch.last_read = Instant::now();
                }
                Err(e) => return format!("read failed: {e}"),
            },
            () = conn.closed() => return "closed locally".into(),
            () = &mut timer => match watch.check(conn, Instant::now(), busy(&slots)) {
                Ok(due) => timer.as_mut().reset(due),
                Err(why) => {
                    tracing::info!(conn = ?conn, %why, "closing the connection");
                    return why;
                }
            },
        }
    }
}

async fn dispatch(
    conn: &Connection,
    handler: Option<&Arc<dyn RequestHandler>>,
    request: RemotingCommand,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let opaque = request.opaque;
    let oneway = request.is_oneway();
    let handled = match handler {
        Some(handler) => handler.handle(conn, request),
        None => Handled::Now(super::not_supported(request.code)),
    };
    match handled {
        Handled::Now(response) => {
            drop(slot);
            if !oneway {
                reply(conn, opaque, response).await;
            }
        }
        Handled::Later(future) => {
            let conn = conn.clone();
            tokio::spawn(async move {
                let response = future.await;
                drop(slot);
                if !oneway {
                    reply(&conn, opaque, response).await;
                }
            });
        }
    }
}

async fn reply(conn: &Connection, opaque: i32, mut response: RemotingCommand) {
    response.opaque = opaque;
    response.flag |= crate::codec::command::FLAG_RESPONSE;
    if let Err(e) = conn.send(response).await {
        tracing::debug!(conn = ?conn, error = %e, "response dropped");
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    conn: Connection,
    writer: W,
    mut queue: mpsc::Receiver<RemotingCommand>,
) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    let mut head = BytesMut::with_capacity(1024);
    loop {
        let first = tokio::select! {
            biased;
            next = queue.recv() => next,
            () = conn.closed() => None,
        };
        let Some(mut command) = first else { break };
        // Batch whatever else is queued into one flush.
        loop {
            if let Err(e) = write_command(&mut writer, &mut head, &command).await {
                tracing::debug!(conn = ?conn, error = %e, "write failed");
                conn.close();
                return;
            }
            match queue.try_recv() {
                Ok(next) => command = next,
                Err(_) => break,
            }
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!(conn = ?conn, error = %e, "flush failed");
            conn.close();
            return;
        }
        let since_open = u64::try_from(conn.inner.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        conn.inner.last_write_ms.store(since_open, Ordering::Relaxed);
    }
    let _ = writer.shutdown().await;
}

async fn write_command<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    head: &mut BytesMut,
    command: &RemotingCommand,
) -> std::io::Result<()> {
    head.clear();
    if let Err(e) = command.encode_head(head) {
        // A command we built ourselves does not encode: log it and drop only that command.
        tracing::error!(code = command.code, error = %e, "cannot encode an outgoing command");
        return Ok(());
    }
    writer.write_all(head).await?;
    writer.write_all(&command.body).await?;
    if command.body_parts.is_empty() {
        return Ok(());
    }
    // Records from the store: send what is buffered, then hand the slices to the socket
    // directly, so message bytes are never copied in user space.
    writer.flush().await?;
    write_all_vectored(writer.get_mut(), &command.body_parts).await
}

/// Writes every buffer, as few system calls as the socket allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[bytes::Bytes],
) -> std::io::Result<()> {
    let mut index = 0;
    let mut skip = 0;
    while index < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&parts[index][skip..])
            .chain(parts[index + 1..].iter().map(|p| &p[..]))
            .take(64)
            .map(std::io::IoSlice::new)
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < parts.len() && written >= parts[index].len() - skip {
            written -= parts[index].len() - skip;
            index += 1;
            skip = 0;
        }
        skip += written;
    }
    Ok(())
}
