//! Accepted connections whose HTTP/2 writes of one turn of the connection go out as
//! ONE write to the socket.
//!
//! h2 writes a DATA frame of 256 bytes or more straight from its buffer and must
//! flush it before it can take another frame, so every such response cost two
//! writes: headers and data, then the trailers (`grpc-status`), each a syscall, a
//! trip through the loopback or network stack and often a wake-up of the reader.
//! (An upstream design choice: hyperium/h2#711.) Here a flush of an HTTP/2
//! connection only marks the bytes as owed and wakes the connection's task: what
//! the same turn writes next (the trailers, other streams' responses) joins them,
//! and the next turn, which always starts by reading the socket, writes them all
//! first. Nothing waits on a timer; a shutdown writes what is owed first.
//!
//! Connections that do not open with the HTTP/2 preface (gRPC-Web over HTTP/1.1)
//! are passed through unchanged: their reads are not guaranteed to follow each turn.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Bytes held before a write waits for the socket (backpressure, as a socket's own
/// send buffer gives).
const MAX_OWED: usize = 64 * 1024;

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet: writes go straight through.
    Sniffing,
    /// HTTP/2: flushes are deferred to the start of the next turn.
    Coalescing,
    /// Anything else: writes and flushes go straight through.
    PassThrough,
}

/// An accepted connection (plain TCP or TLS) with HTTP/2 writes coalesced per turn.
#[derive(Debug)]
pub struct Coalesced<T> {
    inner: T,
    mode: Mode,
    /// Written by h2 and not yet by us; `out[sent..]` is still to go.
    out: Vec<u8>,
    sent: usize,
    /// A flush was deferred: the task has been woken to write `out` on its next turn.
    owed: bool,
}

impl<T> Coalesced<T> {
    /// `enabled: false` passes everything straight through (`server.coalesce_writes`).
    pub fn new(inner: T, enabled: bool) -> Self {
        Self {
            inner,
            mode: if enabled {
                Mode::Sniffing
            } else {
                Mode::PassThrough
            },
            out: Vec::new(),
            sent: 0,
            owed: false,
        }
    }

