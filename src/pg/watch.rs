//! Watching a run's sessions for a dead path: a connection that neither fails nor answers.
//!
//! TCP keepalives and `tcp_user_timeout` ([`crate::pg::connect`]) find a dead peer when the peer
//! is the server's kernel. When the client's TCP peer is a user-space hop (RDS Proxy, PgBouncer, a
//! cloud SQL proxy, an L7 load balancer) whose upstream vanished, that hop keeps acknowledging
//! every packet and the kernel never notices: a statement waits for an answer that will never
//! come, a COPY waits for rows, and the run hangs holding its locks.
//!
//! So every session's socket is a [`Watched`] stream that records what the wire does: whether a
//! question is open (the protocol's questions and `ReadyForQuery` answers counted on its plaintext:
//! the socket itself, or a [`Framed`] layer above TLS), whether the client is waiting to read (and
//! since when), whether a write is blocked (and since when). A session is *suspect* when, for longer than the silence bound, it
//! has been waiting for a reply that does not come, or cannot send. A suspect is not dead yet: a
//! long `ATTACH PARTITION` that validates its rows is silent too. The run's lease session
//! ([`crate::pg::lease`]) asks the server how it sees each suspect's backend
//! (`pg_stat_activity`), and [`verdict`] decides:
//!
//! | the client                 | the server says                  | verdict                          |
//! |----------------------------|----------------------------------|----------------------------------|
//! | waits for a reply          | idle, or the backend is gone     | dead: the answer was lost        |
//! | waits for a reply          | active, writing to the client    | dead: rows sent, none arrive     |
//! | cannot write               | active, reading from the client  | dead: data sent, none arrives    |
//! | waits or cannot write      | active on anything else          | alive: the statement is working  |
//! | waits or cannot write      | nothing (no session answers)     | dead, once the lease has had no answer for the bound |
//!
//! A dead session's connection is closed, so whatever awaited it fails with an error (a
//! transient one: the next run completes the work), and its backend is terminated when the
//! server can be reached, so its locks go at once instead of when the server's own timers fire.

use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the wire of one session did: the order of its last read and write (a sequence: a reply
/// and the next question can fall in one millisecond), and since when it waits, as offsets from
/// the session's start in milliseconds (0: not now).
#[derive(Debug)]
pub struct Wire {
    start: Instant,
    events: AtomicU64,
    last_read: AtomicU64,
    last_write: AtomicU64,
    read_waiting_since: AtomicU64,
    write_blocked_since: AtomicU64,
    /// The server process of this session, once known (0 before).
    pub backend_pid: AtomicI32,
    /// The questions the client sent that the server has not answered yet, counted on the
    /// plaintext protocol ([`Framed`]) when the session has a layer where it can be read.
    exchange: Mutex<Exchange>,
}

/// The protocol's questions and answers on one session: every simple query (`Q`), function call
/// (`F`), extended-protocol `Sync` and the startup message is answered by exactly one
/// `ReadyForQuery` (`Z`), except a `Sync` the server ignores because it arrived in copy-in mode
/// (the one tokio-postgres sends with a COPY FROM's Bind/Execute: the server answers
/// `CopyInResponse` first, and only the `Sync` after `CopyDone` gets its `Z`). Counting them tells
/// "a question is open" from "idle" exactly, where the order of the last read and write cannot: the
/// tail of one reply (its `Z`) can arrive after the next question was written.
#[derive(Debug, Default)]
struct Exchange {
    /// Counting: the session's plaintext is framed (not only encrypted bytes seen).
    counted: bool,
    /// The framing broke (a length no message has): counting stops, the event order decides.
    broken: bool,
    sent: Framer,
    received: Framer,
    /// The kinds of the questions not answered yet, oldest first.
    open: std::collections::VecDeque<u8>,
}

impl Exchange {
    fn sent(&mut self, data: &[u8]) {
        let mut asked = Vec::new();
        if !self.sent.feed(data, |kind| match kind {
            None => asked.push(b'0'),
            Some(k @ (b'Q' | b'F' | b'S')) => asked.push(k),
            Some(_) => {}
        }) {
            self.broken = true;
        }
        self.open.extend(asked);
    }

    fn received(&mut self, data: &[u8]) {
        let mut kinds = Vec::new();
        if !self.received.feed(data, |kind| kinds.extend(kind)) {
            self.broken = true;
        }
        for kind in kinds {
            match kind {
                b'Z' => {
                    self.open.pop_front();
                }
                // Copy-in mode: the Sync sent with the COPY's Bind/Execute is ignored.
                b'G' if self.open.front() == Some(&b'S') => {
                    self.open.pop_front();
                }
                _ => {}
            }
        }
    }

    /// `Some(open?)` while counting works.
    fn awaiting(&self) -> Option<bool> {
        (self.counted && !self.broken).then_some(!self.open.is_empty())
    }
}

/// The message framing of one direction of the protocol: a type byte and a length (which counts
/// itself), the body; the client's first message (startup) has no type byte.
#[derive(Debug, Default)]
struct Framer {
    untyped_next: bool,
    header: [u8; 5],
    got: usize,
    body_left: u64,
}

impl Framer {
    /// The client's side: its first message is the untyped startup message.
    fn client() -> Self {
        Self { untyped_next: true, ..Self::default() }
    }

    /// Reads `data` (the next bytes of the stream); `on_message` gets each message's type (None
    /// for the startup message) once its header is complete. `false` when a length is impossible.
    fn feed(&mut self, mut data: &[u8], mut on_message: impl FnMut(Option<u8>)) -> bool {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len() as u64);
                data = &data[n as usize..];
                self.body_left -= n;
                continue;
            }
            let header_len = if self.untyped_next { 4 } else { 5 };
            let n = (header_len - self.got).min(data.len());
            self.header[self.got..self.got + n].copy_from_slice(&data[..n]);
            self.got += n;
            data = &data[n..];
            if self.got < header_len {
                break;
            }
            let (kind, len) = match self.untyped_next {
                true => (None, &self.header[0..4]),
                false => (Some(self.header[0]), &self.header[1..5]),
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as u64;
            if len < 4 {
                return false;
            }
            self.body_left = len - 4;
            self.got = 0;
            self.untyped_next = false;
            on_message(kind);
        }
        true
    }
}

