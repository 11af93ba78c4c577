//! WASI's blocking I/O calls, answered without blocking the thread.
//!
//! wasmtime-wasi's synchronous bindings run every call that may wait
//! (`blocking-write-and-flush` on stderr, dropping a stream, `poll`) with
//! `Handle::block_on` on the current tokio runtime. On a tokio async worker
//! that panics ("cannot start a runtime from within a runtime"), so a guest
//! that merely printed to stderr could not be called from a server request
//! handler, and every transform call there had to hop to the blocking pool.
//!
//! Our guests' WASI grants no files, sockets, stdin or real clocks
//! ([`super::deterministic_wasi`]): everything they can wait on is a memory
//! pipe, ready at once. So these calls are polled a few times with a no-op
//! waker and answered; a wait that is still pending after that (a guest
//! sleeping on the monotonic clock) is a trap that says transforms may not
//! wait, instead of a thread stuck beyond the call's time limit (epoch
//! interruption cannot stop a host call). The same behaviour holds on every
//! thread: backfill, dataset and the server.
//!
//! The overrides shadow wasmtime-wasi's own definitions in the linker,
//! interface by interface: `wasi:io/streams`, `wasi:io/poll`, and
//! `wasi:sockets/udp-create-socket` (the one socket call that waits before it
//! checks the deny-all policy).

use std::future::Future;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode};
use wasmtime_wasi::p2::bindings::sync::io::poll::{self, Pollable};
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::bindings::sync::sockets::{udp::IpAddressFamily, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult, StreamError, StreamResult, UdpSocket};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInputStream, HostOutputStream as AsyncOutputStream,
};

/// Polls before a wait counts as one that would block. A future that yields
/// once before it is ready (a zero-length sleep) is answered on the second.
const POLLS: usize = 8;

/// Replaces wasmtime-wasi's waiting calls in `linker` with ones that never
/// block the thread. Call after `wasmtime_wasi::p2::add_to_linker_sync`.
pub(crate) fn shadow_waiting_calls<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    streams::add_to_linker::<T, NoWait>(linker, |state| NoWaitIo(state.ctx().table))?;
    poll::add_to_linker::<T, NoWait>(linker, |state| NoWaitIo(state.ctx().table))?;
    udp_create_socket::add_to_linker::<T, NoWait>(linker, |state| NoWaitIo(state.ctx().table))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The guest's resource table, seen through calls that never block.
pub(crate) struct NoWaitIo<'a>(&'a mut ResourceTable);

struct NoWait;

impl HasData for NoWait {
    type Data<'a> = NoWaitIo<'a>;
}

/// `future`'s output if it is ready within [`POLLS`] polls.
fn ready<F: Future>(future: F) -> wasmtime::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    // Timers and the like need a tokio context to register with, not to run.
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        for _ in 0..POLLS {
            if let Some(output) = wasmtime_wasi::runtime::poll_noop(future.as_mut()) {
                return Ok(output);
            }
        }
        Err(wasmtime::format_err!(
            "the transform waited (a sleep, or a read that never completes); transforms \
             run without timers or input, so a wait would never end: remove it"
        ))
    })
}

fn ready_stream<T>(future: impl Future<Output = StreamResult<T>>) -> StreamResult<T> {
    ready(future).map_err(StreamError::Trap)?
}

impl streams::Host for NoWaitIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl streams::HostOutputStream for NoWaitIo<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        ready(AsyncOutputStream::drop(self.0, stream))?
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        ready_stream(AsyncOutputStream::blocking_write_and_flush(self.0, stream, bytes))
    }

    fn blocking_write_zeroes_and_flush(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        ready_stream(AsyncOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len))
    }

    fn subscribe(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        ready_stream(AsyncOutputStream::blocking_flush(self.0, stream))
    }

    fn splice(&mut self, dst: Resource<OutputStream>, src: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        ready_stream(AsyncOutputStream::blocking_splice(self.0, dst, src, len))
    }
}

impl streams::HostInputStream for NoWaitIo<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        ready(AsyncInputStream::drop(self.0, stream))?
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        ready_stream(AsyncInputStream::blocking_read(self.0, stream, len))
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        ready_stream(AsyncInputStream::blocking_skip(self.0, stream, len))
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for NoWaitIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        ready(async_poll::Host::poll(self.0, pollables))?
    }
}

impl poll::HostPollable for NoWaitIo<'_> {
    fn ready(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        ready(async_poll::HostPollable::ready(self.0, pollable))?
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        ready(async_poll::HostPollable::block(self.0, pollable))?
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

impl network::Host for NoWaitIo<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(&mut self, _error: Resource<network::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(None)
    }
}

impl network::HostNetwork for NoWaitIo<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.0.delete(network)?;
        Ok(())
    }
}

impl udp_create_socket::Host for NoWaitIo<'_> {
    /// Guests get no network ([`super::deterministic_wasi`] denies UDP).
    fn create_udp_socket(&mut self, _family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        Err(ErrorCode::AccessDenied.into())
    }
}