    /// Decides the mode from the first bytes read; a prefix of the preface so far
    /// leaves it to the next read.
    fn sniff(&mut self, read: &[u8]) {
        let n = read.len().min(PREFACE.len());
        if read[..n] != PREFACE[..n] {
            self.mode = Mode::PassThrough;
        } else if n == PREFACE.len() {
            self.mode = Mode::Coalescing;
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Writes everything owed, then flushes the inner stream (TLS pushes its records).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        self.owed = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Room for more owed bytes, writing what is owed if the cap is reached.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out.len() >= MAX_OWED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.owed {
            // A new turn: what the last one wrote goes first. If the socket is full,
            // its readiness wakes the task again; reading goes on meanwhile.
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.mode == Mode::Sniffing && buf.filled().len() > before {
            this.sniff(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.mode != Mode::Coalescing {
            ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        ready!(this.poll_room(cx))?;
        let mut n = 0;
        for slice in slices {
            this.out.extend_from_slice(slice);
            n += slice.len();
        }
        Poll::Ready(Ok(n))
    }

    /// Vectored writes are taken whole (copied once, here), so h2 need not copy
    /// large frames into its own buffer first.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.mode == Mode::Coalescing && !this.out.is_empty() {
            if !this.owed {
                this.owed = true;
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(()));
        }
        this.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The peer's address and certificates are the inner connection's.
impl<T: Connected> Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    const PREFACE_FULL: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// A connection whose peer has sent the HTTP/2 preface, read by us.
    async fn opened(peer_buffer: usize, enabled: bool) -> (Coalesced<DuplexStream>, DuplexStream) {
        let (ours, mut peer) = duplex(peer_buffer);
        let mut conn = Coalesced::new(ours, enabled);
        peer.write_all(PREFACE_FULL).await.unwrap();
        let mut preface = [0u8; PREFACE_FULL.len()];
        conn.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, PREFACE_FULL);
        (conn, peer)
    }

    #[tokio::test]
    async fn an_http2_turns_writes_reach_the_peer_as_one_after_its_next_read() {
        let (mut conn, mut peer) = opened(1 << 20, true).await;
        let mut buf = [0u8; 64];
        // One turn: data, flush, trailers, flush. Nothing has gone out yet.
        conn.write_all(b"headers+data").await.unwrap();
        conn.flush().await.unwrap();
        conn.write_all(b"|trailers").await.unwrap();
        conn.flush().await.unwrap();
        let mut probe = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), peer.read(&mut probe)).await;
        assert!(early.is_err(), "a deferred flush must not have written yet");
        // The next turn starts with a read: everything owed goes first, in one write.
        let mut read_buf = ReadBuf::new(&mut buf);
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll_read(cx, &mut read_buf))).await;
        assert!(polled.is_pending(), "nothing to read from the peer");
        let n = peer.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"headers+data|trailers");
    }

    #[tokio::test]
    async fn a_deferred_flush_wakes_the_task_so_its_next_turn_comes() {
        let (mut conn, mut peer) = opened(1 << 20, true).await;
        let mut buf = [0u8; 64];
        // A turn as h2's connection takes it: read until nothing is there, then write
        // and flush, then sleep. Only the wake of the deferred flush brings the next
        // turn (nothing else will: the peer sends nothing), whose read writes it.
        let task = tokio::spawn(async move {
            let mut turns = 0;
            let mut wrote = false;
            poll_fn(|cx| {
                turns += 1;
                let mut read_buf = ReadBuf::new(&mut buf);
                if let Poll::Ready(r) = Pin::new(&mut conn).poll_read(cx, &mut read_buf) {
                    return Poll::Ready(r.map(|()| turns));
                }
                if !wrote {
                    wrote = true;
                    assert!(Pin::new(&mut conn).poll_write(cx, b"answer").is_ready());
                    assert!(Pin::new(&mut conn).poll_flush(cx).is_ready());
                }
                Poll::Pending
            })
            .await
        });
        let mut got = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), peer.read(&mut got))
            .await
            .expect("the owed answer was written on a second turn")
            .unwrap();
        assert_eq!(&got[..n], b"answer");
        peer.write_all(b"x").await.unwrap();
        let turns = task.await.unwrap().unwrap();
        assert!(
            turns >= 3,
            "the answer went out on a turn of its own ({turns} turns)"
        );
    }

    #[tokio::test]
    async fn a_shutdown_writes_what_is_owed_first() {
        let (mut conn, mut peer) = opened(1 << 20, true).await;
        conn.write_all(b"goaway").await.unwrap();
        conn.flush().await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"goaway");
    }

    #[tokio::test]
    async fn http1_and_writes_before_the_preface_go_straight_through() {
        let (ours, mut peer) = duplex(1 << 20);
        let mut conn = Coalesced::new(ours, true);
        // The server's SETTINGS go out before anything is read.
        conn.write_all(b"settings").await.unwrap();
        conn.flush().await.unwrap();
        let mut got = [0u8; 16];
        let n = peer.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"settings");
        let request = b"POST /pixsim.session.v1.SessionService/GetSession HTTP/1.1\r\n";
        peer.write_all(request).await.unwrap();
        let mut buf = [0u8; 128];
        conn.read_exact(&mut buf[..request.len()]).await.unwrap();
        conn.write_all(b"HTTP/1.1 200 OK").await.unwrap();
        conn.flush().await.unwrap();
        let n = peer.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn owed_bytes_past_the_cap_wait_for_the_socket() {
        // A peer that reads nothing: its buffer (1 KiB) fills, then ours.
        let (mut conn, _peer) = opened(1024, true).await;
        let chunk = vec![7u8; 4096];
        let mut accepted = 0;
        let filled = tokio::time::timeout(std::time::Duration::from_millis(200), async {
            loop {
                conn.write_all(&chunk).await.unwrap();
                accepted += chunk.len();
            }
        })
        .await;
        assert!(
            filled.is_err(),
            "writes must block once the cap and the socket are full"
        );
        assert!(
            accepted <= MAX_OWED + chunk.len() + 1024,
            "accepted {accepted} bytes"
        );
    }

    #[tokio::test]
    async fn switched_off_an_http2_flush_writes_at_once() {
        let (mut conn, mut peer) = opened(1 << 16, false).await;
        conn.write_all(b"data").await.unwrap();
        conn.flush().await.unwrap();
        let mut got = [0u8; 8];
        let n = peer.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"data");
    }
}