impl Wire {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            events: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            read_waiting_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            backend_pid: AtomicI32::new(0),
            exchange: Mutex::new(Exchange { sent: Framer::client(), ..Exchange::default() }),
        }
    }

    /// From now on the session's questions and answers are counted (see [`Framed`]).
    fn count_exchange(&self) {
        if let Ok(mut e) = self.exchange.lock() {
            e.counted = true;
        }
    }

    /// Plaintext protocol bytes the client wrote, or read.
    fn plaintext(&self, data: &[u8], written: bool) {
        if data.is_empty() {
            return;
        }
        if let Ok(mut e) = self.exchange.lock() {
            match written {
                true => e.sent(data),
                false => e.received(data),
            }
        }
    }

    /// Milliseconds since the session started, never 0 (0 means "never").
    fn tick(&self) -> u64 {
        (self.start.elapsed().as_millis() as u64).max(1)
    }

    /// Marks a wait as begun now, unless one is already running (its start is kept).
    fn waiting_from_now(&self, since: &AtomicU64) {
        let _ = since.compare_exchange(0, self.tick(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The next number in the order of this wire's reads and writes.
    fn next_event(&self) -> u64 {
        self.events.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The wire as of now.
    pub fn view(&self) -> WireView {
        let now = self.tick();
        let since = |at: &AtomicU64| match at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(now.saturating_sub(t))),
        };
        let counted = self.exchange.lock().ok().and_then(|e| e.awaiting());
        WireView {
            awaiting_reply: counted
                .unwrap_or_else(|| self.last_write.load(Ordering::Relaxed) > self.last_read.load(Ordering::Relaxed)),
            read_waiting: since(&self.read_waiting_since),
            write_blocked: since(&self.write_blocked_since),
        }
    }
}

/// A session's wire at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireView {
    /// The client sent something after the last bytes it received: a question is open (a
    /// statement, or the rows of a COPY FROM).
    pub awaiting_reply: bool,
    /// The client has been waiting to read, with nothing arriving, for this long.
    pub read_waiting: Option<Duration>,
    /// A write has been blocked (nothing accepted) for this long.
    pub write_blocked: Option<Duration>,
}

impl WireView {
    /// Silent for longer than `bound` while waiting for a reply, or unable to write.
    pub fn suspect(&self, bound: Duration) -> bool {
        self.write_blocked.is_some_and(|d| d >= bound)
            || (self.awaiting_reply && self.read_waiting.is_some_and(|d| d >= bound))
    }
}

/// How the server sees a session's backend (from `pg_stat_activity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerView {
    /// No session of ours could ask the server for longer than the bound.
    Unreachable,
    /// The backend is not there (it ended).
    Gone,
    /// `idle`, `idle in transaction` or `idle in transaction (aborted)`: waiting for the client.
    Idle,
    /// Running a statement; `wait_event` as the server reports it.
    Active { wait_event: Option<String> },
}

/// Is a session dead? `Some(why)` when it is: see the module docs' table. Pure, so the table is
/// tested as a table.
pub fn verdict(wire: &WireView, server: &ServerView, bound: Duration) -> Option<&'static str> {
    if !wire.suspect(bound) {
        return None;
    }
    let write_blocked = wire.write_blocked.is_some_and(|d| d >= bound);
    match server {
        ServerView::Unreachable => Some("no answer from the server on any connection"),
        ServerView::Gone => Some("the server ended the session"),
        ServerView::Idle => Some("the server finished and waits for us: its answer was lost"),
        ServerView::Active { wait_event } => match wait_event.as_deref() {
            Some("ClientWrite") => Some("the server is sending and nothing arrives"),
            Some("ClientRead") if write_blocked => Some("the server waits for data that does not reach it"),
            // Reading while we have nothing to send (a COPY FROM waiting for S3), or working.
            _ => None,
        },
    }
}

/// One watched session, as the lease sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub wire: Arc<Wire>,
    /// Closes the session's connection: whatever awaits it fails at once.
    pub close: tokio::task::AbortHandle,
}

/// The sessions of this process: the lease watches them. Entries leave when their connection ends.
static SESSIONS: Mutex<Vec<Session>> = Mutex::new(Vec::new());

/// Watches `wire` until its connection task ends (the caller spawns it; [`forget`] at its end).
pub fn register(wire: Arc<Wire>, close: tokio::task::AbortHandle) {
    if let Ok(mut s) = SESSIONS.lock() {
        s.retain(|e| !e.close.is_finished());
        s.push(Session { wire, close });
    }
}

pub fn forget(wire: &Arc<Wire>) {
    if let Ok(mut s) = SESSIONS.lock() {
        s.retain(|e| !Arc::ptr_eq(&e.wire, wire));
    }
}

/// The sessions open now, the lease's own excluded by the caller.
pub fn sessions() -> Vec<Session> {
    SESSIONS.lock().map(|s| s.iter().filter(|e| !e.close.is_finished()).cloned().collect()).unwrap_or_default()
}

/// A socket that records what its wire does in a shared [`Wire`]; on a plaintext socket (no TLS)
/// it also counts the protocol's questions and answers. Above TLS it is a [`Framed`] layer.
pub struct Watched<S> {
    inner: S,
    wire: Arc<Wire>,
    /// The protocol's bytes pass here in plaintext: count its questions and answers.
    plaintext: bool,
    /// The socket itself: record when reads and writes wait (not above TLS, where a read may
    /// wait on a TLS record rather than on the server).
    timed: bool,
}

/// The plaintext side of a TLS session: counts the protocol's questions and answers into the wire
/// whose [`Watched`] socket (which sees only encrypted bytes) records the timing.
pub type Framed<S> = Watched<S>;

impl<S> Watched<S> {
    /// `plaintext`: the protocol runs on this socket unencrypted (no TLS will be negotiated).
    pub fn new(inner: S, plaintext: bool) -> (Self, Arc<Wire>) {
        let wire = Arc::new(Wire::new());
        if plaintext {
            wire.count_exchange();
        }
        (Self { inner, wire: wire.clone(), plaintext, timed: true }, wire)
    }

    /// The [`Framed`] layer above TLS over a socket watched into `wire`.
    pub fn framed(inner: S, wire: Arc<Wire>) -> Framed<S> {
        Self { inner, wire, plaintext: true, timed: false }
    }

    /// Notes one poll of a read or a write (timed sockets only): a pending poll starts (or keeps)
    /// the wait in `waiting_since`; a ready one ends it, and one that `moved` bytes is the wire's
    /// newest event of its direction (`last`).
    fn note(&self, pending: bool, moved: bool, waiting_since: &AtomicU64, last: &AtomicU64) {
        if !self.timed {
            return;
        }
        if pending {
            self.wire.waiting_from_now(waiting_since);
        } else {
            waiting_since.store(0, Ordering::Relaxed);
            if moved {
                last.store(self.wire.next_event(), Ordering::Relaxed);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() > before;
        self.note(poll.is_pending(), got, &self.wire.read_waiting_since, &self.wire.last_read);
        if self.plaintext && got {
            self.wire.plaintext(&buf.filled()[before..], false);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note(poll.is_pending(), true, &self.wire.write_blocked_since, &self.wire.last_write);
        if let (true, Poll::Ready(Ok(n))) = (self.plaintext, &poll) {
            self.wire.plaintext(&data[..*n], true);
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Watched<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose stream is [`Framed`]: the session's questions and answers are counted
/// once TLS is up (a `prefer` session the server keeps in plaintext is not counted: the order of
/// its reads and writes decides).
pub struct FramingTls<T> {
    pub inner: T,
    pub wire: Arc<Wire>,
}

impl<S, T> tokio_postgres::tls::TlsConnect<S> for FramingTls<T>
where
    T: tokio_postgres::tls::TlsConnect<S>,
    T::Future: Send + 'static,
    T::Stream: 'static,
{
    type Stream = Framed<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Framed<T::Stream>, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let (handshake, wire) = (self.inner.connect(stream), self.wire);
        Box::pin(async move {
            let inner = handshake.await?;
            wire.count_exchange();
            Ok(Watched::framed(inner, wire))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(30);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }
    fn active(wait: &str) -> ServerView {
        ServerView::Active { wait_event: Some(wait.into()) }
    }

    #[test]
    fn the_verdict_table() {
        let waiting = WireView { awaiting_reply: true, read_waiting: secs(31), write_blocked: None };
        let waiting_briefly = WireView { read_waiting: secs(29), ..waiting };
        // Idle at our end: the connection task always waits to read, with no question open.
        let idle = WireView { awaiting_reply: false, read_waiting: secs(3600), write_blocked: None };
        let blocked = WireView { awaiting_reply: true, read_waiting: secs(31), write_blocked: secs(31) };
        let dead = |w: &WireView, s: &ServerView| verdict(w, s, BOUND).is_some();
        let rows: [(&WireView, ServerView, bool); 17] = [
            (&waiting, ServerView::Idle, true),
            (&waiting, ServerView::Gone, true),
            (&waiting, ServerView::Unreachable, true),
            (&waiting, active("ClientWrite"), true),
            // A COPY FROM waiting for the next rows from S3: the server reads, we have nothing yet.
            (&waiting, active("ClientRead"), false),
            (&waiting, ServerView::Active { wait_event: None }, false),
            (&waiting, active("DataFileRead"), false),
            (&waiting, active("relation"), false),
            (&blocked, active("ClientRead"), true),
            (&blocked, active("ClientWrite"), true),
            (&blocked, ServerView::Active { wait_event: None }, false),
            (&blocked, ServerView::Idle, true),
            (&waiting_briefly, ServerView::Idle, false),
            (&waiting_briefly, ServerView::Unreachable, false),
            (&idle, ServerView::Idle, false),
            (&idle, ServerView::Unreachable, false),
            (&idle, ServerView::Gone, false),
        ];
        for (i, (wire, server, expected)) in rows.iter().enumerate() {
            assert_eq!(dead(wire, server), *expected, "row {i}: {wire:?} / {server:?}");
        }
    }

    #[tokio::test]
    async fn the_wire_records_what_the_socket_does() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(8);
        let (mut watched, wire) = Watched::new(client, false);
        assert_eq!(wire.view(), WireView::default());
        watched.write_all(b"SELECT 1").await.unwrap();
        assert!(wire.view().awaiting_reply, "a question is open");
        // A read with nothing there waits, and says since when.
        let mut buf = [0u8; 8];
        assert!(tokio::time::timeout(Duration::from_millis(20), watched.read(&mut buf)).await.is_err());
        assert!(wire.view().read_waiting.is_some());
        assert!(wire.view().suspect(Duration::ZERO) && !wire.view().suspect(Duration::from_secs(5)));
        // The reply closes the question.
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"1").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 1);
        let v = wire.view();
        assert!(!v.awaiting_reply && v.read_waiting.is_none(), "{v:?}");
        // A write the peer does not take blocks, and says since when (the duplex holds 8 bytes).
        assert!(tokio::time::timeout(Duration::from_millis(20), watched.write_all(&[0u8; 64])).await.is_err());
        assert!(wire.view().write_blocked.is_some() && wire.view().suspect(Duration::ZERO));
        let mut sink = vec![0u8; 64];
        let _ = server.read(&mut sink).await.unwrap();
        watched.write_all(&[0u8; 1]).await.unwrap();
        assert!(wire.view().write_blocked.is_none());
    }

    /// A protocol message: type, then length (counting itself) and body.
    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(((body.len() + 4) as u32).to_be_bytes());
        m.extend(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00u\x00\x00";
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend(body);
        m
    }

    #[test]
    fn questions_and_answers_are_counted_whatever_the_order_of_reads_and_writes() {
        // (who, bytes, a question open after them?)
        let steps: Vec<(&str, Vec<u8>, bool)> = vec![
            ("client", startup(), true),
            ("server", [msg(b'R', &[0, 0, 0, 0]), msg(b'S', b"a\0b\0"), msg(b'K', &[0; 8])].concat(), true),
            ("server", msg(b'Z', b"I"), false),
            // A simple query, its reply cut before its ReadyForQuery.
            ("client", msg(b'Q', b"SELECT 1\0"), true),
            ("server", [msg(b'T', &[0; 6]), msg(b'D', &[0; 6]), msg(b'C', b"SELECT 1\0")].concat(), true),
            // The next question is written before the tail of that reply is read: still open.
            ("client", [msg(b'P', b"\0x\0\0\0"), msg(b'D', b"S\0"), msg(b'S', b"")].concat(), true),
            ("server", msg(b'Z', b"T"), true),
            ("server", [msg(b'1', b""), msg(b't', &[0, 0]), msg(b'n', b""), msg(b'Z', b"T")].concat(), false),
            // A COPY FROM in the extended protocol: the Sync sent with Bind/Execute is ignored.
            ("client", [msg(b'B', &[0; 8]), msg(b'E', &[0; 5]), msg(b'S', b"")].concat(), true),
            ("server", [msg(b'2', b""), msg(b'G', &[0, 0, 0])].concat(), false),
            ("client", [msg(b'd', b"1,a\n"), msg(b'd', b"2,b\n")].concat(), false),
            ("client", [msg(b'c', b""), msg(b'S', b"")].concat(), true),
            ("server", [msg(b'C', b"COPY 2\0"), msg(b'Z', b"T")].concat(), false),
            // A COPY TO in the extended protocol.
            ("client", [msg(b'B', &[0; 8]), msg(b'E', &[0; 5]), msg(b'S', b"")].concat(), true),
            ("server", [msg(b'2', b""), msg(b'H', &[0, 0, 0]), msg(b'd', b"1\n"), msg(b'c', b"")].concat(), true),
            ("server", [msg(b'C', b"COPY 1\0"), msg(b'Z', b"I")].concat(), false),
        ];
        // Whole, and one byte at a time: framing does not depend on how the bytes arrive.
        for one_by_one in [false, true] {
            let mut e = Exchange { counted: true, sent: Framer::client(), ..Exchange::default() };
            for (i, (who, bytes, open)) in steps.iter().enumerate() {
                let pieces: Vec<&[u8]> = if one_by_one { bytes.chunks(1).collect() } else { vec![&bytes[..]] };
                for piece in pieces {
                    match *who {
                        "client" => e.sent(piece),
                        _ => e.received(piece),
                    }
                }
                assert_eq!(e.awaiting(), Some(*open), "step {i} ({who}), one by one: {one_by_one}");
            }
        }
    }

    #[test]
    fn an_impossible_length_stops_the_counting_and_uncounted_sessions_say_nothing() {
        let mut e = Exchange { counted: true, sent: Framer::client(), ..Exchange::default() };
        e.sent(&startup());
        e.received(&[b'Z', 0, 0, 0, 2]);
        assert_eq!(e.awaiting(), None, "broken: the order of reads and writes decides");
        let uncounted = Exchange { sent: Framer::client(), ..Exchange::default() };
        assert_eq!(uncounted.awaiting(), None);
        // A wire whose exchange is counted says so in its view, whatever the event order.
        let wire = Wire::new();
        wire.count_exchange();
        wire.plaintext(&startup(), true);
        wire.last_read.store(wire.next_event(), Ordering::Relaxed);
        assert!(wire.view().awaiting_reply, "the startup is not answered yet");
        wire.plaintext(&msg(b'Z', b"I"), false);
        wire.last_write.store(wire.next_event(), Ordering::Relaxed);
        assert!(!wire.view().awaiting_reply, "answered, though a write came last");
    }

    #[tokio::test]
    async fn a_tls_sessions_plaintext_side_is_counted() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut server) = tokio::io::duplex(1024);
        let wire = Arc::new(Wire::new());
        wire.count_exchange();
        let mut framed = Watched::framed(client, wire.clone());
        framed.write_all(&startup()).await.unwrap();
        assert!(wire.view().awaiting_reply);
        server.write_all(&[msg(b'K', &[0; 8]), msg(b'Z', b"I")].concat()).await.unwrap();
        let mut got = [0u8; 19];
        framed.read_exact(&mut got).await.unwrap();
        assert!(!wire.view().awaiting_reply);
    }
}
